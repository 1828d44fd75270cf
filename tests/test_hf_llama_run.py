"""An imported Qwen2/Llama as a run: `open_run` places each parameter onto a mesh of the 8
simulated CPU devices with the sharding its logical names give (checked against specs
written out here from the default axis rules), reading tensors only as they are placed; the
placed model gives transformers' logits, and the eval harness scores with it what
transformers computes for the same ids."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from lmjax import parallel
from lmjax.config import MeshConfig
from lmjax.eval.api import loglikelihood
from lmjax.runs.importers.hf.weights import Deferred
from lmjax.runs.open import abstract_params, locate, open_run

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 96  # divisible by the tensor axis, so the vocabulary can be split over it


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    torch.manual_seed(11)
    config = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=48,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=64)
    model = transformers.Qwen2ForCausalLM(config).float().eval()
    directory = tmp_path_factory.mktemp("qwen2")
    model.save_pretrained(directory, max_shard_size="30KB")
    return directory, model


# The default rules: embed -> fsdp; heads, kv_heads, mlp, vocab -> tensor; kv -> replicated.
EXPECTED_SPECS = {
    ("wte", "embedding"): P("tensor", "fsdp"),
    ("lm_head", "kernel"): P("fsdp", "tensor"),
    ("ln_f", "scale"): P("fsdp"),
    ("h_1", "ln_1", "scale"): P("fsdp"),
    ("h_1", "attn", "query", "kernel"): P("fsdp", "tensor", None),
    ("h_1", "attn", "query", "bias"): P("tensor", None),
    ("h_1", "attn", "key", "kernel"): P("fsdp", "tensor", None),
    ("h_1", "attn", "value", "bias"): P("tensor", None),
    ("h_1", "attn", "out", "kernel"): P("tensor", None, "fsdp"),
    ("h_1", "mlp", "wi_up", "kernel"): P("fsdp", "tensor"),
    ("h_1", "mlp", "wo", "kernel"): P("tensor", "fsdp"),
}


def test_parameters_are_placed_on_the_mesh_as_they_are_read(qwen_dir):
    directory, hf = qwen_dir
    found = locate(directory)
    leaves = jax.tree.leaves(found.imported_params)
    assert leaves and all(isinstance(leaf, Deferred) for leaf in leaves)  # nothing read yet
    mesh = parallel.make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    run = found.open(mesh)
    for path, spec in EXPECTED_SPECS.items():
        leaf = run.params
        for key in path:
            leaf = leaf[key]
        assert leaf.sharding.is_equivalent_to(NamedSharding(mesh, spec), leaf.ndim), path
    targets = abstract_params(run.config.model, mesh, parallel.axis_rules(run.config.mesh))
    for leaf, target in zip(jax.tree.leaves(run.params), jax.tree.leaves(targets), strict=True):
        assert leaf.sharding.is_equivalent_to(target.sharding, leaf.ndim)  # every parameter
    ids = np.random.default_rng(0).integers(0, VOCAB, (2, 9))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(ids)).logits.numpy()
    ours = np.asarray(jax.jit(run.model.apply)({"params": run.params}, input_ids=ids))
    assert np.max(np.abs(ours - theirs)) <= 1e-4


@pytest.fixture(scope="module")
def stories_llama(tmp_path_factory, data_dir):
    """A random Llama over the 512-piece SentencePiece vocabulary of stories260K."""
    torch.manual_seed(12)
    config = transformers.LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=48,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=512,
                                      bos_token_id=1, eos_token_id=2, initializer_range=0.2)
    model = transformers.LlamaForCausalLM(config).float().eval()
    directory = tmp_path_factory.mktemp("llama")
    model.save_pretrained(directory)
    return directory, model, data_dir / "stories260K" / "tok512.model"


def test_the_eval_harness_scores_an_imported_llama_as_transformers_does(stories_llama):
    directory, hf, tokenizer_path = stories_llama
    run = open_run(directory, tokenizer=tokenizer_path)
    contexts = ["Once upon a time, there was a", "The cat sat on the"]
    continuations = [" little girl named Lily.", " mat and slept."]
    ours = loglikelihood(run, contexts, continuations)
    for context, continuation, score in zip(contexts, continuations, ours):
        # As a Llama tokenizer encodes: BOS, then the SentencePiece pieces.
        context_ids = [1, *run.tokenizer.encode_ordinary(context)]
        whole = [1, *run.tokenizer.encode_ordinary(context + continuation)]
        assert whole[:len(context_ids)] == context_ids  # the split the harness scores
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([whole])).logits[0].double()
        logprobs = torch.log_softmax(logits, -1)
        expected = sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context_ids), len(whole)))
        assert score == pytest.approx(expected, abs=1e-3)


def test_lmjax_eval_runs_a_local_task_on_an_imported_llama(stories_llama, data_dir):
    pytest.importorskip("lm_eval")
    from lmjax.eval.api import evaluate

    directory, _, tokenizer_path = stories_llama
    results = evaluate(open_run(directory, tokenizer=tokenizer_path), ["lambada"],
                       data_dir=str(data_dir), limit=4)
    record = results["tasks"]["lambada"]
    assert results["model"]["source"] == "hf" and record["examples"]["effective"] == 4
    assert 0 <= record["metrics"]["acc"] <= 1 and 1 < record["metrics"]["perplexity"] < float("inf")


def test_convert_hf_exports_a_sharded_qwen2_that_opens_with_the_same_logits(qwen_dir, tmp_path):
    from lmjax.runs.importers.hf.export import export

    directory, hf = qwen_dir
    config = export(directory, tmp_path / "export")
    assert config.model.qkv_bias and config.model.n_kv_heads == 2
    run = open_run(tmp_path / "export")
    assert run.source == "export"
    ids = np.random.default_rng(1).integers(0, VOCAB, (1, 7))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(ids)).logits.numpy()
    ours = np.asarray(jax.jit(run.model.apply)({"params": run.params}, input_ids=ids))
    assert np.max(np.abs(ours - theirs)) <= 1e-4


def test_each_tensor_is_placed_before_the_next_is_read(qwen_dir, monkeypatch):
    """The host holds one tensor at a time: reads and placements alternate."""
    from lmjax.runs.importers.hf.shards import TensorRef

    directory, _ = qwen_dir
    found = locate(directory)
    events = []
    read, put = TensorRef.read, jax.device_put
    monkeypatch.setattr(TensorRef, "read", lambda self: events.append("read") or read(self))
    monkeypatch.setattr(jax, "device_put", lambda *a, **k: events.append("put") or put(*a, **k))
    run = found.open(parallel.make_mesh(MeshConfig(data=2, fsdp=2, tensor=2)))
    n_leaves = len(jax.tree.leaves(run.params))
    assert events == ["read", "put"] * n_leaves

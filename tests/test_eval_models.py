"""The Python API on real and known models: stories260K against a numpy forward pass written
here from llama2.c's run.c, real text against shuffled tokens, and an n-gram model behind
the same harness class against its own sentence log-probability."""

import json
import math
import struct

import jax
import numpy as np
import pytest

pytest.importorskip("lm_eval")

from lmjax import eval as lmeval  # noqa: E402
from lmjax.eval import LmjaxLM  # noqa: E402
from lmjax.ngram import NGramLM  # noqa: E402
from lmjax.runs import open_run  # noqa: E402

SENTENCES = ["Once upon a time, there was a little girl named Lily. She loved to play outside.",
             "The dog was happy. He ran to the park with his friend Tom and they played all day."]


def read_llama2c(path):
    """llama2.c's legacy float32 checkpoint: a 7-int header, then the weights in run.c's order."""
    raw = path.read_bytes()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("7i", raw[:28])
    values = np.frombuffer(raw[28:], dtype=np.float32)
    head = dim // heads
    kv_dim = kv_heads * head
    shapes = [("emb", (abs(vocab), dim)), ("rms_att", (layers, dim)), ("wq", (layers, dim, dim)),
              ("wk", (layers, kv_dim, dim)), ("wv", (layers, kv_dim, dim)), ("wo", (layers, dim, dim)),
              ("rms_ffn", (layers, dim)), ("w1", (layers, hidden, dim)), ("w2", (layers, dim, hidden)),
              ("w3", (layers, hidden, dim)), ("rms_final", (dim,))]
    weights, offset = {}, 0
    for name, shape in shapes:
        size = int(np.prod(shape))
        weights[name] = values[offset:offset + size].reshape(shape).astype(np.float64)
        offset += size
    return weights, dict(dim=dim, layers=layers, heads=heads, kv_heads=kv_heads, head=head)


def run_c_logprobs(weights, cfg, tokens):
    """log p(tokens[t+1] | tokens[:t+1]) for each t, one position at a time as run.c does."""
    def rmsnorm(x, w):
        return x * w / np.sqrt(np.mean(x * x) + 1e-5)

    def rope(v, pos):
        out = v.copy()
        for i in range(0, v.size, 2):
            freq = 1.0 / 10000.0 ** ((i % cfg["head"]) / cfg["head"])
            c, s = math.cos(pos * freq), math.sin(pos * freq)
            out[i], out[i + 1] = v[i] * c - v[i + 1] * s, v[i] * s + v[i + 1] * c
        return out

    heads, head, group = cfg["heads"], cfg["head"], cfg["heads"] // cfg["kv_heads"]
    keys = [[] for _ in range(cfg["layers"])]
    values = [[] for _ in range(cfg["layers"])]
    logprobs = []
    for pos, token in enumerate(tokens[:-1]):
        x = weights["emb"][token].copy()
        for layer in range(cfg["layers"]):
            h = rmsnorm(x, weights["rms_att"][layer])
            q = rope(weights["wq"][layer] @ h, pos)
            keys[layer].append(rope(weights["wk"][layer] @ h, pos))
            values[layer].append(weights["wv"][layer] @ h)
            attended = np.zeros_like(x)
            for hd in range(heads):
                kv = hd // group
                k = np.stack([key[kv * head:(kv + 1) * head] for key in keys[layer]])
                v = np.stack([val[kv * head:(kv + 1) * head] for val in values[layer]])
                scores = k @ q[hd * head:(hd + 1) * head] / math.sqrt(head)
                p = np.exp(scores - scores.max())
                attended[hd * head:(hd + 1) * head] = (p / p.sum()) @ v
            x = x + weights["wo"][layer] @ attended
            h = rmsnorm(x, weights["rms_ffn"][layer])
            gate = weights["w1"][layer] @ h
            x = x + weights["w2"][layer] @ (gate / (1 + np.exp(-gate)) * (weights["w3"][layer] @ h))
        logits = weights["emb"] @ rmsnorm(x, weights["rms_final"])
        top = logits.max()
        logprobs.append(logits[tokens[pos + 1]] - top - math.log(np.exp(logits - top).sum()))
    return logprobs


@pytest.fixture(scope="module")
def stories(data_dir):
    return open_run(data_dir / "stories260K" / "stories260K.bin",
                    tokenizer=data_dir / "stories260K" / "tok512.model")


def test_stories260k_loglikelihood_equals_a_numpy_run_c(stories, data_dir):
    weights, cfg = read_llama2c(data_dir / "stories260K" / "stories260K.bin")
    ours = lmeval.loglikelihood(stories, ["", ""], SENTENCES)
    for sentence, score in zip(SENTENCES, ours):
        tokens = [stories.tokenizer.bos_id, *stories.tokenizer.encode_ordinary(sentence)]
        assert score == pytest.approx(sum(run_c_logprobs(weights, cfg, tokens)), rel=1e-4)


def test_stories260k_prefers_real_text_to_the_same_tokens_shuffled(stories):
    rng = np.random.default_rng(0)
    real, shuffled = [], []
    for sentence in SENTENCES:
        ids = stories.tokenizer.encode_ordinary(sentence)
        real.append(sentence)
        shuffled.append(stories.tokenizer.decode([int(i) for i in rng.permutation(ids)]))
    real_scores = lmeval.loglikelihood(stories, ["", ""], real)
    shuffled_scores = lmeval.loglikelihood(stories, ["", ""], shuffled)
    for ours, theirs, sentence in zip(real_scores, shuffled_scores, SENTENCES):
        per_token = (ours - theirs) / len(stories.tokenizer.encode_ordinary(sentence))
        assert per_token > 1.0  # nats per token better than the same tokens shuffled


def test_an_ngram_model_behind_the_harness_class_scores_its_own_sentence_probability():
    text = "the cat sat on the mat . the dog sat on the log . the cat saw the dog ."
    model = NGramLM(3, smoothing="kneser_ney", end_symbols=0).fit([text.split()])
    harness_model = LmjaxLM(model)
    from lm_eval.api.instance import Instance

    sentence = "the dog sat on the mat ."
    request = Instance(request_type="loglikelihood_rolling", doc={}, arguments=(sentence,), idx=0)
    (rolling,) = harness_model.loglikelihood_rolling([request], disable_tqdm=True)
    assert rolling == pytest.approx(model.logprob(sentence.split()), rel=1e-9)
    (score,) = lmeval.loglikelihood(model, ["the cat sat on the"], [" mat"])
    assert score == pytest.approx(math.log(model.prob("mat", ["on", "the"])), rel=1e-9)


def test_evaluate_returns_what_eval_json_holds(stories, data_dir):
    result = lmeval.evaluate(stories, ["lambada", "lambada_final_token"], data_dir=str(data_dir), limit=4)
    assert result["harness"]["version"] and result["model"]["source"] == "llama2c"
    lambada = result["tasks"]["lambada"]
    assert lambada["examples"] == {"original": 4869, "effective": 4}
    assert lambada["metrics"]["perplexity"] > 1 and 0 <= lambada["metrics"]["acc"] <= 1
    assert result["tasks"]["lambada_final_token"]["examples"]["effective"] == 4
    json.dumps(result)


def test_the_harness_finds_the_model_class_and_the_task_files_by_name(stories, data_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from lmjax.eval import tasks as task_lib

    manager = TaskManager(include_defaults=False, include_path=str(task_lib.TASK_DIR),
                          metadata={"data_dir": str(data_dir)})
    model_args = (f"checkpoint={data_dir / 'stories260K' / 'stories260K.bin'},"
                  f"tokenizer={data_dir / 'stories260K' / 'tok512.model'}")
    out = lm_eval.simple_evaluate(model="lmjax", model_args=model_args, tasks=["copa"], limit=4,
                                  task_manager=manager, bootstrap_iters=0)
    ours = lmeval.evaluate(stories, ["copa"], data_dir=str(data_dir), limit=4)
    assert out["results"]["copa"]["acc,none"] == ours["tasks"]["copa"]["metrics"]["acc"]


def test_scoring_on_a_mesh_of_eight_devices_matches_one_device(stories, data_dir):
    from lmjax import parallel
    from lmjax.config import MeshConfig

    mesh = parallel.make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded = open_run(data_dir / "stories260K" / "stories260K.bin", mesh,
                       tokenizer=data_dir / "stories260K" / "tok512.model")
    assert any(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(sharded.params))
    contexts = ["", "Once upon a time,", "The dog"]
    continuations = [SENTENCES[0], " there was a girl.", " ran to the park."]
    np.testing.assert_allclose(lmeval.loglikelihood(sharded, contexts, continuations, batch_size=3),
                               lmeval.loglikelihood(stories, contexts, continuations), rtol=1e-5)

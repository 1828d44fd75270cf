"""Hugging Face import: small random transformers models, saved and loaded back by lmjax,
give the same logits (max |Δ| <= 1e-4 in float32); bad directories give one-line errors."""

import json
import shutil

import jax
import numpy as np
import pytest

from lmjax.errors import CheckpointError
from lmjax.runs.importers.hf import from_pretrained

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4
VOCAB = 99


def saved(model, directory, **options):
    torch.manual_seed(0)
    model.eval()
    model.save_pretrained(directory, **options)
    return directory


def saved_as_torch_state_dict(model, directory):
    """The layout of older transformers: pytorch_model.bin, which lmjax reads with weights_only."""
    saved(model, directory)
    (directory / "model.safetensors").unlink()
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    return directory


def logits(model, params, feeds: dict):
    """Jitted: one compilation is several times faster than running the ops one by one."""
    return jax.jit(model.apply)({"params": params}, **feeds)


def hf_outputs(model, feeds: dict):
    with torch.no_grad():
        return model(**{name: torch.tensor(value) for name, value in feeds.items()})


def max_difference(ours, theirs) -> float:
    assert ours.shape == tuple(theirs.shape)
    return float(np.max(np.abs(np.asarray(ours) - theirs.numpy())))


def padded_batch(batch: int, length: int, seed: int, pad_from: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and a mask whose last row is padded from `pad_from` on."""
    ids = np.random.default_rng(seed).integers(0, VOCAB, (batch, length))
    mask = np.ones((batch, length), np.int64)
    mask[-1, pad_from:] = 0
    return ids, mask


@pytest.mark.parametrize("n_embd, n_head, n_layer", [(24, 3, 2), (32, 2, 1)])
def test_gpt2_logits_match(tmp_path, n_embd, n_head, n_layer):
    torch.manual_seed(n_head)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=n_embd, n_head=n_head,
                                     n_layer=n_layer, n_positions=16, bos_token_id=0,
                                     eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(config)
    model, params = from_pretrained(saved(hf, tmp_path))
    ids, _ = padded_batch(2, 11, seed=n_head, pad_from=11)
    assert model.config.d_head == n_embd // n_head
    ours = logits(model, params, {"input_ids": ids})
    assert max_difference(ours, hf_outputs(hf, {"input_ids": ids}).logits) <= TOLERANCE


def bert_config(**options):
    return transformers.BertConfig(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=40,
                                   max_position_embeddings=16, type_vocab_size=3, **options)


def bert_feeds(seed: int = 0) -> dict:
    ids, mask = padded_batch(3, 12, seed, pad_from=7)
    types = np.random.default_rng(seed + 1).integers(0, 3, ids.shape)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.smoke
def test_bert_logits_match_with_token_types_and_padding(tmp_path):
    torch.manual_seed(1)
    hf = transformers.BertForMaskedLM(bert_config())
    model, params = from_pretrained(saved(hf, tmp_path))
    feeds = bert_feeds()
    ours = logits(model, params, feeds)
    assert max_difference(ours, hf_outputs(hf, feeds).logits) <= TOLERANCE


def test_bert_pretraining_checkpoint_brings_its_next_sentence_head(tmp_path):
    torch.manual_seed(2)
    hf = transformers.BertForPreTraining(bert_config())
    model, params = from_pretrained(saved(hf, tmp_path))
    assert model.config.nsp
    feeds = bert_feeds(seed=3)
    mlm, nsp = logits(model, params, feeds)
    theirs = hf_outputs(hf, feeds)
    assert max_difference(mlm, theirs.prediction_logits) <= TOLERANCE
    assert max_difference(nsp, theirs.seq_relationship_logits) <= TOLERANCE


T5_SHAPES = {
    # v1.0: ReLU, output tied to the embedding and scaled; a deeper decoder.
    "v1.0": dict(d_model=24, d_kv=6, num_heads=4, num_decoder_layers=3),
    # v1.1: gated GELU, heads x d_kv != d_model, unscaled output.
    "v1.1": dict(d_model=24, d_kv=10, num_heads=3, feed_forward_proj="gated-gelu",
                 tie_word_embeddings=False),
}


@pytest.mark.parametrize("version", sorted(T5_SHAPES))
def test_t5_logits_match_with_padding_in_encoder_and_decoder(tmp_path, version):
    torch.manual_seed(3)
    config = transformers.T5Config(vocab_size=VOCAB, d_ff=40, num_layers=2,
                                   relative_attention_num_buckets=8,
                                   relative_attention_max_distance=12, **T5_SHAPES[version])
    hf = transformers.T5ForConditionalGeneration(config)
    model, params = from_pretrained(saved(hf, tmp_path))
    ids, mask = padded_batch(2, 14, seed=4, pad_from=9)  # long enough for the log buckets
    decoder_ids, decoder_mask = padded_batch(2, 10, seed=5, pad_from=6)
    decoder_mask = decoder_mask[::-1].copy()  # the other row pads its decoder
    feeds = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder_ids,
             "decoder_attention_mask": decoder_mask}
    ours = logits(model, params, feeds)
    assert max_difference(ours, hf_outputs(hf, feeds).logits) <= TOLERANCE


def test_t5_with_a_separate_output_layer_from_a_torch_state_dict(tmp_path):
    torch.manual_seed(6)
    config = transformers.T5Config(vocab_size=VOCAB, d_model=16, d_kv=4, num_heads=4, d_ff=32,
                                   num_layers=1, feed_forward_proj="gated-gelu",
                                   tie_word_embeddings=False)
    hf = transformers.T5ForConditionalGeneration(config)
    hf.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 16))  # untied, as real v1.1
    model, params = from_pretrained(saved_as_torch_state_dict(hf, tmp_path))
    assert not model.config.tie_embeddings
    ids, mask = padded_batch(2, 8, seed=7, pad_from=5)
    feeds = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": ids[:, :4]}
    ours = logits(model, params, feeds)
    assert max_difference(ours, hf_outputs(hf, feeds).logits) <= TOLERANCE


# -- bad input ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=16, n_head=2, n_layer=1,
                                     n_positions=8, bos_token_id=0, eos_token_id=0)
    return saved(transformers.GPT2LMHeadModel(config), tmp_path_factory.mktemp("gpt2"))


def edited_copy(source, target, **changes):
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_an_unsupported_model_type_is_a_one_line_error(gpt2_dir, tmp_path):
    """Llama became importable (issue 21); a model type lmjax lacks still lists what it has."""
    directory = edited_copy(gpt2_dir, tmp_path / "neox", model_type="gpt_neox")
    with pytest.raises(CheckpointError) as err:
        from_pretrained(directory)
    assert "'gpt_neox' model" in one_line(err)
    assert "LlamaForCausalLM" in one_line(err) and "RobertaForMaskedLM" in one_line(err)


def test_an_unsupported_head_is_a_one_line_error(tmp_path):
    hf = transformers.BertForSequenceClassification(bert_config())
    with pytest.raises(CheckpointError) as err:
        from_pretrained(saved(hf, tmp_path))
    assert "BertForSequenceClassification" in one_line(err)


def test_weights_that_do_not_match_their_config_are_a_one_line_error(gpt2_dir, tmp_path):
    wider = edited_copy(gpt2_dir, tmp_path / "wider", n_embd=32)
    with pytest.raises(CheckpointError) as err:
        from_pretrained(wider)
    assert "wte.weight" in one_line(err) and "(99, 16)" in one_line(err) and "(99, 32)" in one_line(err)
    deeper = edited_copy(gpt2_dir, tmp_path / "deeper", n_layer=2)
    with pytest.raises(CheckpointError, match=r"no weight 'h\.1\."):
        from_pretrained(deeper)


def test_a_directory_without_weights_or_config_is_a_one_line_error(gpt2_dir, tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        from_pretrained(tmp_path)
    shutil.copy(gpt2_dir / "config.json", tmp_path)
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        from_pretrained(tmp_path)

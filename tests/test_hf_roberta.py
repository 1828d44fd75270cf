"""RobertaForMaskedLM import: a tiny random RoBERTa built here, saved with save_pretrained and
loaded into lmjax's BERT, gives transformers' MLM logits (max |Δ| <= 1e-4 in float32) with
right and left padding, which only holds if positions start after the padding index and
count real tokens only."""

import jax
import numpy as np
import pytest

from lmjax.runs.importers.hf import from_pretrained, load

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4
VOCAB = 91
PAD = 1  # RoBERTa's padding_idx


def tiny_roberta(seed: int, **options):
    torch.manual_seed(seed)
    config = transformers.RobertaConfig(
        vocab_size=VOCAB, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=40, max_position_embeddings=20, type_vocab_size=1, pad_token_id=PAD,
        layer_norm_eps=1e-5, **options)
    model = transformers.RobertaForMaskedLM(config).float().eval()
    with torch.no_grad():  # random LayerNorm and bias values, so no mapping hides behind 1s and 0s
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                parameter.copy_(torch.randn_like(parameter) * 0.5 + name.endswith("weight"))
    return model


def batch(padding: str, length: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """Row 1 padded by 6 on `padding`'s side; real tokens never use the pad id."""
    ids = np.random.default_rng(7).integers(3, VOCAB, (2, length))
    mask = np.ones((2, length), np.int64)
    if padding == "left":
        mask[1, :6] = 0
    else:
        mask[1, length - 6:] = 0
    ids[mask == 0] = PAD
    return ids, mask


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_mlm_logits_match_transformers(tmp_path, padding, tied):
    hf = tiny_roberta(seed=int(tied), tie_word_embeddings=tied)
    if not tied:
        with torch.no_grad():
            hf.lm_head.decoder.weight.copy_(torch.randn_like(hf.lm_head.decoder.weight) * 0.05)
    hf.save_pretrained(tmp_path)
    model, params = from_pretrained(tmp_path)
    assert model.config.tie_embeddings == tied
    ids, mask = batch(padding)
    ours = np.asarray(jax.jit(model.apply)({"params": params}, input_ids=ids, attention_mask=mask))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    real = mask.astype(bool)
    assert np.max(np.abs(ours[real] - theirs[real])) <= TOLERANCE


def test_positions_start_after_the_padding_index(tmp_path):
    """20 table rows, the first PAD + 1 of which no real token uses: 18 positions remain."""
    hf = tiny_roberta(seed=2)
    hf.save_pretrained(tmp_path)
    config, params = load(tmp_path)
    table = hf.roberta.embeddings.position_embeddings.weight.detach().numpy()
    assert config.max_len == 18 and config.positions_skip_padding and not config.nsp
    np.testing.assert_array_equal(params["position_embed"]["embedding"], table[PAD + 1:])

"""llama2.c checkpoints: header, layout onto the GPT's parameters, and size checks."""

import json

import numpy as np
import pytest

from lmjax.runs.importers import llama2c
from lmjax.cli import main
from lmjax.errors import CheckpointError


def _write_llama2c(path, header, arrays):
    with path.open("wb") as stream:
        stream.write(np.asarray(header, "<i4").tobytes())
        for array in arrays:
            stream.write(np.asarray(array, "<f4").tobytes())


def test_stories260k_header_and_parameter_count(data_dir):
    config, params = llama2c.load(data_dir / "stories260K" / "stories260K.bin")
    assert (config.d_model, config.d_ff, config.n_layers, config.n_heads, config.kv_heads,
            config.vocab_size, config.max_len) == (64, 172, 5, 8, 4, 512, 512)
    assert config.tie_embeddings and "lm_head" not in params
    n_params = sum(leaf.size for leaf in _leaves(params))
    assert n_params == 260_032  # the published size of stories260K


def test_separate_classifier_and_layout_of_every_matrix(tmp_path):
    """A negative vocab size stores the classifier after freq_cis; each torch (out, in) matrix
    lands transposed with its heads split out."""
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = 8, 12, 2, 4, 2, 10, 6
    header = llama2c.Header(dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared_classifier=False)
    rng = np.random.default_rng(0)
    arrays = {name: rng.standard_normal(shape) for name, shape in header.array_shapes()}
    path = tmp_path / "tiny.bin"
    _write_llama2c(path, [dim, hidden, layers, heads, kv_heads, -vocab, seq_len], arrays.values())

    config, params = llama2c.load(path)
    assert not config.tie_embeddings
    np.testing.assert_allclose(params["lm_head"]["kernel"], arrays["wcls"].T, rtol=1e-6)
    attn = params["h_1"]["attn"]
    # query head 3, element 1 of its 2-wide head, read from input dim 5: row 3*2+1 of wq
    assert attn["query"]["kernel"][5, 3, 1] == pytest.approx(arrays["wq"][1, 7, 5], rel=1e-6)
    assert attn["key"]["kernel"][5, 1, 0] == pytest.approx(arrays["wk"][1, 2, 5], rel=1e-6)
    assert attn["out"]["kernel"][3, 1, 5] == pytest.approx(arrays["wo"][1, 5, 7], rel=1e-6)
    np.testing.assert_allclose(params["h_0"]["mlp"]["wi_up"]["kernel"], arrays["w3"][0].T, rtol=1e-6)
    np.testing.assert_allclose(params["h_0"]["mlp"]["wo"]["kernel"], arrays["w2"][0].T, rtol=1e-6)


def test_truncated_file_is_a_one_line_error(data_dir, tmp_path, capsys):
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes((data_dir / "stories260K" / "stories260K.bin").read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="is 1056440 bytes but its llama2.c header"):
        llama2c.load(truncated)
    code = main(["generate", "--checkpoint", str(truncated),
                 "--tokenizer", str(data_dir / "stories260K" / "tok512.model")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "implies 1056540" in err


def test_garbage_header_is_a_one_line_error(tmp_path):
    path = tmp_path / "notes.bin"
    path.write_bytes(json.dumps({"not": "a model", "but": "a JSON file"}).encode())
    with pytest.raises(CheckpointError, match="impossible llama2.c header"):
        llama2c.load(path)


def _leaves(tree):
    for value in tree.values():
        yield from _leaves(value) if isinstance(value, dict) else [value]

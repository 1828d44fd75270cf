"""llama2.c checkpoints (the legacy float32 `.bin` format) as the Llama variant of lmjax's GPT.

The file is a header of 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
seq_len; a negative vocab_size means the classifier is stored separately) followed by float32
arrays in a fixed order, each layer's matrices stacked over layers and stored as PyTorch
`Linear` weights (out × in). lmjax kernels are (in, *out), so every matrix is transposed and
its head dimension split out. llama2.c's RoPE rotates interleaved pairs and shares kv head
h // (n_heads / n_kv_heads) with query head h; lmjax does the same, so no row permutation.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np

from lmjax.config import ModelConfig
from lmjax.errors import CheckpointError

HEADER_INTS = 7
HEADER_BYTES = HEADER_INTS * 4
FLOAT_BYTES = 4


@dataclasses.dataclass(frozen=True)
class Header:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    def array_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The stored arrays in file order, named after llama2.c's `TransformerWeights`."""
        d, f, layers, kv_dim = self.dim, self.hidden_dim, self.n_layers, self.n_kv_heads * self.head_size
        shapes = [
            ("token_embedding", (self.vocab_size, d)),
            ("rms_att", (layers, d)),
            ("wq", (layers, d, d)),
            ("wk", (layers, kv_dim, d)),
            ("wv", (layers, kv_dim, d)),
            ("wo", (layers, d, d)),
            ("rms_ffn", (layers, d)),
            ("w1", (layers, f, d)),
            ("w2", (layers, d, f)),
            ("w3", (layers, f, d)),
            ("rms_final", (d,)),
            ("freq_cis", (self.seq_len, self.head_size)),  # unused: lmjax computes RoPE itself
        ]
        if not self.shared_classifier:
            shapes.append(("wcls", (self.vocab_size, d)))
        return shapes

    def file_size(self) -> int:
        floats = sum(int(np.prod(shape)) for _, shape in self.array_shapes())
        return HEADER_BYTES + FLOAT_BYTES * floats

    def model_config(self) -> ModelConfig:
        """llama2.c's fixed choices: RMSNorm eps 1e-5, RoPE theta 1e4, SwiGLU, no biases."""
        return ModelConfig(
            arch="gpt", vocab_size=self.vocab_size, d_model=self.dim, n_layers=self.n_layers,
            n_heads=self.n_heads, n_kv_heads=self.n_kv_heads, d_ff=self.hidden_dim,
            max_len=self.seq_len, norm="rmsnorm", norm_eps=1e-5, position="rope",
            rope_theta=10000.0, mlp="swiglu", use_bias=False,
            tie_embeddings=self.shared_classifier,
        )


def read_header(path: pathlib.Path) -> Header:
    """The header, checked for sense and against the file's size before any weight is read."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"llama2.c checkpoint {path} does not exist")
    with path.open("rb") as stream:
        raw = stream.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise CheckpointError(f"{path} is {len(raw)} bytes, shorter than a llama2.c header of {HEADER_BYTES}")
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = (int(v) for v in np.frombuffer(raw, "<i4"))
    header = Header(dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len, vocab > 0)
    if min(dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len) <= 0 or dim % heads or heads % kv_heads:
        raise CheckpointError(
            f"{path} has an impossible llama2.c header (dim={dim}, hidden_dim={hidden}, n_layers={layers}, "
            f"n_heads={heads}, n_kv_heads={kv_heads}, vocab_size={vocab}, seq_len={seq_len}): not a legacy llama2.c file"
        )
    actual, expected = path.stat().st_size, header.file_size()
    if actual != expected:
        raise CheckpointError(
            f"{path} is {actual} bytes but its llama2.c header (dim={dim}, n_layers={layers}, vocab_size={vocab}, "
            f"seq_len={seq_len}) implies {expected}: the file is truncated, padded or not the legacy float32 format"
        )
    return header


def load(path: str | pathlib.Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The model config and GPT parameters (numpy float32) of a llama2.c checkpoint."""
    header = read_header(pathlib.Path(path))
    flat = np.fromfile(path, dtype="<f4", offset=HEADER_BYTES)
    arrays, start = {}, 0
    for name, shape in header.array_shapes():
        size = int(np.prod(shape))
        arrays[name] = flat[start:start + size].reshape(shape)
        start += size
    return header.model_config(), _gpt_params(arrays, header)


def _gpt_params(w: dict[str, np.ndarray], header: Header) -> dict[str, Any]:
    d, h, g, k = header.dim, header.n_heads, header.n_kv_heads, header.head_size
    params: dict[str, Any] = {
        "wte": {"embedding": w["token_embedding"]},
        "ln_f": {"scale": w["rms_final"]},
    }
    for layer in range(header.n_layers):
        params[f"h_{layer}"] = {
            "ln_1": {"scale": w["rms_att"][layer]},
            "attn": {
                "query": {"kernel": w["wq"][layer].T.reshape(d, h, k)},
                "key": {"kernel": w["wk"][layer].T.reshape(d, g, k)},
                "value": {"kernel": w["wv"][layer].T.reshape(d, g, k)},
                "out": {"kernel": w["wo"][layer].T.reshape(h, k, d)},
            },
            "ln_2": {"scale": w["rms_ffn"][layer]},
            "mlp": {
                "wi": {"kernel": w["w1"][layer].T},
                "wi_up": {"kernel": w["w3"][layer].T},
                "wo": {"kernel": w["w2"][layer].T},
            },
        }
    if not header.shared_classifier:
        params["lm_head"] = {"kernel": w["wcls"].T}
    return _contiguous(params)


def _contiguous(tree: dict[str, Any]) -> dict[str, Any]:
    return {key: _contiguous(value) if isinstance(value, dict) else np.ascontiguousarray(value)
            for key, value in tree.items()}

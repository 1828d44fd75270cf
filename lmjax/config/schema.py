"""The config schema: typed dataclasses, the tables of allowed values, the default axis rules.

A config is plain data; `lmjax.config.load` fills these dataclasses from YAML and overrides,
`lmjax.config.validate` checks what types cannot. The default `mesh.axis_rules` are data too
(`axis_rules.yaml` beside this file).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
from typing import Any

import yaml
from omegaconf import MISSING

from lmjax.errors import ConfigError

ARCHS = ("gpt", "bert", "t5")
NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope", "relative")
MLPS = ("gelu", "gelu_exact", "relu", "swiglu", "geglu")  # gelu: tanh approximation; gelu_exact: erf
DTYPES = ("auto", "float32", "bfloat16")  # auto: bfloat16 on GPU/TPU, float32 on CPU
PARAMETRIZATIONS = ("standard", "mup")  # mup: lmjax.train.mup, docs/scaling.md "µP"
ATTENTION_IMPLS = ("auto", "xla", "cudnn", "splash")  # lmjax.models.attention_kernels
KERNEL_PLATFORM = {"cudnn": "gpu", "splash": "tpu"}
REMAT = ("none", "full", "dots_saveable")
OBJECTIVES = ("causal_lm", "masked_lm", "span_corruption")
OBJECTIVE_ARCH = {"causal_lm": "gpt", "masked_lm": "bert", "span_corruption": "t5"}
ARCH_POSITIONS = {"gpt": ("learned", "rope"), "bert": ("learned",), "t5": ("relative",)}
ARCH_OBJECTIVE = {arch: objective for objective, arch in OBJECTIVE_ARCH.items()}
ROPE_SCALINGS = ("none", "linear", "llama3")  # transformers' rope_type values lmjax computes
TOKENIZERS = ("sentencepiece", "bpe", "wordpiece")
UTF8_POLICIES = ("replace", "error")
SOURCE_FORMATS = ("parquet", "jsonl", "jsonl.gz", "jsonl.zst", "text", "array_record")
SOURCE_KEYS = ("name", "files", "format", "text_field", "filters", "weight")


@functools.cache
def _axis_rules_text() -> str:
    return (importlib.resources.files("lmjax.config") / "axis_rules.yaml").read_text()


def default_axis_rules() -> list[list[Any]]:
    """A fresh copy of the default logical-axis -> mesh-axes rules (`axis_rules.yaml`): each
    config gets its own lists, so editing one config's rules leaves the defaults alone."""
    return yaml.safe_load(_axis_rules_text())


@dataclasses.dataclass
class ModelConfig:
    arch: str = "gpt"
    preset: str = ""  # a published shape from configs/presets/; other keys override it
    vocab_size: int = 512
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # grouped-query attention; None means n_heads
    d_ff: int = 512
    max_len: int = 256
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    position: str = "learned"
    rope_theta: float = 10000.0
    # RoPE frequency scaling, as transformers' rope_type: linear divides every frequency by
    # the factor; llama3 divides only the low ones (Llama 3.1), smoothly between the bands.
    rope_scaling: str = "none"
    rope_scaling_factor: float = 1.0
    rope_low_freq_factor: float = 1.0  # llama3
    rope_high_freq_factor: float = 4.0  # llama3
    rope_original_max_len: int = 8192  # llama3: the context length before scaling
    mlp: str = "gelu"
    use_bias: bool = True
    qkv_bias: bool = False  # biases on query/key/value only (Qwen2), with use_bias=false
    tie_embeddings: bool = True
    dtype: str = "auto"  # compute dtype; parameters stay float32 (lmjax.models.platform)
    remat: str = "none"
    scan_layers: bool = False  # nn.scan over identical blocks: one compiled layer, fast compiles
    attention_blocks: int = 1  # >1: causal attention in blocks, masked ones skipped (>=64 rows: tiles)
    attention_impl: str = "auto"  # auto | xla | cudnn (NVIDIA GPU) | splash (TPU)
    loss_chunks: int = 1  # >1: GPT's logits and loss a vocabulary chunk at a time
    head_dim: int | None = None  # None means d_model // n_heads; T5 sets it (d_kv) independently
    n_decoder_layers: int | None = None  # T5's decoder depth; None means n_layers
    type_vocab_size: int = 2  # BERT's segment (token-type) embeddings
    positions_skip_padding: bool = False  # BERT: positions count real tokens only (RoBERTa)
    nsp: bool = False  # BERT's next-sentence-prediction head on [CLS] (off, as in RoBERTa)
    relpos_buckets: int = 32  # T5's relative position buckets
    relpos_max_distance: int = 128  # T5: distances beyond this share the last bucket
    parametrization: str = "standard"  # standard | mup (Tensor Programs V; lmjax.train.mup)
    mup_base_width: int = 0  # mup: the d_model at which µP equals the standard parametrization

    @property
    def d_head(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layers or self.n_layers

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def width_multiplier(self) -> float:
        """µP's m = d_model / mup_base_width (1 under the standard parametrization)."""
        if self.parametrization != "mup":
            return 1.0
        return self.d_model / self.mup_base_width

    @property
    def logit_multiplier(self) -> float:
        """µP multiplies the output layer's input by 1/m (Tensor Programs V, Table 3 in the
        form of Microsoft's `mup` MuReadout), so logits stay O(1) as width grows."""
        return 1.0 / self.width_multiplier

    @property
    def attention_multiplier(self) -> float:
        """µP scores attention by 1/d_head, not 1/sqrt(d_head): with heads fixed and
        d_head ∝ m, the standard scale times m^-1/2 (equal to it at the base width)."""
        return self.width_multiplier**-0.5


@dataclasses.dataclass
class DataConfig:
    corpus: str = "tiny_shakespeare"
    data_dir: str = ""  # empty: $LMJAX_DATA_DIR, else ~/lmjax_data
    cache_dir: str = ""  # prepared tfds data and trained tokenizers; empty: ~/.cache/lmjax
    download: bool = True
    seq_len: int = 128
    tokenizer: str = "sentencepiece"
    tokenizer_dir: str = ""  # a saved tokenizer to use instead of training one
    invalid_utf8: str = "replace"
    character_coverage: float = 1.0  # SentencePiece, in [0.98, 1]: share of characters kept as pieces; the rest fall back to bytes
    objective: str = "causal_lm"
    mask_prob: float = 0.15  # masked_lm: share of (non-special) tokens selected for prediction
    whole_word_mask: bool = False  # masked_lm: select whole words, not single pieces
    noise_density: float = 0.15  # span_corruption: share of tokens dropped into the targets
    mean_noise_span_length: float = 3.0  # span_corruption
    shuffle_seed: int = 0
    worker_count: int = 0
    # Sharded corpora (docs/data.md): each entry a glob string or a mapping of SOURCE_KEYS;
    # non-empty replaces `corpus`.
    sources: list[Any] = dataclasses.field(default_factory=list)
    validation_fraction: float = 0.01  # sources: share of each source's documents held out (by hash)
    prepare_workers: int = 0  # sources: tokenizing processes; 0 means one per CPU core
    tokenizer_train_bytes: int = 20_000_000  # sources: text sampled by weight to train the tokenizer


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """One entry of `data.sources`: files by glob, their format (empty: from the extension),
    the text column, row filters such as "language_score >= 0.9", and the mixture weight."""

    files: str
    name: str = ""
    format: str = ""
    text_field: str = "text"
    filters: tuple[str, ...] = ()
    weight: float = 1.0


def source_configs(data: DataConfig) -> list[SourceConfig]:
    """`data.sources` as SourceConfigs: a bare string is a glob with every default."""
    return [_source_config(index, entry) for index, entry in enumerate(data.sources)]


def _source_config(index: int, entry: Any) -> SourceConfig:
    where = f"data.sources[{index}]"
    if isinstance(entry, str):
        entry = {"files": entry}
    if not isinstance(entry, dict) or not entry.get("files"):
        raise ConfigError(f"{where} must be a glob string or a mapping with a 'files' glob, got {entry!r}")
    unknown = sorted(set(entry) - set(SOURCE_KEYS))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}: use {', '.join(SOURCE_KEYS)}")
    filters = entry.get("filters") or ()
    filters = (filters,) if isinstance(filters, str) else tuple(filters)
    try:
        weight = float(entry.get("weight", 1.0))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.weight={entry['weight']!r} is not a number") from None
    return SourceConfig(files=str(entry["files"]), name=str(entry.get("name") or ""),
                        format=str(entry.get("format") or ""),
                        text_field=str(entry.get("text_field") or "text"),
                        filters=tuple(map(str, filters)), weight=weight)


@dataclasses.dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 100
    global_batch_size: int = 16
    grad_accum_steps: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay, Hägele et al. 2024)
    decay_fraction: float = 0.2  # wsd: the share of train.steps spent decaying (the cooldown)
    decay_shape: str = "1-sqrt"  # wsd: linear | 1-sqrt (the paper's best)
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    log_every: int = 10
    eval_every: int = 50
    eval_batches: int = 4
    peak_flops: float = 0.0  # per device; 0 measures a float32 matmul at start
    eval_tasks: list[str] = dataclasses.field(default_factory=list)  # harness tasks run at evaluations
    eval_limit: int = 200  # documents per harness task at each evaluation (0: all)
    eval_truncate: bool = False  # cut task prompts longer than the context from the left, as HFLM does
    skip_nonfinite_batches: int = 0  # skip up to this many batches whose loss or gradient is not finite


@dataclasses.dataclass
class MeshConfig:
    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    axis_rules: list[Any] = dataclasses.field(default_factory=default_axis_rules)
    coordinator_address: str = ""  # host:port of process 0 when running several hosts
    num_processes: int = 1
    process_id: int = 0


@dataclasses.dataclass
class CheckpointConfig:
    every: int = 50
    keep: int = 3
    keep_steps: list[int] = dataclasses.field(default_factory=list)  # also saved, never deleted (cooldown branches start there)
    init_from: str = ""  # a run dir or `lmjax convert` export whose parameters start training


@dataclasses.dataclass
class Config:
    name: str = MISSING
    run_dir: str = ""  # empty: runs/<name>
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)

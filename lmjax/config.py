"""Typed experiment configs: dataclasses, named YAML configs, model presets, dotlist overrides.

A config is plain data. OmegaConf merges a named YAML file (package data under
`lmjax/configs/`, or any path), a model preset (`model.preset=NAME`, from
`lmjax/configs/presets/`) and `key=value` overrides onto the dataclass defaults, rejecting
unknown keys and wrong types; `validate` then checks what types cannot (divisibility, ranges,
cross-field constraints, the mesh and batch layout for a device count). Everything runs
before JAX compiles or anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import os
import pathlib
from typing import Any

import yaml

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lmjax.errors import ConfigError

CONFIGS = importlib.resources.files("lmjax") / "configs"
PRESETS = CONFIGS / "presets"

ARCHS = ("gpt", "bert", "t5")
NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope", "relative")
MLPS = ("gelu", "gelu_exact", "relu", "swiglu", "geglu")  # gelu: tanh approximation; gelu_exact: erf
DTYPES = ("auto", "float32", "bfloat16")  # auto: bfloat16 on GPU/TPU, float32 on CPU
ATTENTION_IMPLS = ("auto", "xla", "cudnn", "splash")  # lmjax.models.attention_kernels
KERNEL_BACKEND = {"cudnn": "gpu", "splash": "tpu"}
REMAT = ("none", "full", "dots_saveable")
OBJECTIVES = ("causal_lm", "masked_lm", "span_corruption")
OBJECTIVE_ARCH = {"causal_lm": "gpt", "masked_lm": "bert", "span_corruption": "t5"}
ARCH_POSITIONS = {"gpt": ("learned", "rope"), "bert": ("learned",), "t5": ("relative",)}
ARCH_OBJECTIVE = {arch: objective for objective, arch in OBJECTIVE_ARCH.items()}
TOKENIZERS = ("sentencepiece", "bpe", "wordpiece")
UTF8_POLICIES = ("replace", "error")
SOURCE_FORMATS = ("parquet", "jsonl", "jsonl.gz", "jsonl.zst", "text", "array_record")
SOURCE_KEYS = ("name", "files", "format", "text_field", "filters", "weight")

# Logical axis -> mesh axes. Rules are tried in order; a mesh axis already used by an
# earlier dimension of the same array is skipped, so activations (batch, length, embed)
# shard batch over data+fsdp while parameters (vocab, embed) shard embed over fsdp.
DEFAULT_AXIS_RULES: list[list[Any]] = [
    ["batch", ["data", "fsdp"]],
    ["embed", "fsdp"],
    ["heads", "tensor"],
    ["kv_heads", "tensor"],
    ["mlp", "tensor"],
    ["vocab", "tensor"],
    ["length", None],
    ["kv", None],
    ["layers", None],
    ["type_vocab", None],
    ["relpos_buckets", None],
    ["classes", None],
]


@dataclasses.dataclass
class ModelConfig:
    arch: str = "gpt"
    preset: str = ""  # a published shape from lmjax/configs/presets/; other keys override it
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
    mlp: str = "gelu"
    use_bias: bool = True
    tie_embeddings: bool = True
    dtype: str = "auto"  # compute dtype; parameters stay float32 (lmjax.models.backend)
    remat: str = "none"
    scan_layers: bool = False  # nn.scan over identical blocks: one compiled layer, fast compiles
    attention_blocks: int = 1  # >1: causal attention in blocks, masked ones skipped (>=64 rows: tiles)
    attention_impl: str = "auto"  # auto | xla | cudnn (NVIDIA GPU) | splash (TPU)
    loss_chunks: int = 1  # >1: GPT's logits and loss a vocabulary chunk at a time
    head_dim: int | None = None  # None means d_model // n_heads; T5 sets it (d_kv) independently
    n_decoder_layers: int | None = None  # T5's decoder depth; None means n_layers
    type_vocab_size: int = 2  # BERT's segment (token-type) embeddings
    nsp: bool = False  # BERT's next-sentence-prediction head on [CLS] (off, as in RoBERTa)
    relpos_buckets: int = 32  # T5's relative position buckets
    relpos_max_distance: int = 128  # T5: distances beyond this share the last bucket

    @property
    def d_head(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layers or self.n_layers

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads


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
    axis_rules: list[Any] = dataclasses.field(
        default_factory=lambda: [list(rule) for rule in DEFAULT_AXIS_RULES]
    )
    coordinator_address: str = ""  # host:port of process 0 when running several hosts
    num_processes: int = 1
    process_id: int = 0


@dataclasses.dataclass
class CheckpointConfig:
    every: int = 50
    keep: int = 3
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


def named_configs() -> list[str]:
    return sorted(entry.name[:-5] for entry in CONFIGS.iterdir() if entry.name.endswith(".yaml"))


@functools.cache
def presets() -> dict[str, dict[str, Any]]:
    """Every model preset by name: the model keys of a published shape. Each file under
    `lmjax/configs/presets/` holds one family as a mapping of preset names to model keys."""
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(PRESETS.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            found.update(yaml.safe_load(entry.read_text()) or {})
    return found


def preset_values(name: str) -> dict[str, Any]:
    """The model keys of preset `name`; a one-line error listing the known ones otherwise."""
    known = presets()
    if name not in known:
        raise ConfigError(f"unknown model.preset {name!r}: pick one of {', '.join(sorted(known))}")
    return {**known[name], "preset": name}


def preset_model(name: str) -> ModelConfig:
    """The ModelConfig of preset `name` alone (type-checked and validated), for counting and
    planning without a run config around it."""
    try:
        model = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(ModelConfig), preset_values(name))
        )
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    _validate_model(model)
    return model


def load_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The named config (or a YAML path) with a preset and `key=value` overrides applied,
    validated for its own values (`validate(config, n_devices)` adds the mesh checks)."""
    file_values = _read_yaml(_config_path(name_or_path))
    try:
        override_values = OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    _check_overrides(overrides)
    return _merge(file_values, override_values)


def from_dict(values: dict[str, Any]) -> Config:
    """A Config from plain data (a saved `config.yaml`), type-checked and validated."""
    return _merge(values, OmegaConf.create({}))


def _config_path(name_or_path: str) -> pathlib.Path | Any:
    path = pathlib.Path(name_or_path)
    named = CONFIGS / f"{name_or_path}.yaml"
    if not path.suffix and named.is_file():
        return named
    if path.is_file():
        return path
    raise ConfigError(
        f"no config '{name_or_path}': pick one of {', '.join(named_configs())} or give a YAML path"
    )


def _read_yaml(path) -> dict[str, Any]:
    """A config file's mapping; syntax errors, bad encodings and non-mappings in one line."""
    try:
        values = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {err.start}): save it as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config {path} is not valid YAML{where}: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"config {path} holds a {type(values).__name__} at the top level: it must be a "
            "mapping of sections (model:, data:, train:, ...)"
        )
    return values


def _check_overrides(overrides) -> None:
    for override in overrides:
        if "=" not in override:
            raise ConfigError(
                f"override {override!r} has no '=': write KEY=VALUE, e.g. train.steps=100"
            )


def _merge(file_values, override_values) -> Config:
    """Defaults < file < overrides, with the preset placed right below the layer naming it."""
    layers = [OmegaConf.structured(Config), file_values, override_values]
    try:
        from_overrides = OmegaConf.select(override_values, "model.preset")
        named = from_overrides or OmegaConf.select(OmegaConf.create(file_values), "model.preset")
        if named:
            layers.insert(2 if from_overrides else 1, {"model": preset_values(str(named))})
        config = OmegaConf.to_object(OmegaConf.merge(*layers))
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    validate(config)
    return config


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_yaml(config: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def _one_line(err: OmegaConfBaseException) -> str:
    """OmegaConf's multi-line message reduced to what was wrong and where."""
    message = str(err).splitlines()[0].strip()
    key = getattr(err, "full_key", None)
    if "not in struct" in message or "Key '" in message and "not" in message:
        return f"unknown config key '{key}': `lmjax train --config NAME --print-config` lists the keys"
    if key:
        return f"bad value for config key '{key}': {message}"
    return message


def _choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{field}={value!r} is not one of {', '.join(allowed)}")


def _positive(field: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{field}={value} must be positive")


def validate(config: Config, n_devices: int | None = None, n_processes: int | None = None) -> None:
    """Every check that can be made before compiling; raises ConfigError with a one-line fix.

    The one place a config is checked: the trainer, `lmjax train --check` and a sweep's
    dry-run call it. Given the device and process counts it also checks the mesh and how the
    global batch divides over data-parallel devices and hosts.
    """
    _validate_model(config.model)
    _validate_data(config)
    _validate_train(config.train)
    _validate_eval_tasks(config)
    _validate_checkpoint(config.checkpoint)
    _validate_mesh_shape(config.mesh)
    if n_devices is not None:
        sizes = mesh_axis_sizes(config.mesh, n_devices)
        _validate_batch_layout(config.train, sizes["data"] * sizes["fsdp"], n_processes or 1)


def _validate_eval_tasks(config: Config) -> None:
    """Every file `train.eval_tasks` will read exists (lmjax.eval.tasks)."""
    if config.train.eval_limit < 0:
        raise ConfigError(f"train.eval_limit={config.train.eval_limit} must be >= 0 (0 scores every document)")
    if not config.train.eval_tasks:
        return
    from lmjax.eval.tasks import missing_files

    missing = missing_files(list(config.train.eval_tasks), str(resolve_data_dir(config.data)))
    if missing:
        raise ConfigError(f"train.eval_tasks reads {missing[0]}, which does not exist: put the file "
                          "there, set data.data_dir (or LMJAX_DATA_DIR), or drop the task")


def _validate_model(model: ModelConfig) -> None:
    _choice("model.arch", model.arch, ARCHS)
    _choice("model.norm", model.norm, NORMS)
    _choice("model.position", model.position, POSITIONS)
    _choice("model.mlp", model.mlp, MLPS)
    _choice("model.dtype", model.dtype, DTYPES)
    _choice("model.remat", model.remat, REMAT)
    for field in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len"):
        _positive(f"model.{field}", getattr(model, field))
    if model.head_dim is None and model.d_model % model.n_heads:
        raise ConfigError(
            f"model.n_heads={model.n_heads} does not divide model.d_model={model.d_model}: "
            "pick a head count that divides it"
        )
    if model.n_heads % model.kv_heads:
        raise ConfigError(
            f"model.n_kv_heads={model.n_kv_heads} does not divide model.n_heads={model.n_heads}"
        )
    if model.position == "rope" and model.d_head % 2:
        raise ConfigError(f"RoPE needs an even head size; d_model/n_heads is {model.d_head}")
    _validate_attention_impl(model)
    _validate_loss_chunks(model)
    _validate_arch(model)


def _validate_attention_impl(model: ModelConfig) -> None:
    """A named kernel needs its backend (asked of JAX only then) and a model it can serve."""
    _choice("model.attention_impl", model.attention_impl, ATTENTION_IMPLS)
    needed = KERNEL_BACKEND.get(model.attention_impl)
    if needed is None:
        return
    if model.arch == "t5":
        raise ConfigError(f"model.attention_impl={model.attention_impl} cannot add T5's relative "
                          "position bias: set model.attention_impl=auto or xla")
    import jax

    if jax.default_backend() != needed:
        raise ConfigError(f"model.attention_impl={model.attention_impl} needs a {needed.upper()} "
                          f"but JAX's backend is {jax.default_backend()}: set "
                          "model.attention_impl=auto (or xla)")
    if model.attention_impl == "cudnn" and model.dtype == "float32":
        raise ConfigError("model.attention_impl=cudnn needs bfloat16 compute: set "
                          "model.dtype=bfloat16 (or auto)")


def _validate_loss_chunks(model: ModelConfig) -> None:
    _positive("model.loss_chunks", model.loss_chunks)
    if model.loss_chunks > 1 and model.arch != "gpt":
        raise ConfigError(f"model.loss_chunks={model.loss_chunks} applies to the causal-LM loss "
                          "only: set model.loss_chunks=1 for model.arch=" + model.arch)
    if model.vocab_size % model.loss_chunks:
        raise ConfigError(f"model.loss_chunks={model.loss_chunks} does not divide "
                          f"model.vocab_size={model.vocab_size}: pick a divisor of it")


def _validate_arch(model: ModelConfig) -> None:
    """What each family supports: BERT has learned positions, T5 only relative ones."""
    for field in ("head_dim", "n_decoder_layers"):
        if getattr(model, field) is not None:
            _positive(f"model.{field}", getattr(model, field))
    for field in ("type_vocab_size", "relpos_buckets", "relpos_max_distance"):
        _positive(f"model.{field}", getattr(model, field))
    if model.position not in ARCH_POSITIONS[model.arch]:
        raise ConfigError(
            f"model.position={model.position!r} is not available for model.arch={model.arch!r}: "
            f"use {' or '.join(ARCH_POSITIONS[model.arch])}"
        )
    if model.nsp and model.arch != "bert":
        raise ConfigError("model.nsp=true needs model.arch=bert: only BERT has a next-sentence head")


def _validate_data(config: Config) -> None:
    data = config.data
    _choice("data.tokenizer", data.tokenizer, TOKENIZERS)
    _choice("data.invalid_utf8", data.invalid_utf8, UTF8_POLICIES)
    _choice("data.objective", data.objective, OBJECTIVES)
    if config.model.arch != OBJECTIVE_ARCH[data.objective]:
        raise ConfigError(
            f"data.objective={data.objective} trains model.arch={OBJECTIVE_ARCH[data.objective]}, "
            f"not {config.model.arch}: set data.objective={ARCH_OBJECTIVE[config.model.arch]}"
        )
    _positive("data.seq_len", data.seq_len)
    if not 0.98 <= data.character_coverage <= 1:
        raise ConfigError(
            f"data.character_coverage={data.character_coverage} must lie in [0.98, 1] (SentencePiece's range)"
        )
    for field in ("mask_prob", "noise_density"):
        if not 0 < getattr(data, field) < 1:
            raise ConfigError(f"data.{field}={getattr(data, field)} must lie strictly between 0 and 1")
    if data.mean_noise_span_length < 1:
        raise ConfigError(f"data.mean_noise_span_length={data.mean_noise_span_length} must be at least 1")
    _validate_sources(data)
    if data.seq_len > config.model.max_len:
        raise ConfigError(
            f"data.seq_len={data.seq_len} exceeds model.max_len={config.model.max_len}: "
            "shorten the sequences or raise model.max_len"
        )


def _validate_sources(data: DataConfig) -> None:
    sources = source_configs(data)
    for index, source in enumerate(sources):
        if source.format:
            _choice(f"data.sources[{index}].format", source.format, SOURCE_FORMATS)
        if source.weight < 0 or not math.isfinite(source.weight):
            raise ConfigError(f"data.sources[{index}].weight={source.weight} must be a finite number >= 0")
    if sources and not sum(source.weight for source in sources):
        raise ConfigError("data.sources: every weight is 0; give at least one source a positive weight")
    names = [source.name for source in sources if source.name]
    if len(set(names)) != len(names):
        raise ConfigError(f"data.sources: names must differ, got {', '.join(names)}")
    if not 0 <= data.validation_fraction < 1:
        raise ConfigError(f"data.validation_fraction={data.validation_fraction} must lie in [0, 1)")
    if data.prepare_workers < 0:
        raise ConfigError(f"data.prepare_workers={data.prepare_workers} must be >= 0 (0: one per core)")


def _validate_train(train: TrainConfig) -> None:
    for field in ("steps", "global_batch_size", "grad_accum_steps", "lr", "log_every",
                  "eval_every", "eval_batches"):
        _positive(f"train.{field}", getattr(train, field))
    if train.global_batch_size % train.grad_accum_steps:
        raise ConfigError(
            f"train.global_batch_size={train.global_batch_size} is not divisible by "
            f"train.grad_accum_steps={train.grad_accum_steps}"
        )
    if not 0 <= train.min_lr_ratio <= 1:
        raise ConfigError(f"train.min_lr_ratio={train.min_lr_ratio} must lie in [0, 1]")
    if train.warmup_steps < 0 or train.warmup_steps > train.steps:
        raise ConfigError(
            f"train.warmup_steps={train.warmup_steps} must lie in [0, train.steps={train.steps}]"
        )


def _validate_checkpoint(checkpoint: CheckpointConfig) -> None:
    if checkpoint.every < 1:
        raise ConfigError(f"checkpoint.every={checkpoint.every} must be at least 1 (steps between saves)")
    if checkpoint.keep < 1:
        raise ConfigError(
            f"checkpoint.keep={checkpoint.keep} must be at least 1: a run needs a checkpoint to resume from"
        )


def _validate_batch_layout(train: TrainConfig, data_parallel: int, n_processes: int) -> None:
    micro = train.global_batch_size // train.grad_accum_steps
    if micro % data_parallel:
        raise ConfigError(
            f"train.global_batch_size={train.global_batch_size} (microbatch {micro}) is not "
            f"divisible by the data-parallel size data*fsdp={data_parallel}: use a multiple of "
            f"{data_parallel}"
        )
    if train.global_batch_size % n_processes:
        raise ConfigError(
            f"train.global_batch_size={train.global_batch_size} is not divisible by the "
            f"{n_processes} hosts"
        )


def mesh_axis_sizes(mesh: MeshConfig, n_devices: int) -> dict[str, int]:
    """The mesh's axis sizes with a -1 filled in; their product must equal the device count."""
    sizes = {"data": mesh.data, "fsdp": mesh.fsdp, "tensor": mesh.tensor}
    known = math.prod(size for size in sizes.values() if size != -1)
    filled = [axis for axis, size in sizes.items() if size == -1]
    if filled:
        if n_devices % known:
            raise ConfigError(
                f"mesh axes {sizes} cannot fill {n_devices} devices: the fixed sizes' product "
                f"{known} must divide the device count"
            )
        sizes[filled[0]] = n_devices // known
    if math.prod(sizes.values()) != n_devices:
        raise ConfigError(
            f"mesh data*fsdp*tensor = {'*'.join(map(str, sizes.values()))} = "
            f"{math.prod(sizes.values())} but there are {n_devices} devices: make the product "
            "equal the device count or set one axis to -1"
        )
    return sizes


def _validate_mesh_shape(mesh: MeshConfig) -> None:
    sizes = {"data": mesh.data, "fsdp": mesh.fsdp, "tensor": mesh.tensor}
    if sum(size == -1 for size in sizes.values()) > 1:
        raise ConfigError("only one mesh axis may be -1 (fill the remaining devices)")
    for axis, size in sizes.items():
        if size == 0 or size < -1:
            raise ConfigError(f"mesh.{axis}={size} must be a positive size or -1")
    for rule in mesh.axis_rules:
        if not isinstance(rule, (list, tuple)) or len(rule) != 2:
            raise ConfigError(f"mesh.axis_rules entry {rule!r} must be [logical_name, mesh_axes]")


def resolve_run_dir(config: Config) -> pathlib.Path:
    return pathlib.Path(config.run_dir or pathlib.Path("runs") / config.name)


def resolve_data_dir(data: DataConfig) -> pathlib.Path:
    return pathlib.Path(
        data.data_dir or os.environ.get("LMJAX_DATA_DIR") or pathlib.Path.home() / "lmjax_data"
    )


def resolve_cache_dir(data: DataConfig) -> pathlib.Path:
    return pathlib.Path(
        data.cache_dir
        or os.environ.get("LMJAX_CACHE_DIR")
        or pathlib.Path.home() / ".cache" / "lmjax"
    )

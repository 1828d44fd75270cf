"""Checks on a config's values that types cannot make: ranges, divisibility, cross-field
constraints, and the mesh and batch layout for a device count. Each raises a ConfigError
whose one line says what was wrong and how to fix it, before anything compiles.
"""

from __future__ import annotations

import dataclasses
import math

from lmjax.config.schema import (ARCH_OBJECTIVE, ARCH_POSITIONS, ARCHS, ATTENTION_IMPLS,
                                 DTYPES, KERNEL_PLATFORM, MLPS, NORMS, OBJECTIVE_ARCH, OBJECTIVES,
                                 PARAMETRIZATIONS, POSITIONS, REMAT, ROPE_SCALINGS, SOURCE_FORMATS,
                                 TOKENIZERS, UTF8_POLICIES,
                                 CheckpointConfig, Config, DataConfig, MeshConfig, ModelConfig,
                                 TrainConfig, source_configs)
from lmjax.errors import ConfigError

MAX_STEPS = 2**31 - 1  # optax's step count and the loop's step are int32


def _choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{field}={value!r} is not one of {', '.join(allowed)}")


def _positive(field: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{field}={value} must be positive")


def _at_least_zero(field: str, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{field}={value} must be >= 0")


def _finite_floats(section: str, values) -> None:
    """NaN passes every comparison (`nan <= 0` is false), so float keys are checked first."""
    for field in dataclasses.fields(values):
        value = getattr(values, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{section}.{field.name}={value} must be a finite number")


def validate(config: Config, n_devices: int | None = None, n_processes: int | None = None) -> None:
    """Every check that can be made before compiling; raises ConfigError with a one-line fix.

    The one place a config is checked: the trainer, `lmjax train --check` and a sweep's
    dry-run call it. Given the device and process counts it also checks the mesh and how the
    global batch divides over data-parallel devices and hosts.
    """
    for section in ("data", "train"):  # the model's in validate_model
        _finite_floats(section, getattr(config, section))
    validate_model(config.model)
    _validate_data(config)
    _validate_train(config.train)
    _validate_checkpoint(config.checkpoint)
    _validate_mesh_shape(config.mesh)
    if n_devices is not None:
        sizes = mesh_axis_sizes(config.mesh, n_devices)
        _validate_batch_layout(config.train, sizes["data"] * sizes["fsdp"], n_processes or 1)


def validate_model(model: ModelConfig) -> None:
    _choice("model.arch", model.arch, ARCHS)
    _choice("model.norm", model.norm, NORMS)
    _choice("model.position", model.position, POSITIONS)
    _choice("model.mlp", model.mlp, MLPS)
    _choice("model.dtype", model.dtype, DTYPES)
    _choice("model.remat", model.remat, REMAT)
    _finite_floats("model", model)
    for field in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len", "norm_eps"):
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
    _validate_rope_scaling(model)
    _validate_attention_impl(model)
    _validate_loss_chunks(model)
    _validate_arch(model)
    _validate_parametrization(model)


def _validate_parametrization(model: ModelConfig) -> None:
    """µP widens with the head count fixed, so the head size must follow d_model at the base
    width too (lmjax.train.mup); the base width only means something under µP."""
    _choice("model.parametrization", model.parametrization, PARAMETRIZATIONS)
    if model.parametrization != "mup":
        if model.mup_base_width:
            raise ConfigError(f"model.mup_base_width={model.mup_base_width} is set but "
                              "model.parametrization=standard: set model.parametrization=mup "
                              "or drop model.mup_base_width")
        return
    if model.mup_base_width <= 0:
        raise ConfigError(f"model.parametrization=mup needs model.mup_base_width > 0 (got "
                          f"{model.mup_base_width}): set it to the d_model whose lr you tuned")
    if model.mup_base_width % model.n_heads:
        raise ConfigError(f"model.mup_base_width={model.mup_base_width} is not a multiple of "
                          f"model.n_heads={model.n_heads}: µP keeps the heads and widens each, "
                          "so pick a base width the head count divides")
    if model.head_dim is not None and model.head_dim * model.n_heads != model.d_model:
        raise ConfigError(f"model.parametrization=mup needs the head size to grow with d_model: "
                          f"model.head_dim={model.head_dim} times n_heads={model.n_heads} is not "
                          f"d_model={model.d_model}; unset model.head_dim")


def _validate_rope_scaling(model: ModelConfig) -> None:
    _choice("model.rope_scaling", model.rope_scaling, ROPE_SCALINGS)
    for field in ("rope_scaling_factor", "rope_low_freq_factor", "rope_high_freq_factor",
                  "rope_original_max_len"):
        _positive(f"model.{field}", getattr(model, field))
    if model.rope_scaling == "llama3" and model.rope_high_freq_factor <= model.rope_low_freq_factor:
        raise ConfigError(f"model.rope_high_freq_factor={model.rope_high_freq_factor} must exceed "
                          f"model.rope_low_freq_factor={model.rope_low_freq_factor}")
    if model.qkv_bias and model.use_bias:
        raise ConfigError("model.qkv_bias=true adds the query/key/value biases to a model without "
                          "biases: it needs model.use_bias=false (use_bias already has them)")


def _validate_attention_impl(model: ModelConfig) -> None:
    """A named kernel needs its backend (asked of JAX only then) and a model it can serve."""
    _choice("model.attention_impl", model.attention_impl, ATTENTION_IMPLS)
    needed = KERNEL_PLATFORM.get(model.attention_impl)
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
                  "eval_every", "eval_batches", "eps"):
        _positive(f"train.{field}", getattr(train, field))
    if train.steps > MAX_STEPS:
        raise ConfigError(f"train.steps={train.steps} exceeds {MAX_STEPS}, the most an int32 step "
                          "counter holds")
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
    _validate_schedule(train)
    _validate_adam(train)
    for field in ("skip_nonfinite_batches", "eval_limit"):
        _at_least_zero(f"train.{field}", getattr(train, field))


def _validate_schedule(train: TrainConfig) -> None:
    """WSD's warm-up must end before its decay starts, or the rate never reaches train.lr."""
    if train.schedule not in ("cosine", "wsd"):
        raise ConfigError(f"train.schedule={train.schedule!r}: choose cosine or wsd")
    if train.decay_shape not in ("linear", "1-sqrt"):
        raise ConfigError(f"train.decay_shape={train.decay_shape!r}: choose linear or 1-sqrt")
    if not 0 < train.decay_fraction <= 1:
        raise ConfigError(f"train.decay_fraction={train.decay_fraction} must lie in (0, 1], "
                          "e.g. 0.2 (Hägele et al. 2024)")
    decay = math.floor(train.decay_fraction * train.steps + 0.5)  # optimizer.wsd_decay_start's
    if train.schedule == "wsd" and train.steps - decay < train.warmup_steps:
        raise ConfigError(f"train.warmup_steps={train.warmup_steps} runs into the decay, which takes "
                          f"the last {decay} of train.steps={train.steps}: lower one of "
                          "train.warmup_steps or train.decay_fraction")


def _validate_adam(train: TrainConfig) -> None:
    """Adam's moment decays average over about 1/(1-b) steps: at 1 the averages never leave 0
    and the bias correction divides by zero; outside [0, 1) they diverge."""
    for field in ("b1", "b2"):
        if not 0 <= getattr(train, field) < 1:
            raise ConfigError(f"train.{field}={getattr(train, field)} must lie in [0, 1), "
                              "e.g. 0.9 (b1) and 0.95 (b2)")
    _at_least_zero("train.weight_decay", train.weight_decay)
    _at_least_zero("train.grad_clip", train.grad_clip)  # 0: no clipping


def _validate_checkpoint(checkpoint: CheckpointConfig) -> None:
    if checkpoint.every < 1:
        raise ConfigError(f"checkpoint.every={checkpoint.every} must be at least 1 (steps between saves)")
    bad = [step for step in checkpoint.keep_steps if not isinstance(step, int) or step < 1]
    if bad:
        raise ConfigError(f"checkpoint.keep_steps has {bad[0]!r}: give steps of 1 or more")
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

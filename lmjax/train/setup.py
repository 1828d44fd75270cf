"""Everything a training run needs, built from a config before the first step: `TrainSetup`.

`build_setup` first makes every check that can fail on user input (the config against the
devices and hosts, the run directory's compatibility, `--restart-from`, `checkpoint.init_from`,
the corpus and the tokenizer), then builds the mesh, model, objective, optimizer and jitted
steps. It compiles nothing and writes nothing to the run directory; the loop does both.
`check_config` is the same checks without the build: `lmjax train --check`.

Every call into `lmjax.data` lives in this file.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np
import yaml

from lmjax import data as data_lib
from lmjax import metrics as metrics_lib
from lmjax import parallel
from lmjax.config import Config, mesh_axis_sizes, validate
from lmjax.data import corpora
from lmjax.errors import CheckpointError, DataError
from lmjax.models import build_model
from lmjax.objectives import objective_for
from lmjax.runs import config_file
from lmjax.runs.config_file import RESTARTABLE
from lmjax.runs.layout import RunLayout, as_path
from lmjax.runs.version import check_version, write_version
from lmjax.scaling.flops import train_flops
from lmjax.scaling.params import ParamCounts, param_counts
from lmjax.tokenizers import Tokenizer
from lmjax.train import mup
from lmjax.train.checkpoint import Checkpointer, is_primary
from lmjax.train.optimizer import learning_rate_schedule, make_optimizer
from lmjax.train.state import abstract_state, init_state, state_shardings
from lmjax.train.step import make_eval_step, make_train_step


@dataclasses.dataclass(frozen=True)
class Restart:
    """A `--restart-from STEP`: the checkpoint to continue from and the settings it changes."""

    step: int
    changes: dict[str, tuple[Any, Any]]  # train.<key> -> (saved value, new value)


@dataclasses.dataclass(frozen=True)
class RunDirState:
    """What the run directory holds, found without writing: a new run, a resume or a restart."""

    layout: RunLayout
    resuming: bool
    restart: Restart | None


@dataclasses.dataclass
class TrainSetup:
    """The built pieces of a run; `lmjax.train.loop.run_training` drives them."""

    config: Config
    layout: RunLayout
    run_dir: RunDirState
    mesh: Any
    rules: Any
    tokenizer: Tokenizer
    objective: Any
    model: Any
    optimizer: Any
    example: dict[str, np.ndarray]
    shardings: Any
    train_step: Any
    eval_step: Any
    counts: ParamCounts
    input_shapes: dict[str, tuple[int, ...]]
    flops_per_batch: float
    input_tokens_per_batch: int
    mixture: Any = None  # the prepared `data.sources`, None for a single corpus

    @property
    def primary(self) -> bool:
        return is_primary()

    def batches(self, split: str, source: str | None = None):
        """This process's slice of each global batch of `split` (a grain iterator); `source`
        reads one of `data.sources` alone."""
        return data_lib.make_batches(
            self.config.data, self.config.train.global_batch_size, self.tokenizer, self.objective, split,
            process_index=jax.process_index(), process_count=jax.process_count(),
            source=source, mixture=self.mixture,
        )

    def data_callbacks(self) -> list:
        """Per-source tokens, epochs and validation curves for a run on `data.sources`."""
        from lmjax.train.source_metrics import SourceMetrics

        return [SourceMetrics(self)] if self.mixture is not None else []

    def abstract_state(self) -> Any:
        return abstract_state(self.shardings, self.model, self.optimizer, self.example,
                              self.mesh, self.rules)

    def new_state(self) -> Any:
        """A freshly initialised state, with `checkpoint.init_from`'s parameters if given."""
        rng = jax.random.key(self.config.train.seed)
        state = init_state(self.model, self.optimizer, self.example, rng, self.shardings,
                           self.mesh, self.rules)
        if self.config.checkpoint.init_from:
            from lmjax.runs.params import load_params

            state["params"] = load_params(self.config.checkpoint.init_from,
                                          self.abstract_state()["params"], self.config.model)
        return state

    def open_checkpointer(self) -> Checkpointer:
        """Creates checkpoints/ : call only once the run directory may be written."""
        return Checkpointer(self.layout.checkpoints, self.config.checkpoint.keep,
                            tuple(self.config.checkpoint.keep_steps))

    @property
    def loss_name(self) -> str:
        return self.objective.loss_name

    def evaluate(self, params: Any) -> dict[str, float]:
        """Loss, perplexity, bits per token and per byte, accuracy on `eval_batches` batches."""
        totals = {}
        with parallel.activate(self.mesh, self.rules):
            for _, batch in zip(range(self.config.train.eval_batches), self.batches("validation")):
                out = self.eval_step(params, parallel.global_batch(batch, self.mesh))
                for name, value in jax.device_get(out).items():
                    totals[name] = totals.get(name, 0.0) + float(value)
        if not totals or totals["tokens"] == 0:
            raise DataError("the validation split gave no tokens: use a larger corpus")
        tokens, loss_sum = totals["tokens"], totals["loss_sum"]
        loss = loss_sum / tokens
        return {
            "eval_loss": loss,
            f"eval_{self.loss_name}": loss,
            "eval_perplexity": metrics_lib.perplexity(loss_sum, tokens),
            "eval_bits_per_token": metrics_lib.entropy(loss_sum, tokens, base=2),
            "eval_bits_per_byte": metrics_lib.bits_per_byte(loss_sum, max(totals["target_bytes"], 1.0)),
            "eval_accuracy": totals["accuracy"] / tokens,
            "eval_tokens": tokens,
            "eval_bytes": totals["target_bytes"],
        }

    def write_run_files(self) -> None:
        """config.yaml, lmjax_version and the tokenizer (`save_tokenizer`)."""
        config_file.save_config(self.layout.root, self.config)
        write_version(self.layout)
        save_tokenizer(self.tokenizer, self.layout)


def save_tokenizer(tokenizer: Tokenizer, layout: RunLayout) -> None:
    """The tokenizer into the run directory; tokenizers write local files, so they are copied."""
    import tempfile

    with tempfile.TemporaryDirectory() as local:
        saved = tokenizer.save(local)
        layout.tokenizer.mkdir(parents=True, exist_ok=True)
        for path in saved.iterdir():
            (layout.tokenizer / path.name).write_bytes(path.read_bytes())


def run_layout(config: Config) -> RunLayout:
    return RunLayout.at(config.run_dir or os.path.join("runs", config.name))


def build_setup(config: Config, *, restart_from: int | None = None) -> TrainSetup:
    """Checks the config and the run directory, then builds mesh, model and jitted steps."""
    parallel.initialize_distributed(config.mesh)
    validate(config, jax.device_count(), jax.process_count())
    run_dir = check_run_dir(config, restart_from)
    mesh = parallel.make_mesh(config.mesh)
    rules = parallel.axis_rules(config.mesh)
    tokenizer = data_lib.build_tokenizer(config.data, config.model.vocab_size)
    mixture = (data_lib.load_mixture(config.data, tokenizer, progress=is_primary())
               if config.data.sources else None)
    objective = objective_for(config, tokenizer)
    model = build_model(config.model)
    example = example_inputs(objective, config.data.seq_len)
    optimizer = make_optimizer(config.train, mup.lr_scaling(model, example))
    shardings = state_shardings(model, optimizer, example, mesh, rules)
    input_shapes = {k: (config.train.global_batch_size, *v.shape[1:]) for k, v in example.items()}
    train_step, eval_step = _jit_steps(config, mesh, model, objective, optimizer, shardings,
                                       token_byte_lengths(tokenizer, config.model.vocab_size))
    return TrainSetup(
        config=config, layout=run_dir.layout, run_dir=run_dir, mesh=mesh, rules=rules,
        tokenizer=tokenizer, objective=objective, model=model, optimizer=optimizer,
        example=example, shardings=shardings, train_step=train_step, eval_step=eval_step,
        counts=param_counts(config.model), input_shapes=input_shapes,
        flops_per_batch=train_flops(config.model, input_shapes),
        input_tokens_per_batch=input_tokens(input_shapes), mixture=mixture,
    )


def _jit_steps(config, mesh, model, objective, optimizer, shardings, token_bytes):
    batch_sharding = parallel.batch_sharding(mesh)
    replicated = parallel.replicated(mesh)
    step = make_train_step(model, objective, optimizer, learning_rate_schedule(config.train),
                           config.train.grad_accum_steps,
                           skip_nonfinite=config.train.skip_nonfinite_batches > 0)
    train_step = jax.jit(step, in_shardings=(shardings, batch_sharding),
                         out_shardings=(shardings, replicated), donate_argnums=0)
    eval_step = jax.jit(make_eval_step(model, objective, token_bytes),
                        in_shardings=(shardings["params"], batch_sharding),
                        out_shardings=replicated)
    return train_step, eval_step


def example_inputs(objective, seq_len: int) -> dict[str, np.ndarray]:
    """Model inputs of batch size 1, enough to trace parameter shapes."""
    window = np.zeros(objective.window_length(seq_len), np.int32)
    example = objective.make_example(window, np.random.default_rng(0))
    return objective.model_inputs({k: v[None] for k, v in example.items()})


def input_tokens(input_shapes: dict[str, tuple[int, ...]]) -> int:
    """Token positions fed to the model per batch: every `*input_ids` array (T5: both stacks)."""
    return int(sum(np.prod(shape) for name, shape in input_shapes.items()
                   if name.endswith("input_ids")))


def token_byte_lengths(tokenizer: Tokenizer, vocab_size: int) -> np.ndarray:
    """UTF-8 bytes of text each token id stands for, for bits per byte.

    Measured as decode(prefix + [id]) minus decode(prefix), so a SentencePiece piece keeps
    the space it starts with; special tokens (end of document, padding, sentinels) and ids
    past the tokenizer's vocabulary count 0 bytes.
    """
    prefix = tokenizer.encode_ordinary("a")
    base = len(tokenizer.decode(prefix).encode("utf-8"))
    specials = set(tokenizer.special_tokens.values())
    lengths = np.zeros(vocab_size, np.float32)
    for token in range(min(vocab_size, tokenizer.vocab_size)):
        if token not in specials:
            lengths[token] = max(len(tokenizer.decode([*prefix, token]).encode("utf-8")) - base, 0)
    return lengths


def check_run_dir(config: Config, restart_from: int | None) -> RunDirState:
    """Whether the run directory is new, resumable or restartable, and that
    `checkpoint.init_from` is usable; one-line errors, nothing written."""
    layout = run_layout(config)
    check_version(layout)
    _check_init_from(config)
    if restart_from is not None:
        restart = _check_restart(layout, config, restart_from)
        return RunDirState(layout, resuming=True, restart=restart)
    return RunDirState(layout, resuming=config_file.check_compatible(layout.root, config),
                       restart=None)


def _check_init_from(config: Config) -> None:
    source = config.checkpoint.init_from
    if not source:
        return
    path = as_path(source)
    if not path.exists():
        raise CheckpointError(
            f"checkpoint.init_from={source}: {path} does not exist; give a run directory of "
            "`lmjax train` or an export of `lmjax convert`"
        )
    if not (path / "params").is_dir() and not (path / "checkpoints").is_dir():
        raise CheckpointError(
            f"checkpoint.init_from={source}: {path} has neither params/ nor checkpoints/; give a "
            "run directory of `lmjax train` or an export of `lmjax convert`"
        )


def checkpoint_steps(layout: RunLayout) -> list[int]:
    """Steps of the finished checkpoints in the run directory (orbax's temporaries excluded)."""
    if not layout.checkpoints.is_dir():
        return []
    return sorted(int(p.name) for p in layout.checkpoints.iterdir() if p.name.isdigit())


def _check_restart(layout: RunLayout, config: Config, step: int) -> Restart:
    """The settings a restart changes; everything else must match the saved run."""
    if not layout.config.exists():
        raise CheckpointError(
            f"--restart-from {step}: {layout.root} holds no run (no config.yaml) to restart"
        )
    saved = (yaml.safe_load(layout.config.read_text()) or {}).get("train", {})
    changes = {f"train.{key}": (saved[key], getattr(config.train, key)) for key in RESTARTABLE
               if key in saved and saved[key] != getattr(config.train, key)}
    as_saved = dataclasses.replace(
        config, train=dataclasses.replace(config.train, **{k[6:]: old for k, (old, _) in changes.items()})
    )
    config_file.check_compatible(layout.root, as_saved)
    steps = checkpoint_steps(layout)
    if step not in steps:
        raise CheckpointError(
            f"--restart-from {step}: {layout.checkpoints} has no checkpoint of step {step}; "
            f"its checkpoints are steps {', '.join(map(str, steps)) or '(none)'}"
        )
    return Restart(step, changes)


def check_config(config: Config, restart_from: int | None = None) -> str:
    """`lmjax train --check`: every check `build_setup` makes that needs no compilation and no
    tokenizer training; returns a one-line summary. Writes nothing."""
    n_processes = max(config.mesh.num_processes, 1)
    n_devices = jax.local_device_count() * n_processes
    validate(config, n_devices, n_processes)
    run_dir = check_run_dir(config, restart_from)
    sizes = mesh_axis_sizes(config.mesh, n_devices)
    counts = param_counts(config.model)
    state = ("restarts from step {}".format(run_dir.restart.step) if run_dir.restart
             else "resumes" if run_dir.resuming else "starts")
    return (f"{config.name}: config valid for {n_devices} devices (mesh "
            f"{' '.join(f'{k}={v}' for k, v in sizes.items())}), {counts.total:,} parameters; "
            f"{state} in {run_dir.layout.root}; corpus {_corpus_source(config)}; "
            f"tokenizer {_tokenizer_source(config)}")


def _corpus_source(config: Config) -> str:
    if config.data.sources:
        from lmjax.data.sources import resolve_sources

        return "sources " + "; ".join(source.describe() for source in resolve_sources(config.data))
    known, path = corpora._locate(config.data)
    return str(path) if path is not None else f"{known.name} (downloaded at start)"


def _tokenizer_source(config: Config) -> str:
    if config.data.tokenizer_dir:
        from lmjax.tokenizers import load

        load(config.data.tokenizer_dir)
        return config.data.tokenizer_dir
    return f"{config.data.tokenizer} (trained on the corpus at start unless cached)"

"""A post-trained model written as an lmjax export (config.yaml, params/, lmjax_version,
tokenizer/) into its run directory (beside metrics.jsonl and checkpoints/), so `open_run`,
`lmjax generate` and the next post-training stage read it like any other; plus the extra
pieces a stage has (chat template, reward head, LoRA adapters) beside it."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from lmjax.config import Config, ModelConfig
from lmjax.errors import CheckpointError, DataError
from lmjax.posttrain.template import ChatTemplate
from lmjax.runs.config_file import save_config
from lmjax.runs.layout import PathLike, RunLayout
from lmjax.runs.open import Run
from lmjax.runs.params import save_params
from lmjax.runs.version import write_version

TEMPLATE_FILE = "chat_template.json"
HEAD_FILE = "reward_head.npz"


def check_new_dir(out_dir: PathLike) -> RunLayout:
    """Refuses, before any training, an output directory that already holds files."""
    layout = RunLayout.at(out_dir)
    if layout.root.exists() and (not layout.root.is_dir() or any(layout.root.iterdir())):
        raise CheckpointError(f"{layout.root} already exists and is not empty: give a new --out directory")
    return layout


def write_export(layout: RunLayout, source: Run, params: Any, model_config: ModelConfig | None = None,
                 config: Config | None = None) -> None:
    """config.yaml (`config`, else the source's named after the directory, with `model_config`
    when the model changed), params/, lmjax_version and tokenizer/."""
    config = config or dataclasses.replace(source.config, name=layout.root.name,
                                           model=model_config or source.config.model)
    save_params(layout.root, params)
    save_config(layout.root, config)
    write_version(layout)
    if source.tokenizer is not None:
        source.tokenizer.save(os.fspath(layout.tokenizer))


def save_model(layout: RunLayout, source: Run, params: Any, template: ChatTemplate, config: Config) -> None:
    """The export of a post-training run in its own run directory (whose config.yaml is
    `config` and whose metrics.jsonl the run wrote), and its chat template."""
    write_export(layout, source, params, config=config)
    (layout.root / TEMPLATE_FILE).write_text(json.dumps(dataclasses.asdict(template)))


def saved_template(path: PathLike) -> ChatTemplate | None:
    """The chat template an earlier post-training stage saved beside its model, if any."""
    file = RunLayout.at(path).root / TEMPLATE_FILE
    return ChatTemplate(**json.loads(file.read_text())) if file.exists() else None


def save_head(layout: RunLayout, head: dict) -> None:
    np.savez(os.fspath(layout.root / HEAD_FILE), **{k: np.asarray(v) for k, v in head.items()})


def load_head(path: PathLike) -> dict:
    file = RunLayout.at(path).root / HEAD_FILE
    if not file.exists():
        raise DataError(f"{path} has no {HEAD_FILE}: give the directory `lmjax posttrain rm` wrote")
    with np.load(os.fspath(file)) as stored:
        return {key: stored[key] for key in stored.files}

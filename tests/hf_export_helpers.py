"""Shared by the transformers export tests: lmjax exports with random weights, transformers
models loaded from an export, and logits of both on the same inputs."""

import json
import pathlib

import flax.linen as nn
import jax
import numpy as np

from lmjax import cli
from lmjax.config import ModelConfig
from lmjax.models import build_model
from lmjax.runs import RunLayout, open_run, write_version
from lmjax.runs.config_file import save_config
from lmjax.runs.importers.config import import_config
from lmjax.runs.open import example_inputs
from lmjax.runs.params import save_params

TOLERANCE = 1e-4
TEXTS = ["First Citizen:\nBefore we proceed any further, hear me speak.",
         "  two leading spaces, a tab\tand digits 12345", "Ünïcödé: héllo wörld — ça va?",
         "中文字 l'été", ""]


def random_export(directory: pathlib.Path, model: ModelConfig, tokenizer=None, seed: int = 0,
                  noise: float = 0.1) -> pathlib.Path:
    """An lmjax export (config.yaml, params/, tokenizer/) of `model` with every parameter
    (biases and norm scales too) moved off its initial value by seeded Gaussian noise."""
    params = nn.meta.unbox(build_model(model).init(jax.random.key(seed),
                                                   **example_inputs(model.arch))["params"])
    rng = np.random.default_rng(seed)
    params = jax.tree.map(
        lambda leaf: np.asarray(leaf) + rng.normal(0, noise, leaf.shape).astype(np.float32), params)
    layout = RunLayout.at(directory)
    save_params(directory, params)
    config = import_config(model, directory.name, tokenizer,
                           tokenizer_dir=str(layout.tokenizer) if tokenizer else "")
    if tokenizer is not None:
        tokenizer.save(layout.tokenizer)
    save_config(directory, config)
    write_version(layout)
    return directory


def to_hf(source, out_dir, *options) -> pathlib.Path:
    assert cli.main(["convert", "to-hf", str(source), str(out_dir), *options]) == 0
    return pathlib.Path(out_dir)


def load_hf(directory, **options):
    """The export as the class its config.json names, checking every tensor was used."""
    import torch
    import transformers

    name = json.loads((pathlib.Path(directory) / "config.json").read_text())["architectures"][0]
    options.setdefault("dtype", torch.float32)
    model, info = getattr(transformers, name).from_pretrained(directory, output_loading_info=True,
                                                              **options)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model.eval()


def feeds(arch: str, vocab: int, seed: int = 0) -> dict:
    """Ids (and for BERT and T5, masks with padding in one row) that every model accepts."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (2, 12))
    if arch == "gpt":
        return {"input_ids": ids}
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    if arch == "bert":
        return {"input_ids": ids, "attention_mask": mask,
                "token_type_ids": rng.integers(0, 2, ids.shape)}
    decoder_ids = rng.integers(0, vocab, (2, 6))
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder_ids,
            "decoder_attention_mask": np.ones_like(decoder_ids)}


def lmjax_logits(source, inputs: dict) -> np.ndarray:
    run = open_run(source)
    out = jax.jit(run.model.apply)({"params": run.params}, **inputs)
    return np.asarray(out[0] if isinstance(out, tuple) else out)


def hf_logits(model, inputs: dict) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(**{name: torch.tensor(value) for name, value in inputs.items()})
    logits = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits
    return logits.float().numpy()

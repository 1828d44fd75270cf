"""Save and load n-gram models as one JSON file: settings, vocabulary and order-n counts.

Only the distinct order-n n-grams and their counts are stored; lower orders are their
marginals and the estimator is recomputed on load, so the file stays plain, readable and
independent of the in-memory layout. `version` changes whenever that layout of the file
changes; a file of another version is refused with a one-line message.

This module reads and writes the file only; `NGramLM.save` and `NGramLM.load` call it and
build the model, so imports point one way (model -> storage).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, NamedTuple

import numpy as np

from lmjax.errors import CheckpointError, DataError
from lmjax.ngram.vocab import RESERVED, Vocabulary

FORMAT = "lmjax-ngram"
VERSION = 1


class SavedModel(NamedTuple):
    """What a model file holds: enough to rebuild the model with `NGramLM._fit_counts`."""

    config: dict[str, Any]
    meta: Any
    vocab: Vocabulary
    ngrams: np.ndarray
    counts: np.ndarray


def save(model, path: str | pathlib.Path) -> None:
    """Write a fitted `NGramLM` to `path` (JSON)."""
    model._require_fitted()
    ngrams = model.table.ngrams()
    tokens = [_plain(t) for t in model.vocab.tokens[len(RESERVED) :]]
    record = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config,
        "meta": model.meta,
        "vocab": tokens,
        "ngrams": ngrams.ravel().tolist(),
        "counts": model.table.counts[model.order].tolist(),
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False, separators=(",", ":"))


def _plain(token):
    """Tokens must be strings or ints to be written as JSON (numpy ints become ints)."""
    if isinstance(token, np.integer):
        return int(token)
    if isinstance(token, (str, int)) and not isinstance(token, bool):
        return token
    raise DataError(f"cannot save a model over {type(token).__name__} tokens: use strings or int ids")


def read(path: str | pathlib.Path) -> SavedModel:
    """Read a file written by `save`, refusing other formats and versions."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"no n-gram model at {path}: train one with `lmjax ngram train`") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not an lmjax n-gram model (not valid JSON)") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an lmjax n-gram model (no '{FORMAT}' format tag)")
    if record.get("version") != VERSION:
        raise CheckpointError(
            f"{path} is an n-gram model of format version {record.get('version')}, this lmjax reads "
            f"version {VERSION}: retrain it with `lmjax ngram train`"
        )
    order = record["config"]["order"]
    ngrams = np.asarray(record["ngrams"], dtype=np.int64).reshape(-1, order)
    return SavedModel(record["config"], record["meta"], Vocabulary(record["vocab"]), ngrams,
                      np.asarray(record["counts"], dtype=np.int64))

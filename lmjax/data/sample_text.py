"""Text to train a tokenizer on a mixture: each source's train documents in file order, up to
its share (by weight) of `data.tokenizer_train_bytes`.

A vocabulary trained on a byte budget split by weight serves each language roughly as the
model will see it; held-out (validation) documents are skipped so evaluation stays unseen.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Sequence

import numpy as np

from lmjax.config import DataConfig
from lmjax.data.cache import document_hash, is_validation, source_key
from lmjax.data.sources import Source


def training_documents(data: DataConfig, sources: Sequence[Source]) -> Iterator[str]:
    """Documents of every source with a positive weight, each within its byte budget."""
    total = sum(source.weight for source in sources)
    for source in sources:
        budget = data.tokenizer_train_bytes * source.weight / total
        # one stream over the files, so a spent budget stops reading them all
        for text in itertools.chain.from_iterable(map(source.documents, source.files)):
            if budget <= 0:
                break
            if is_validation(np.array([document_hash(text)], np.uint64), data.validation_fraction)[0]:
                continue
            budget -= len(text.encode("utf-8"))
            yield text


def mixture_name(data: DataConfig, sources: Sequence[Source]) -> str:
    """Names the tokenizer's cache entry: the sources (as their caches key them), weights, budget."""
    keys = [[source.name, source.weight, source_key(data, source, "")] for source in sources]
    digest = hashlib.sha256(json.dumps([keys, data.tokenizer_train_bytes]).encode()).hexdigest()[:16]
    return f"mixture-{digest}"

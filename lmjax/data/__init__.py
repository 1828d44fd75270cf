"""Text corpora to training batches: a TensorFlow-free tfds builder, sharded web corpora
(`data.sources`) with a token cache and weighted mixtures, the run's tokenizer and a
deterministic, resumable grain pipeline. See docs/data.md.

Names are imported on first use, so a worker process that tokenizes shards
(`lmjax.data.cache`) starts without loading tfds and grain.
"""

import importlib

_EXPORTS = {
    "PreparedCorpus": "lmjax.data.corpora",
    "TextCorpus": "lmjax.data.corpora",
    "prepare_corpus": "lmjax.data.corpora",
    "make_batches": "lmjax.data.pipeline",
    "token_stream": "lmjax.data.pipeline",
    "unigram_entropy_nats": "lmjax.data.pipeline",
    "build_tokenizer": "lmjax.data.tokenizer",
    "load_mixture": "lmjax.data.mixture",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lmjax.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

"""Text corpora to training batches: a TensorFlow-free tfds builder, the run's tokenizer
and a deterministic, resumable grain pipeline. See docs/data.md."""

from lmjax.data.corpora import PreparedCorpus, TextCorpus, prepare_corpus
from lmjax.data.pipeline import make_batches, token_stream, unigram_entropy_nats
from lmjax.data.tokenizer import build_tokenizer

__all__ = [
    "PreparedCorpus",
    "TextCorpus",
    "build_tokenizer",
    "make_batches",
    "prepare_corpus",
    "token_stream",
    "unigram_entropy_nats",
]

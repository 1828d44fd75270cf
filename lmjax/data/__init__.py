"""Text corpora to training batches: a TensorFlow-free tfds builder, the run's tokenizer
and a deterministic, resumable grain pipeline. See docs/data.md."""

from lmjax.data.corpora import PreparedCorpus, TextCorpus, prepare_corpus

__all__ = ["PreparedCorpus", "TextCorpus", "prepare_corpus"]

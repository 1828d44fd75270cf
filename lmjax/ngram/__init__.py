"""Statistical n-gram language models, the baseline every neural run is measured against."""

from lmjax.ngram.model import SMOOTHINGS, Evaluation, NGramLM
from lmjax.ngram.storage import save

load = NGramLM.load

__all__ = ["SMOOTHINGS", "Evaluation", "NGramLM", "load", "save"]

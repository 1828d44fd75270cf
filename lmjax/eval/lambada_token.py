"""LAMBADA as the GPT-2 paper scored it: is the passage's final BPE token the model's greedy
prediction given everything before it? (`lambada` itself is lambada_openai's last-*word*
metric; the two differ when the last word is several tokens.)"""

from __future__ import annotations

from typing import Any

from lmjax import metrics
from lmjax.eval import task_data
from lmjax.eval import tasks as task_lib

TASK = "lambada_final_token"


def evaluate(model: Any, data_dir: str, limit: int | None = None) -> dict[str, Any]:
    """Accuracy and perplexity of the final token of each passage (causal models only)."""
    adapter = model.adapter
    if adapter.kind != "causal":
        return {"n/a": "GPT-2's final-token LAMBADA accuracy needs a left-to-right model over tokens"}
    file = task_lib.data_path("lambada", data_dir).relative_to(data_dir)
    docs = task_data.lambada(data_dir=data_dir, file=str(file))["validation"]
    texts = [doc["text"] for doc in docs][:limit]
    pairs = []
    for text in texts:
        ids = adapter.encode(text)
        pairs.append((ids[:-1] or [adapter.prefix], ids[-1:]))
    if model.strict_context:
        model.check_lengths(pairs)
    scores = adapter.score(pairs)
    total = sum(logprob for logprob, _ in scores)
    return {
        "metrics": {"acc": sum(greedy for _, greedy in scores) / len(scores),
                    "perplexity": metrics.perplexity(-total, len(scores))},
        "examples": {"original": len(docs), "effective": len(texts)},
        "config": {"task": TASK, "data_file": str(file),
                   "definition": "greedy prediction of the passage's last token given all before it"},
    }

"""Per-source numbers of a run on `data.sources`, so a multilingual run shows each language.

Every log record gets `tokens_seen/<source>` (tokens of that source's windows, counted as
`tokens_seen` counts them: the positions each window adds to the stream) and
`epochs/<source>` (passes over its train windows: a small source under a large weight
shows how often it repeated); every evaluation adds `eval_loss/<source>` and
`eval_bits_per_byte/<source>` on that source's own validation split. The counts follow
from the mixture's sampler and the step alone, so they are exact after a resume and the
same on every host.
"""

from __future__ import annotations

from typing import Any

import jax

from lmjax import metrics, parallel
from lmjax.data.pipeline import Window
from lmjax.train.callbacks import Callback


class SourceMetrics(Callback):
    """Adds the per-source fields to the loop's records; runs before the writers."""

    def __init__(self, setup: Any) -> None:
        self.setup = setup
        windows = [Window.for_objective(cache.tokens("train"), setup.objective, setup.config.data.seq_len,
                                        setup.tokenizer.pad_id) for cache in setup.mixture.caches]
        self.window_tokens = windows[0].stride  # what each window adds to the stream
        self.train_windows = [window.count for window in windows]

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        config = self.setup.config
        examples = step * config.train.global_batch_size
        record.update(self.setup.mixture.progress(examples, config.data.shuffle_seed,
                                                  self.train_windows, self.window_tokens))

    def evaluate_params(self, step: int, params: Any) -> dict[str, float]:
        """Loss (nats/token) and bits per byte of each source's first `train.eval_batches`
        validation batches."""
        results = {}
        for cache in self.setup.mixture.caches:
            if cache.manifest["validation"]["tokens"]:
                totals = self._totals(params, cache.source.name)
                if totals["tokens"]:
                    name = cache.source.name
                    results[f"eval_loss/{name}"] = totals["loss_sum"] / totals["tokens"]
                    results[f"eval_bits_per_byte/{name}"] = metrics.bits_per_byte(
                        totals["loss_sum"], max(totals["target_bytes"], 1.0))
        return results

    def _totals(self, params: Any, source: str) -> dict[str, float]:
        setup, totals = self.setup, {"tokens": 0.0, "loss_sum": 0.0, "target_bytes": 0.0}
        batches = setup.batches("validation", source=source)
        with parallel.activate(setup.mesh, setup.rules):
            for _, batch in zip(range(setup.config.train.eval_batches), batches):
                out = jax.device_get(setup.eval_step(params, parallel.global_batch(batch, setup.mesh)))
                for name in totals:
                    totals[name] += float(out[name])
        return totals

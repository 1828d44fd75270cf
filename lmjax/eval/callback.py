"""`train.eval_tasks`: harness tasks at every evaluation step of a training run.

`HarnessEval` is a training callback (`lmjax.train.callbacks.Callback`). At each evaluation
the loop hands it the current parameters (`evaluate_params`); it scores them on the tasks
through `LmjaxLM` (compiled once, parameters swapped in) and returns flat scalars named
`harness/<task>/<metric>` that the loop adds to the evaluation record, so they reach
metrics.jsonl and TensorBoard beside eval_loss and eval_bits_per_byte (which compare runs
with different tokenizers). On several hosts process 0 runs the harness and the others
follow its batches (`lmjax.eval.multihost`).
"""

from __future__ import annotations

import os
from typing import Any

from lmjax.train.callbacks import Callback, RunInfo

class HarnessEval(Callback):
    """Runs `tasks` (names or groups) on at most `limit` documents each, `shots` examples;
    `truncate` cuts prompts longer than the model's context from the left."""

    def __init__(self, tasks: list[str], data_dir: str | None = None, limit: int | None = None,
                 shots: int = 0, truncate: bool = False):
        self.tasks, self.limit, self.shots, self.truncate = list(tasks), limit, shots, truncate
        self.data_dir = data_dir
        self.info: RunInfo | None = None
        self.model: Any = None

    def on_start(self, run: RunInfo) -> None:
        from lmjax.eval import tasks as task_lib

        self.info = run
        task_lib.expand(self.tasks, task_lib.harness_task_names(self.tasks))
        self.data_dir = task_lib.default_data_dir(self.data_dir or run.config.data.data_dir
                                                  or os.environ.get("LMJAX_DATA_DIR"))

    def evaluate_params(self, step: int, params: Any) -> dict[str, float]:
        """The harness metrics of `params` as flat scalars. Every process calls it: on several
        hosts the others score process 0's batches and get {} back."""
        from lmjax.eval.api import evaluate

        result = evaluate(self._model(step, params), self.tasks, self.shots, self.data_dir, self.limit)
        return flatten(result) if result is not None else {}

    def _model(self, step: int, params: Any) -> Any:
        """One LmjaxLM for the run (its scoring compiled once); new parameters swapped in."""
        from lmjax.eval.harness import LmjaxLM

        if self.model is None:
            self.model = LmjaxLM(self._run(step, params), truncate=self.truncate)
        adapter = self.model.adapter
        adapter.run.params = adapter.scorer.params = params
        adapter.run.step = adapter.identity["step"] = step
        return self.model

    def _run(self, step: int, params: Any) -> Any:
        from lmjax import tokenizers
        from lmjax.models import build_model
        from lmjax.runs import Run
        from lmjax.runs.transfer import local_dir

        info = self.info
        tokenizer = tokenizers.load(local_dir(info.layout.tokenizer))
        return Run(info.config, build_model(info.config.model), params, tokenizer, step, [], "run",
                   info.layout, info.layout.root)


def flatten(result: dict[str, Any]) -> dict[str, float]:
    """`harness/<task>/<metric>` -> number, for every numeric metric of every task that ran."""
    flat = {}
    for task, record in result["tasks"].items():
        for metric, value in record.get("metrics", {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"harness/{task}/{metric}"] = float(value)
    return flat


def check_eval_tasks(config: Any) -> None:
    """Every file `train.eval_tasks` will read exists: a missing one would otherwise stop the
    run at its first evaluation, after training. Raises ConfigError naming the file."""
    from lmjax.config import resolve_data_dir
    from lmjax.errors import ConfigError
    from lmjax.eval.tasks import missing_files

    tasks = list(config.train.eval_tasks or [])
    missing = missing_files(tasks, str(resolve_data_dir(config.data))) if tasks else []
    if missing:
        raise ConfigError(f"train.eval_tasks reads {missing[0]}, which does not exist: put the file "
                          "there, set data.data_dir (or LMJAX_DATA_DIR), or drop the task")


def callbacks_for(config: Any) -> list[Callback]:
    """The callbacks `train.eval_tasks` asks for ([] when it is empty), its files checked."""
    tasks, train = list(config.train.eval_tasks or []), config.train
    if not tasks:
        return []
    check_eval_tasks(config)
    return [HarnessEval(tasks, config.data.data_dir or None, limit=train.eval_limit or None,
                        truncate=train.eval_truncate)]

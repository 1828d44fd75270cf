"""The small Python API beside the harness class: `loglikelihood` and `evaluate`.

    from lmjax.runs import open_run
    from lmjax import eval as lmeval
    run = open_run("runs/gpt")
    lmeval.loglikelihood(run, ["The cat"], [" sat"])          # [-3.21...] nats
    lmeval.evaluate(run, ["lambada", "wikitext2"], shots=0, limit=100)   # what eval.json holds
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Sequence
from typing import Any

from lmjax.errors import ConfigError, DataError
from lmjax.eval import multihost
from lmjax.eval import tasks as task_lib
from lmjax.eval.adapters import adapter_for, encode_request
from lmjax.eval.dependency import harness_version, require_harness
from lmjax.eval.generation import SelfConsistency, sampled_paths

HARNESS = "EleutherAI lm-evaluation-harness"


def loglikelihood(run: Any, contexts: Sequence[str], continuations: Sequence[str],
                  batch_size: int = 8) -> list[float]:
    """Summed log-probability in nats of each continuation given its context (an empty context
    means the model's start of sequence: BOS where it has one, else EOS). `run` is an opened
    `Run`, an `NGramLM`, or an `LmjaxLM`."""
    if len(contexts) != len(continuations):
        raise ConfigError(f"{len(contexts)} contexts but {len(continuations)} continuations: give one each")
    adapter = run.adapter if hasattr(run, "adapter") else adapter_for(run, batch_size)
    pairs = [encode_request(adapter, c, x) for c, x in zip(contexts, continuations)]
    return [logprob for logprob, _ in adapter.score(pairs, with_greedy=False)]


def evaluate(run: Any, tasks: Sequence[str] | str, shots: int = 0, data_dir: str | None = None,
             limit: int | None = None, *, batch_size: int = 8, write_prompts: bool = False,
             truncate: bool = False, samples: int = 1, temperature: float | None = None,
             seed: int | None = None) -> dict[str, Any] | None:
    """Every task's metrics through the harness, as eval.json holds them: per task the metrics
    (or "n/a" with the reason), example counts and harness config; the harness version, the
    model's identity and the settings. `run` is a path, an opened `Run`, an `NGramLM` or an
    `LmjaxLM`; `tasks` names or groups (`superglue`, `cbt`). With the parameters on a mesh
    over several hosts, call it on every process: process 0 runs the harness and returns the
    results, the others score its batches and return None."""
    require_harness()
    from lmjax.eval import lambada_token
    from lmjax.eval.harness import LmjaxLM

    if shots < 0:
        raise ConfigError(f"--shots={shots} must be >= 0")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit={limit} must be >= 1")
    if not isinstance(run, LmjaxLM):  # an LmjaxLM's own temperature is checked below
        SelfConsistency(samples, temperature or 0.0)
    names = task_lib.expand(tasks, task_lib.harness_task_names(tasks))
    data_dir = task_lib.default_data_dir(data_dir)
    renamed = task_lib.check_harness_equivalents(_explicit(tasks), data_dir)
    explicit = {renamed.get(name, name) for name in _explicit(tasks)}
    plan = {name: _missing_data(name, data_dir, explicit=name in explicit) for name in names}
    model = run if isinstance(run, LmjaxLM) else LmjaxLM(run, batch_size=batch_size, truncate=truncate)
    # Self-consistency (lmjax.eval.generation): checked before any task runs.
    model.temperature = model.temperature if temperature is None else float(temperature)
    model.seed = model.seed if seed is None else int(seed)
    sampling = SelfConsistency(samples, model.temperature, model.seed)
    scorer = getattr(model.adapter, "scorer", None)
    spans_hosts = multihost.multi_process() and scorer is not None and scorer.mesh is not None
    if spans_hosts and not multihost.is_driver():
        scorer.follow()
        return None
    results: dict[str, Any] = {}
    try:
        for name in names:
            if plan[name]:
                results[name] = {"n/a": plan[name]}
            elif name in task_lib.LMJAX_TASKS:
                model.progress_label, model.shots = name, 0  # its prompts have no examples
                results[name] = lambada_token.evaluate(model, data_dir, limit)
            else:
                results[name] = _run_task(model, name, data_dir, shots, limit, write_prompts, samples)
    finally:
        if spans_hosts:
            scorer.end_followers()
    return {
        "harness": {"name": HARNESS, "version": harness_version()},
        "model": model.adapter.identity,
        "shots": shots, "limit": limit, "data_dir": data_dir,
        "truncate": not model.strict_context, "rolling_context": model.rolling_context,
        **({"renamed_tasks": renamed} if renamed else {}),
        "generation": dataclasses.asdict(sampling),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tasks": results,
    }


def _explicit(tasks: Sequence[str] | str) -> set[str]:
    return {name.strip() for name in (tasks.split(",") if isinstance(tasks, str) else tasks)}


def _missing_data(name: str, data_dir: str, explicit: bool) -> str | None:
    """Why a task cannot run for lack of its file: an error when asked for by name, "n/a"
    inside a group."""
    if name not in task_lib.local_tasks():
        return None
    path = task_lib.data_path(name, data_dir)
    if path.is_file():
        return None
    if explicit:
        raise DataError(f"task {name} reads {path}, which does not exist: put the file there or pass "
                        "another --data-dir")
    return f"no data file {path}"


def _run_task(model: Any, name: str, data_dir: str, shots: int, limit: int | None,
              write_prompts: bool, samples: int = 1) -> dict[str, Any]:
    from lm_eval import evaluator

    task = task_lib.build_task(name, data_dir, shots, samples) if name in task_lib.local_tasks() else name
    output_type = task.OUTPUT_TYPE if not isinstance(task, str) else None
    reason = model.adapter.unsupported(output_type, name) if output_type else None
    if reason:
        return {"n/a": reason}
    _check_shots(task, name, shots)
    if isinstance(task, str):
        task = _harness_task(name, shots, samples)
    model.progress_label, model.shots = name, shots
    out = evaluator.simple_evaluate(model=model, tasks=[task], limit=limit, bootstrap_iters=0,
                                    log_samples=write_prompts, verbosity="ERROR",
                                    task_manager=task_lib.light_task_manager())
    return without_unsupported_metrics(task_record(out, name, write_prompts), model.adapter)


def _harness_task(name: str, shots: int, samples: int = 1) -> Any:
    from lm_eval.tasks import TaskManager, get_task_dict

    task = get_task_dict([name], TaskManager())[name]
    task.set_config(key="num_fewshot", value=shots)
    if samples > 1 and task.OUTPUT_TYPE == "generate_until":
        task.set_config(key="repeats", value=samples)
    return task


def _check_shots(task: Any, name: str, shots: int) -> None:
    if not shots or isinstance(task, str):
        return
    available = len(task.fewshot_docs() or [])
    if available <= shots:
        raise ConfigError(f"--shots={shots} but task {name} has only {available} documents to draw "
                          "examples from: use fewer shots")


def task_record(out: dict[str, Any], name: str, with_prompts: bool = False) -> dict[str, Any]:
    """One task's part of simple_evaluate's output: metrics without the filter suffix when the
    task has no filters ("acc,none" -> "acc"), else with the filter's name ("exact_match,vote"
    -> "exact_match/vote"); standard errors dropped (bootstrap is off); example counts, config.
    A generation task's prompts hold every path and the answer extracted from each."""
    raw = out["results"][name]
    metrics = {_metric_name(key): _number(value) for key, value in raw.items()
               if "," in key and "_stderr" not in key}
    config = out["configs"][name]
    record = {"metrics": metrics, "examples": out.get("n-samples", {}).get(name, {}),
              "config": json.loads(json.dumps(config, default=str))}
    if with_prompts:
        logged = out.get("samples", {}).get(name, [])
        record["prompts"] = (sampled_paths(logged, config) if config.get("output_type") == "generate_until"
                             else [{"doc_id": sample["doc_id"], "arguments": sample["arguments"]}
                                   for sample in logged])
    return record


def _metric_name(key: str) -> str:
    metric, _, filter_name = key.partition(",")
    return metric if filter_name == "none" else f"{metric}/{filter_name}"


def without_unsupported_metrics(record: dict[str, Any], adapter: Any) -> dict[str, Any]:
    """A metric that means nothing for the model (BERT's "perplexity" of a pseudo-log-likelihood)
    becomes n/a with its reason under "metrics n/a"; its number stays as `pseudo_<metric>`, so
    no table prints it beside real perplexities."""
    reasons = {}
    for metric in list(record["metrics"]):
        reason = adapter.unsupported_metric(metric)
        if reason:
            reasons[metric] = reason
            record["metrics"][f"pseudo_{metric}"] = record["metrics"].pop(metric)
    if reasons:
        record["metrics n/a"] = reasons
    return record


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value

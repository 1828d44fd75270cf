"""The evaluation tasks lmjax ships: harness YAML files under `lmjax/eval/tasks/` that read
local files, and the names the CLI accepts for them.

`task_config(name, data_dir)` loads a YAML with the harness's own loader (`!function`
resolved) and puts `data_dir` into its metadata, where the `custom_dataset` loaders read it;
`build_task` makes the harness task. Names that are not ours are the harness's own tasks
(`lm_eval --tasks list`), which need their data where the harness looks for it; the harness
names of tasks we ship (`HARNESS_EQUIVALENTS`) run as ours, since the harness would try the
Hugging Face Hub for them and, offline, hang for minutes before a traceback.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any

from lmjax.errors import ConfigError, DataError

TASK_DIR = pathlib.Path(__file__).parent / "tasks"
SUPERGLUE = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
GROUPS = {"superglue": SUPERGLUE, "cbt": ("cbt-cn", "cbt-ne")}
# Tasks lmjax computes itself beside the harness (see lmjax.eval.lambada_token).
LMJAX_TASKS = ("lambada_final_token",)
# The harness's own name -> the shipped task that computes the same metrics from local files.
HARNESS_EQUIVALENTS = {"lambada_openai": "lambada", "wikitext": "wikitext2"}
DATA_FILE_LINE = re.compile(r"^\s+file:\s*(\S+)\s*$", re.MULTILINE)


def local_tasks() -> dict[str, pathlib.Path]:
    """Task name -> YAML file, for every task shipped in the package."""
    return {path.stem: path for path in sorted(TASK_DIR.rglob("*.yaml"))}


def known_names() -> list[str]:
    return sorted([*local_tasks(), *GROUPS, *LMJAX_TASKS])


def expand(names: list[str] | str, harness_names: set[str] | None = None) -> list[str]:
    """Task names with groups expanded, in order, duplicates dropped; an unknown name is a
    one-line error listing the known ones."""
    if isinstance(names, str):
        names = [name for name in names.split(",") if name.strip()]
    ours, expanded = local_tasks(), []
    for name in (name.strip() for name in names):
        members = GROUPS.get(name, (name,))
        for member in (HARNESS_EQUIVALENTS.get(member, member) for member in members):
            if member not in ours and member not in LMJAX_TASKS and member not in (harness_names or ()):
                raise ConfigError(f"unknown task {member!r}: known tasks are {', '.join(known_names())} "
                                  "(or any lm_eval task name when its data is available)")
            if member not in expanded:
                expanded.append(member)
    if not expanded:
        raise ConfigError(f"no tasks given: choose from {', '.join(known_names())}")
    return expanded


def harness_task_names(names: list[str] | str) -> set[str]:
    """The harness's own task names, indexed only when a name is not one of ours (~20 s)."""
    names = names.split(",") if isinstance(names, str) else names
    ours = {*local_tasks(), *GROUPS, *LMJAX_TASKS, *HARNESS_EQUIVALENTS}
    if all(name.strip() in ours for name in names if name.strip()):
        return set()
    from lm_eval.tasks import TaskManager

    return set(TaskManager().all_tasks)


def check_harness_equivalents(names: set[str], data_dir: str) -> dict[str, str]:
    """The harness names among `names` that run as shipped tasks (name -> ours), each checked
    for its local file now: a one-line error instead of the harness's Hub download."""
    renamed = {name: HARNESS_EQUIVALENTS[name] for name in names if name in HARNESS_EQUIVALENTS}
    for name, ours in renamed.items():
        path = data_path(ours, data_dir)
        if not path.is_file():
            raise DataError(f"task {name} runs as lmjax's local task {ours}, which reads {path}: that file "
                            "does not exist, so put it there or pass another --data-dir (lmjax does not "
                            "download the harness's Hub copy)")
    return renamed


def missing_files(names: list[str] | str, data_dir: str) -> list[pathlib.Path]:
    """The local files the named tasks read that are not under `data_dir` (the harness's own
    tasks are not checked), so a run or a sweep stops before training, not at its first
    evaluation."""
    given = names if isinstance(names, list) else names.split(",")
    reads = {"lambada_final_token": "lambada"}  # the LMJAX_TASKS read a shipped task's file
    checked = [reads.get(name, name) for name in expand(names, harness_names=set(given))]
    paths = [data_path(name, data_dir) for name in checked if name in local_tasks()]
    return [path for path in paths if not path.is_file()]


def default_data_dir(data_dir: str | os.PathLike | None) -> str:
    """The given directory, else $LMJAX_DATA_DIR."""
    chosen = data_dir or os.environ.get("LMJAX_DATA_DIR", "")
    if not chosen:
        raise ConfigError("no data directory: pass --data-dir DIR (or set LMJAX_DATA_DIR)")
    return str(pathlib.Path(chosen).expanduser().resolve())


def task_config(name: str, data_dir: str) -> dict[str, Any]:
    """The task's harness config with `data_dir` in its metadata."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from lmjax.eval.generation import check_filters

    path = local_tasks()[name]
    config = load_yaml(path)
    check_filters(config, path)
    config["metadata"] = {**(config.get("metadata") or {}), "data_dir": data_dir}
    return config


def data_path(name: str, data_dir: str) -> pathlib.Path:
    """The local file a shipped task reads (its `dataset_kwargs.file`)."""
    return pathlib.Path(data_dir) / DATA_FILE_LINE.findall(local_tasks()[name].read_text(encoding="utf-8"))[0]


def build_task(name: str, data_dir: str, shots: int, samples: int = 1) -> Any:
    """A harness task object for one of our tasks, `shots` examples in each prompt and, for a
    generation task, `samples` paths per prompt (self-consistency)."""
    from lm_eval.api.task import ConfigurableTask

    from lmjax.eval.generation import with_samples

    config = with_samples(task_config(name, data_dir), samples)
    config["num_fewshot"] = shots
    return ConfigurableTask(config=config)


def light_task_manager() -> Any:
    """A harness TaskManager over our task directory only: indexing the harness's thousands of
    task files takes ~20 s, which `simple_evaluate` would otherwise pay on every call."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False, include_path=str(TASK_DIR))

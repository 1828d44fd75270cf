"""The sweep file format: `experiments/NAME.yaml` -> `SweepSpec` -> a list of `Point`s.

```yaml
name: gpt_width            # default: the file's stem
base: gpt_tiny             # a named config, a YAML path, or a model preset (e.g. gpt3-small)
output_dir: sweeps/gpt_width   # default: sweeps/<name>
overrides:                 # applied to every point (a mapping, or Hydra-style "key=value" strings)
  train.steps: 200
grid:                      # cartesian product (a list, or W&B-style {values: [...]})
  model.d_model: [64, 128]
zip:                       # lists varied together (one mapping, or a list of mappings)
  model.n_layers: [2, 4]
  model.n_heads: [2, 4]
derived:                   # arithmetic over keys and variables, in order (lmjax.sweep.expressions)
  train.warmup_steps: train.steps // 10
eval_tasks: [lambada]      # each point's train.eval_tasks (lmjax.eval harness tasks)
resources: {cpus: 1, gpus: 0, tpus: 0}   # what one point asks of a Ray cluster
target: {...}              # optional: a described accelerator mesh for the dry-run (lmjax.sweep.plan)
```

Keys with a dot are config keys (checked against `lmjax.config.Config`); keys without one are
sweep variables: they vary and name points, and expressions read them, but no config has them.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pathlib
import re
from typing import Any

import yaml

from lmjax import config as config_lib
from lmjax.config import Config
from lmjax.errors import ConfigError
from lmjax.sweep import branches, derived_order, expressions, identity, isoflop, strict_yaml
from lmjax.sweep.dotted_keys import flatten

TOP_LEVEL = ("name", "description", "base", "output_dir", "overrides", "grid", "zip", "derived",
             "eval_tasks", "resources", "target", "branches", "isoflop")
RESERVED = ("name", "run_dir")  # set by the sweep for every point


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file; `points()` expands it."""

    name: str
    path: str
    base: str
    output_dir: str
    overrides: dict[str, Any]
    grid: dict[str, list[Any]]
    zips: list[dict[str, list[Any]]]
    derived: dict[str, str]
    eval_tasks: list[Any]
    resources: dict[str, Any]
    target: dict[str, Any] | None
    description: str = ""
    branches: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # lmjax.sweep.branches
    isoflop: dict[str, Any] | None = None  # lmjax.sweep.isoflop


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: its readable name, identity hash, values and resolved config."""

    name: str
    hash: str
    values: dict[str, Any]  # the varied values (grid and zip), variables included
    overrides: dict[str, Any]  # every config key the sweep sets (common, varied, derived)
    variables: dict[str, Any]  # sweep variables, given and derived
    config: Config
    eval_tasks: list[Any]
    branch: dict[str, Any] | None = None  # a cooldown branch: {"parent": dir_name, "step": S}

    @property
    def dir_name(self) -> str:
        return f"{self.name}-{self.hash}"


def load_spec(path: str | os.PathLike, output_dir: str | None = None) -> SweepSpec:
    """Reads and checks a sweep file's structure (keys, lists, expressions' syntax)."""
    file = pathlib.Path(path)
    raw = _read(file)
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"sweep {file}: unknown key {unknown[0]!r}: the keys are {', '.join(TOP_LEVEL)}")
    name = str(raw.get("name") or file.stem)
    if "base" not in raw:
        raise ConfigError(f"sweep {file}: no 'base': name a config (e.g. gpt_tiny), a YAML path or a preset")
    spec = SweepSpec(
        name=name, path=str(file), base=str(raw["base"]),
        output_dir=str(output_dir or raw.get("output_dir") or os.path.join("sweeps", name)),
        overrides=_overrides(file, raw.get("overrides") or {}),
        grid=_lists(file, "grid", raw.get("grid") or {}),
        zips=_zips(file, raw.get("zip") or []),
        derived=_derived(file, raw.get("derived") or {}),
        eval_tasks=list(raw.get("eval_tasks") or []),
        resources=dict(raw.get("resources") or {}),
        target=dict(raw["target"]) if raw.get("target") else None,
        description=str(raw.get("description") or ""),
        branches=branches.parse(file, raw["branches"]) if raw.get("branches") else [],
        isoflop=isoflop.parse(file, raw["isoflop"], yaml_number) if raw.get("isoflop") else None,
    )
    _check_keys(spec)
    return spec


def _read(file: pathlib.Path) -> dict[str, Any]:
    if not file.is_file():
        raise ConfigError(f"sweep file {file} does not exist: give a path such as experiments/NAME.yaml")
    try:
        raw = strict_yaml.load(file.read_text(encoding="utf-8"))
    except strict_yaml.DuplicateKeyError as err:
        raise ConfigError(f"sweep {file}: {err}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"sweep {file} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep {file} must be a mapping with base, grid, zip, derived, ...")
    return raw


def _overrides(file, values) -> dict[str, Any]:
    """A mapping, or Hydra-style `key=value` strings (values parsed as YAML)."""
    if isinstance(values, dict):
        return {str(k): yaml_number(v) for k, v in values.items()}
    if isinstance(values, list) and all(isinstance(v, str) and "=" in v for v in values):
        return {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in values)}
    raise ConfigError(f"sweep {file}: overrides must be a mapping or a list of key=value strings")


def _lists(file, section: str, values) -> dict[str, list[Any]]:
    if not isinstance(values, dict):
        raise ConfigError(f"sweep {file}: {section} must be a mapping of keys to lists of values")
    lists = {}
    for key, value in values.items():
        if isinstance(value, dict) and set(value) == {"values"}:
            value = value["values"]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"sweep {file}: {section}.{key} must be a non-empty list of values")
        lists[str(key)] = [yaml_number(item) for item in value]
    return lists


def yaml_number(value: Any) -> Any:
    """`1.0e11` as a float: YAML 1.1 (PyYAML) reads exponents without a sign as strings."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


def _zips(file, values) -> list[dict[str, list[Any]]]:
    groups = [values] if isinstance(values, dict) else values
    if not isinstance(groups, list):
        raise ConfigError(f"sweep {file}: zip must be a mapping of equally long lists, or a list of them")
    parsed = []
    for group in groups:
        lists = _lists(file, "zip", group)
        lengths = {key: len(value) for key, value in lists.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"sweep {file}: zip lists differ in length ({', '.join(f'{k}: {n}' for k, n in lengths.items())}): "
                              "give each key as many values")
        parsed.append(lists)
    return parsed


def _derived(file, values) -> dict[str, str]:
    if not isinstance(values, dict):
        raise ConfigError(f"sweep {file}: derived must be a mapping of keys to expressions")
    return {str(key): str(value) for key, value in values.items()}


def _check_keys(spec: SweepSpec) -> None:
    """Dotted keys must be config keys; a key is set in one place only."""
    seen: dict[str, str] = {}
    sections = [("overrides", spec.overrides), ("grid", spec.grid),
                *(("zip", group) for group in spec.zips), ("derived", spec.derived)]
    if spec.isoflop:
        sections.insert(1, ("isoflop", [isoflop.BUDGET, "train.steps", *spec.isoflop["sizes"]]))
    for section, keys in sections:
        for key in keys:
            if key in RESERVED:
                raise ConfigError(f"sweep {spec.path}: {section}.{key}: the sweep sets {key} for each point")
            if "." in key and config_field_type(key) is None:
                raise ConfigError(f"sweep {spec.path}: {section}.{key}: unknown config key "
                                  "(`lmjax train --config NAME --print-config` lists the keys)")
            if key in seen and not (section == "overrides" or seen[key] == "overrides"):
                raise ConfigError(f"sweep {spec.path}: {key} is set in both {seen[key]} and {section}")
            seen[key] = section


def config_field_type(key: str) -> str | None:
    """The annotated type of a dotted config key (e.g. 'int'), or None if there is no such key."""
    cls: Any = Config
    parts = key.split(".")
    for index, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if part not in fields:
            return None
        kind = fields[part].type
        if index == len(parts) - 1:
            return str(kind)
        cls = getattr(config_lib, str(kind), None)
    return None


def points(spec: SweepSpec) -> list[Point]:
    """Every point of the sweep in file order (grid axes, then zip groups; the last varies
    fastest, as in Hydra multirun), each config resolved and validated for its own values."""
    base = base_config(spec)
    axes = [[{key: value} for value in values] for key, values in spec.grid.items()]
    axes += [[dict(zip(group, row)) for row in zip(*group.values())] for group in spec.zips]
    if spec.isoflop:
        axes.append(isoflop.combos(spec.isoflop, lambda size: isoflop.total_parameters(
            _known_values(base, {**spec.overrides, **size}))))
    found = [_point(spec, base, _merge_dicts(combo)) for combo in itertools.product(*axes)]
    if spec.branches:
        found = branches.expand(spec, found, lambda parent, step, steps: _branch(spec, parent, step, steps))
    _check_unique(spec, found)
    if spec.isoflop and spec.isoflop["data_tokens"]:
        isoflop.check_epochs(spec.path, spec.isoflop, found, spec.isoflop["data_tokens"])
    return found


def _branch(spec: SweepSpec, parent: Point, step: int, steps: int) -> Point:
    """The cooldown branch of `parent` from its step `step` to `steps` (lmjax.sweep.branches)."""
    values = {**parent.values, branches.BRANCH_KEY: step}
    readable, branch = identity.readable_name(values), {"parent": parent.dir_name, "step": step}
    config = dataclasses.replace(parent.config, train=dataclasses.replace(parent.config.train, steps=steps),
                                 checkpoint=dataclasses.replace(parent.config.checkpoint, keep_steps=[]))
    digest = identity.config_hash(config, branch)
    run_dir = os.path.join(os.path.abspath(spec.output_dir), f"{readable}-{digest}")
    config = dataclasses.replace(config, name=f"{spec.name}-{readable}", run_dir=run_dir)
    return Point(readable, digest, values, {**parent.overrides, "train.steps": steps},
                 parent.variables, config, parent.eval_tasks, branch)


def _merge_dicts(dicts) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for item in dicts:
        merged.update(item)
    return merged


def base_config(spec: SweepSpec) -> Config:
    """The base alone: a named config, a YAML path, or a preset on the default config."""
    try:
        if spec.base in config_lib.presets() and spec.base not in config_lib.named_configs():
            return config_lib.from_dict(_preset_base(spec.name, spec.base))
        return config_lib.load_config(spec.base)
    except ConfigError as err:
        raise ConfigError(f"sweep {spec.path}: base {spec.base!r}: {err}") from None


def _preset_base(name: str, preset: str) -> dict[str, Any]:
    arch = config_lib.preset_values(preset).get("arch", "gpt")
    return {"name": name, "model": {"preset": preset}, "data": {"objective": config_lib.ARCH_OBJECTIVE[arch]}}


def _point(spec: SweepSpec, base: Config, values: dict[str, Any]) -> Point:
    readable = identity.readable_name(values) if values else "base"
    where = f"sweep {spec.path}: point {readable}"
    given = {**spec.overrides, **values}
    names = _known_values(base, given)
    if spec.isoflop:
        given["train.steps"] = names["train.steps"] = isoflop.point_steps(
            where, spec.isoflop, names, values[isoflop.BUDGET])
    for key in derived_order.evaluation_order(spec.derived, f"sweep {spec.path}"):
        expression = spec.derived[key]
        try:
            value = expressions.evaluate(expression, names)
        except ConfigError as err:
            raise ConfigError(f"sweep {spec.path}: derived.{key}: {err}") from None
        given[key] = names[key] = _typed(where, key, value)
    if spec.eval_tasks and "train.eval_tasks" not in given:
        given["train.eval_tasks"] = list(spec.eval_tasks)
    overrides = {k: v for k, v in given.items() if "." in k}
    variables = {k: v for k, v in given.items() if "." not in k}
    config = point_config(spec, overrides, where)
    digest = identity.config_hash(config)
    run_dir = os.path.join(os.path.abspath(spec.output_dir), f"{readable}-{digest}")
    config = dataclasses.replace(config, name=f"{spec.name}-{readable}", run_dir=run_dir)
    return Point(readable, digest, values, overrides, variables, config, list(config.train.eval_tasks))


def _known_values(base: Config, given: dict[str, Any]) -> dict[str, Any]:
    """What expressions may read: the base config's keys, a swept preset's model keys, then
    the sweep's own values (later wins)."""
    names = flatten(config_lib.to_dict(base))
    preset = given.get("model.preset")
    if preset:
        names.update({f"model.{k}": v for k, v in config_lib.preset_values(str(preset)).items()})
    names.update(given)
    return names


def _typed(where: str, key: str, value: int | float) -> int | float:
    """A derived value for an int config key must be whole (write // or round())."""
    kind = config_field_type(key) if "." in key else None
    if kind and "int" in kind and "float" not in kind:
        if float(value) != int(value):
            raise ConfigError(f"{where}: derived.{key} = {value} is not a whole number: use // or round()")
        return int(value)
    return value


def point_config(spec: SweepSpec, overrides: dict[str, Any], where: str) -> Config:
    """The base with the point's overrides, checked by `lmjax.config` (types, values)."""
    dotlist = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    try:
        if spec.base in config_lib.presets() and spec.base not in config_lib.named_configs():
            values = _preset_base(spec.name, spec.base)
            for key, value in overrides.items():
                _set_dotted(values, key, value)
            return config_lib.from_dict(values)
        return config_lib.load_config(spec.base, dotlist)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        values = values.setdefault(part, {})
    values[leaf] = value


def _check_unique(spec: SweepSpec, found: list[Point]) -> None:
    names: dict[str, Point] = {}
    for point in found:
        if point.dir_name in names:
            raise ConfigError(f"sweep {spec.path}: two points are both {point.dir_name}: make the "
                              "grid and zip values distinct")
        names[point.dir_name] = point

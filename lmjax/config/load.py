"""Loading configs: named YAML files and model presets (package data), merged by OmegaConf.

OmegaConf merges a named YAML file (the repository's `configs/`, shipped in the wheel as
`lmjax/configs/`), or any path, a model preset (`model.preset=NAME`, from `configs/presets/`)
and `key=value` overrides onto the dataclass defaults, rejecting unknown keys and wrong
types; `lmjax.config.validate` then checks the values. Everything runs before JAX compiles or
anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import pathlib
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lmjax.config.schema import Config, ModelConfig
from lmjax.config.validate import validate, validate_model
from lmjax.errors import ConfigError

CONFIGS = importlib.resources.files("lmjax") / "configs"  # the repository's configs/ (a link)
PRESETS = CONFIGS / "presets"


def named_configs() -> list[str]:
    return sorted(entry.name[:-5] for entry in CONFIGS.iterdir() if entry.name.endswith(".yaml"))


@functools.cache
def presets() -> dict[str, dict[str, Any]]:
    """Every model preset by name: the model keys of a published shape. Each file under
    `configs/presets/` holds one family as a mapping of preset names to model keys."""
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(PRESETS.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            found.update(yaml.safe_load(entry.read_text()) or {})
    return found


def preset_values(name: str) -> dict[str, Any]:
    """The model keys of preset `name`; a one-line error listing the known ones otherwise."""
    known = presets()
    if name not in known:
        raise ConfigError(f"unknown model.preset {name!r}: pick one of {', '.join(sorted(known))}")
    return {**known[name], "preset": name}


def preset_model(name: str) -> ModelConfig:
    """The ModelConfig of preset `name` alone (type-checked and validated), for counting and
    planning without a run config around it."""
    try:
        model = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(ModelConfig), preset_values(name))
        )
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    validate_model(model)
    return model


def load_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The named config (or a YAML path) with a preset and `key=value` overrides applied,
    validated for its own values (`validate(config, n_devices)` adds the mesh checks)."""
    path = _config_path(name_or_path)
    file_values = _read_yaml(path)
    try:
        override_values = OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    _check_overrides(overrides)
    if "name" not in file_values and OmegaConf.select(override_values, "name") is None:
        raise ConfigError(f"config {path} sets no name: add a line "
                          "`name: NAME` (its runs go to runs/NAME) or pass name=NAME")
    return _merge(file_values, override_values)


def from_dict(values: dict[str, Any]) -> Config:
    """A Config from plain data (a saved `config.yaml`), type-checked and validated."""
    return _merge(values, OmegaConf.create({}))


def _config_path(name_or_path: str) -> pathlib.Path | Any:
    path = pathlib.Path(name_or_path)
    named = CONFIGS / f"{name_or_path}.yaml"
    if not path.suffix and named.is_file():
        return named
    if path.is_file():
        return path
    raise ConfigError(
        f"no config '{name_or_path}': pick one of {', '.join(named_configs())} or give a YAML path"
    )


def _read_yaml(path) -> dict[str, Any]:
    """A config file's mapping; syntax errors, bad encodings and non-mappings in one line."""
    try:
        values = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {err.start}): save it as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config {path} is not valid YAML{where}: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"config {path} holds a {type(values).__name__} at the top level: it must be a "
            "mapping of sections (model:, data:, train:, ...)"
        )
    return values


def _check_overrides(overrides) -> None:
    for override in overrides:
        if "=" not in override:
            raise ConfigError(
                f"override {override!r} has no '=': write KEY=VALUE, e.g. train.steps=100"
            )


def _merge(file_values, override_values) -> Config:
    """Defaults < file < overrides, with the preset placed right below the layer naming it."""
    layers = [OmegaConf.structured(Config), file_values, override_values]
    try:
        from_overrides = OmegaConf.select(override_values, "model.preset")
        named = from_overrides or OmegaConf.select(OmegaConf.create(file_values), "model.preset")
        if named:
            layers.insert(2 if from_overrides else 1, {"model": preset_values(str(named))})
        config = OmegaConf.to_object(OmegaConf.merge(*layers))
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    validate(config)
    return config


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_yaml(config: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def _one_line(err: OmegaConfBaseException) -> str:
    """OmegaConf's multi-line message reduced to what was wrong and where."""
    message = str(err).splitlines()[0].strip()
    key = getattr(err, "full_key", None)
    if "not in struct" in message or "Key '" in message and "not" in message:
        return f"unknown config key '{key}': `lmjax train --config NAME --print-config` lists the keys"
    if "is not a ListConfig" in message:
        return f"{key} takes a list: write {key}=[{getattr(err, 'value', '')}] (several: [a,b])"
    if key:
        return f"bad value for config key '{key}': {message}"
    return message

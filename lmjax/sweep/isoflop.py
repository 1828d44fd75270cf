"""IsoFLOP designs generated from compute budgets, as Marin generates its IsoFLOP sweeps.

```yaml
isoflop:
  budgets: [1.0e12, 3.0e12, 1.0e13]   # training FLOPs C of each point (C = 6·N·D)
  sizes:                              # candidate model sizes: lists varied together, as in zip:
    model.d_model: [32, 64, 128]
    model.n_layers: [1, 2, 4]
  tokens_per_step: 512                # global_batch_size × seq_len: D = steps × tokens_per_step
  per_budget: 7                       # optional: the 7 sizes nearest the expected optimum
  tokens_per_parameter: 20            # the expected optimum N* = sqrt(C / (6·20)) (Hoffmann et al.)
  max_epochs: 4                       # refuse points that repeat their data more (Muennighoff et al. 2023)
  data_tokens: 2.0e7                  # optional: the training split's tokens (else measured)
```

Each point gets the sweep variable `budget` and `train.steps` = C / (6·N·tokens_per_step),
rounded half up, N the model's total parameters (`lmjax.scaling.param_counts`, the N of the
fits' C = 6·N·D); derived values may read both. Its epochs over the data are
steps·tokens_per_step / data_tokens; Muennighoff et al. (2023) found up to ~4 epochs nearly
as good as new data, so more is refused in one line naming the point.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from lmjax.errors import ConfigError

KEYS = ("budgets", "sizes", "tokens_per_step", "per_budget", "tokens_per_parameter", "max_epochs",
        "data_tokens")
DEFAULT_MAX_EPOCHS = 4.0  # Muennighoff et al. (2023), "Scaling Data-Constrained Language Models"
DEFAULT_TOKENS_PER_PARAMETER = 20.0  # Hoffmann et al. (2022)
BUDGET = "budget"


def parse(file, raw, number) -> dict[str, Any]:
    """The `isoflop:` block, checked; `number` reads YAML's unsigned exponents (1.0e12)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep {file}: isoflop must be a mapping with budgets, sizes and tokens_per_step")
    unknown = sorted(set(raw) - set(KEYS))
    missing = [key for key in ("budgets", "sizes", "tokens_per_step") if key not in raw]
    if unknown or missing:
        problem = f"unknown key {unknown[0]!r}" if unknown else f"no {missing[0]!r}"
        raise ConfigError(f"sweep {file}: isoflop: {problem}: the keys are {', '.join(KEYS)}")
    budgets = [number(b) for b in raw["budgets"]] if isinstance(raw["budgets"], list) else []
    if not budgets or not all(_positive(b) for b in budgets):
        raise ConfigError(f"sweep {file}: isoflop.budgets must list positive training FLOPs, e.g. [1.0e12, 3.0e12]")
    sizes = raw["sizes"]
    if not isinstance(sizes, dict) or not sizes or any(not isinstance(v, list) or not v for v in sizes.values()):
        raise ConfigError(f"sweep {file}: isoflop.sizes must map config keys to equally long lists")
    if len({len(v) for v in sizes.values()}) > 1:
        raise ConfigError(f"sweep {file}: isoflop.sizes lists differ in length: give each key as many values")
    block = {"budgets": budgets, "sizes": {str(k): [number(x) for x in v] for k, v in sizes.items()}}
    for key, default in (("tokens_per_step", None), ("per_budget", None),
                         ("tokens_per_parameter", DEFAULT_TOKENS_PER_PARAMETER),
                         ("max_epochs", DEFAULT_MAX_EPOCHS), ("data_tokens", None)):
        value = number(raw.get(key, default))
        if value is not None and not _positive(value):
            raise ConfigError(f"sweep {file}: isoflop.{key}={value!r} must be a positive number")
        block[key] = value
    return block


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def size_rows(block: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidate sizes as mappings of config keys to values."""
    return [dict(zip(block["sizes"], row)) for row in zip(*block["sizes"].values())]


def expected_optimum(budget: float, tokens_per_parameter: float) -> float:
    """N* with C = 6·N·D and D = tokens_per_parameter·N."""
    return math.sqrt(budget / (6.0 * tokens_per_parameter))


def combos(block: dict[str, Any], parameters) -> list[dict[str, Any]]:
    """For each budget, the values of its points ({"budget": C, size keys...}): every size, or
    the `per_budget` whose parameters (`parameters(size)`) lie nearest N*(C) in log N."""
    rows = size_rows(block)
    counts = [parameters(row) for row in rows]
    chosen = []
    for budget in block["budgets"]:
        order = range(len(rows))
        if block["per_budget"]:
            target = math.log(expected_optimum(budget, block["tokens_per_parameter"]))
            nearest = sorted(order, key=lambda i: (abs(math.log(counts[i]) - target), i))
            order = sorted(nearest[:int(block["per_budget"])])
        chosen += [{BUDGET: budget, **rows[i]} for i in order]
    return chosen


def steps_for(budget: float, parameters: int, tokens_per_step: float) -> int:
    """C / (6·N·tokens_per_step), rounded half up."""
    return math.floor(budget / (6.0 * parameters * tokens_per_step) + 0.5)


@functools.cache
def _parameters(model_json: str) -> int:
    from lmjax.config import ModelConfig
    from lmjax.scaling import param_counts

    return param_counts(ModelConfig(**json.loads(model_json))).total


def total_parameters(names: dict[str, Any]) -> int:
    """N of the model the flat keys `names` (model.d_model, ...) describe; cached, as the same
    sizes recur at every budget."""
    model = {key.removeprefix("model."): value for key, value in names.items()
             if key.startswith("model.") and key != "model.preset"}
    return _parameters(json.dumps(model, sort_keys=True, default=str))


def point_steps(where: str, block: dict[str, Any], names: dict[str, Any], budget: float) -> int:
    """A point's train.steps from its budget (`names`: its flat config keys); one-line errors
    for a tokens_per_step that is not the config's and a budget below one step of the model."""
    per_step = names["train.global_batch_size"] * names["data.seq_len"]
    if int(block["tokens_per_step"]) != per_step:
        raise ConfigError(f"{where}: isoflop.tokens_per_step={block['tokens_per_step']:g} but "
                          f"train.global_batch_size × data.seq_len = {per_step}: make them agree")
    steps = steps_for(budget, total_parameters(names), per_step)
    if steps < 1:
        raise ConfigError(f"{where}: budget {budget:g} FLOP is less than one step of this size: "
                          "raise the budget or drop the size")
    return steps


def epochs(block: dict[str, Any], steps: int, data_tokens: float) -> float:
    return steps * block["tokens_per_step"] / data_tokens


def check_epochs(spec_path: str, block: dict[str, Any], points, data_tokens: float) -> list[float]:
    """Each point's epochs over `data_tokens`; ConfigError naming the first above max_epochs."""
    found = [epochs(block, point.config.train.steps, data_tokens) for point in points]
    for point, value in zip(points, found):
        if value > block["max_epochs"]:
            raise ConfigError(
                f"sweep {spec_path}: point {point.name} sees its data {value:.2f} times "
                f"({point.config.train.steps} steps × {block['tokens_per_step']:g} tokens over "
                f"{data_tokens:.4g}), above isoflop.max_epochs={block['max_epochs']:g} (Muennighoff et "
                "al. 2023): use a larger corpus, a smaller budget or raise max_epochs")
    return found


def corpus_tokens(config) -> int:
    """Tokens of the training split of a point's corpus (tokenized once, then cached)."""
    from lmjax.data.pipeline import token_stream
    from lmjax.data.tokenizer import build_tokenizer

    return int(len(token_stream(config.data, build_tokenizer(config.data, config.model.vocab_size), "train")))


def checked_epochs(spec, points) -> list[float] | None:
    """Each point's epochs over its data (None without an isoflop block), refusing a point
    above max_epochs; the data's tokens from isoflop.data_tokens, else measured on the first
    point's corpus (a sweep's points share one)."""
    if not spec.isoflop:
        return None
    data_tokens = spec.isoflop["data_tokens"] or corpus_tokens(points[0].config)
    return check_epochs(spec.path, spec.isoflop, points, data_tokens)

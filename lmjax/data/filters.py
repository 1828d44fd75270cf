"""Row filters on a source's metadata columns or its text's computed quality signals:
`language_score >= 0.9`, `language == "cat"`, `doc.words >= 50` (see `signals`).

A filter is one comparison of a column with a constant, parsed once from the config so a
typo fails before any file is read; a row is kept when every filter of its source holds,
and a dropped row is counted against the first filter (in config order) that it fails.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import re
from collections.abc import Sequence
from typing import Any

from lmjax.data.signals import SIGNALS
from lmjax.errors import ConfigError, DataError

OPERATORS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
             ">": operator.gt, "<": operator.lt}
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")


@dataclasses.dataclass(frozen=True)
class Filter:
    """`column op value`; numbers compare as numbers, quoted or bare words as strings."""

    column: str
    op: str
    value: Any

    def __str__(self) -> str:
        return f"{self.column} {self.op} {json.dumps(self.value)}"

    def holds(self, row: dict[str, Any]) -> bool:
        """Whether the row passes; a missing (null) value never passes."""
        found = row.get(self.column)
        if found is None:
            return False
        try:
            return OPERATORS[self.op](found, self.value)
        except TypeError:
            raise DataError(
                f"filter '{self}' compares a {type(self.value).__name__} with the "
                f"{type(found).__name__} value {found!r} of column {self.column}; quote strings, "
                "leave numbers bare"
            ) from None


def parse_filter(text: str, where: str) -> Filter:
    """One filter from its config text; `where` names the config entry in the error."""
    match = _FILTER.match(text)
    if not match:
        raise ConfigError(
            f"{where}: cannot read filter {text!r}: write COLUMN OP VALUE with OP one of "
            f"{' '.join(OPERATORS)}, e.g. 'language_score >= 0.9' or 'language == \"cat\"'"
        )
    column, op, raw = match.groups()
    return Filter(column, op, _constant(raw))


def parse_filters(texts: Sequence[str], where: str) -> tuple[Filter, ...]:
    return tuple(parse_filter(text, where) for text in texts)


def check_columns(filters: Sequence[Filter], columns: Sequence[str], where: str) -> None:
    """Every filtered column exists in the file or is a computed signal, else a one-line
    error listing what does."""
    for item in filters:
        if item.column not in columns and item.column not in SIGNALS:
            raise DataError(
                f"filter '{item}' names column {item.column!r}, which {where} lacks; its columns "
                f"are {', '.join(columns)}, and the computed ones {', '.join(SIGNALS)}; fix the "
                "filter or drop it"
            )


def first_failing(filters: Sequence[Filter], row: dict[str, Any]) -> int | None:
    """Index of the first filter the row fails, None when it passes them all."""
    return next((index for index, item in enumerate(filters) if not item.holds(row)), None)


def computed_columns(filters: Sequence[Filter]) -> list[str]:
    """The signals the filters name, to compute from each row's text."""
    return sorted({item.column for item in filters if item.column in SIGNALS})


def _constant(raw: str) -> Any:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    if raw in ("true", "false"):
        return raw == "true"
    return raw

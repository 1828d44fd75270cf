"""YAML for sweep files that refuses a key given twice in one mapping.

PyYAML keeps the last of two equal keys without a word, so `train.lr` written twice (an edit
that forgot the first) silently changes what a sweep runs; a sweep file is an experiment's
record, so a repeated key is an error naming it and both lines.
"""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    """A mapping with the same key twice: `str()` is the one-line reason."""


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise DuplicateKeyError(f"line {line}: the key {key!r} is given twice (first on "
                                        f"line {seen[key]}): keep one")
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> Any:
    """`yaml.safe_load`, except that a mapping with a repeated key raises DuplicateKeyError."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)

"""A tokenizer's fingerprint: the key under which its token streams are cached.

Its own module because both the single-corpus pipeline and the sources' token cache key
by it, and the pipeline sits above the cache (`pipeline` -> `mixture` -> `cache`).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from lmjax.tokenizers import Tokenizer


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """Hash of the tokenizer's saved files: equal exactly when it encodes the same way."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(Path(tokenizer.save(tmp)).iterdir()):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]

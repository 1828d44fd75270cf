"""FineWeb-2-style shards made from the offline text in the data dir, so the sharded-corpus
pipeline can be tried, tested and benchmarked without a network (`lmjax data demo-shards`).

The columns are FineWeb-2's (text, id, dump, url, date, language, language_score,
minhash_cluster_size); every value but the text is made up from a fixed seed. Spanish is
UD Spanish-GSD then Don Quijote, Catalan UD Catalan-AnCora (sentence files: documents of
five sentences), English tiny-shakespeare (documents are blank-line separated speeches).
Spanish and English are written as parquet, Catalan as jsonl.zst.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lmjax.data.text import decode_corpus, split_documents
from lmjax.errors import DataError

LANGUAGES = {"es": ("spa", ["multilingual/es_gsd_devtest.txt", "multilingual/es_quijote_gutenberg2000.txt"]),
             "ca": ("cat", ["multilingual/ca_ancora_devtest.txt"]),
             "en": ("eng", ["tinyshakespeare/input.txt"])}
FORMATS = {"es": "parquet", "ca": "jsonl.zst", "en": "parquet"}
SENTENCES_PER_DOCUMENT = 5


def documents(data_dir: Path, lang: str, limit: int | None = None) -> list[str]:
    """The language's documents in file order, the first `limit` of them if given."""
    docs: list[str] = []
    for name in LANGUAGES[lang][1]:
        if not (data_dir / name).is_file():
            raise DataError(f"the demo shards are made from {data_dir / name}, which is missing: point "
                            "LMJAX_DATA_DIR (or data.data_dir) at the folder of offline corpora")
        text = decode_corpus((data_dir / name).read_bytes(), name, "replace")
        if name.endswith("devtest.txt"):
            lines = [line for line in text.splitlines() if line.strip()]
            docs += [" ".join(lines[i:i + SENTENCES_PER_DOCUMENT])
                     for i in range(0, len(lines), SENTENCES_PER_DOCUMENT)]
        else:
            docs += split_documents(text)
        if limit is not None and len(docs) >= limit:
            break
    return docs[:limit]


def rows(lang: str, texts: list[str], seed: int = 0) -> dict[str, list]:
    """FineWeb-2 columns; language_score in [0.5, 1) and cluster sizes in [1, 100) made up."""
    rng = np.random.default_rng([seed, len(lang), ord(lang[0])])
    n = len(texts)
    return {
        "text": texts,
        "id": [f"<urn:uuid:{lang}-{i:06d}>" for i in range(n)],
        "dump": ["CC-MAIN-2024-10"] * n,
        "url": [f"https://example.{lang}/doc/{i}" for i in range(n)],
        "date": ["2024-02-20T00:00:00Z"] * n,
        "language": [LANGUAGES[lang][0]] * n,
        "language_score": rng.uniform(0.5, 1.0, n).round(4).tolist(),
        "minhash_cluster_size": rng.integers(1, 100, n).tolist(),
    }


def split_columns(columns: dict[str, list], parts: int) -> list[dict[str, list]]:
    n = len(columns["text"])
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return [{k: v[a:b] for k, v in columns.items()} for a, b in zip(bounds, bounds[1:])]


def write_parquet(path: Path, columns: dict[str, list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=64)
    return path


def jsonl_bytes(columns: dict[str, list]) -> bytes:
    keys = list(columns)
    return b"".join(json.dumps(dict(zip(keys, values)), ensure_ascii=False).encode() + b"\n"
                    for values in zip(*columns.values()))


def write_jsonl(path: Path, columns: dict[str, list], codec: str | None = "zstd") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = jsonl_bytes(columns)
    if codec is None:
        path.write_bytes(data)
        return path
    with pa.CompressedOutputStream(str(path), codec) as out:
        out.write(data)
    return path


def write_corpus(root: Path, data_dir: Path, limit: int | None = None, parts: int = 2,
                 languages: tuple[str, ...] = tuple(LANGUAGES)) -> dict:
    """`root/<lang>/<i>.<format>`, `parts` shards per language; returns each one's columns."""
    made = {}
    for lang in languages:
        columns = rows(lang, documents(data_dir, lang, limit))
        for index, part in enumerate(split_columns(columns, parts)):
            path = root / lang / f"{index:03d}.{FORMATS[lang]}"
            write_parquet(path, part) if FORMATS[lang] == "parquet" else write_jsonl(path, part)
        made[lang] = columns
    return made

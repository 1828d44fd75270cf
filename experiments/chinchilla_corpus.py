"""The English corpus of experiments/chinchilla_cpu.yaml, built from the data dir's English
text into the (git-ignored) sweep directory: nothing third-party enters the repository.

Sources (LMJAX_DATA_DIR, ../shared/data/README.md): tiny-shakespeare, WikiText-2 validation,
the Children's Book Test's five books, PTB validation and the text8-style enwik8 slice;
LAMBADA is left out (it is an evaluation set). Documents are blank-line separated, as
`data.corpus` reads them; the files without paragraphs (CBT and PTB, one sentence a line; text8, one
line) are cut into documents of about 2,000 characters at word boundaries, and the sources are
interleaved, so the corpus' 90/10 train/validation split holds the last tenth of each.

    LMJAX_DATA_DIR=../shared/data python experiments/chinchilla_corpus.py
"""

from __future__ import annotations

import os
import pathlib
import re
import sys

SOURCES = ("tinyshakespeare/input.txt", "wikitext2/wiki.valid.tokens", "cbt/cbt_test.txt",
           "ptb/ptb.valid.txt", "text8/text8_derived_first_3010294_chars.txt")
CHUNKED = ("cbt/cbt_test.txt", "ptb/ptb.valid.txt", "text8/text8_derived_first_3010294_chars.txt")
OUTPUT = pathlib.Path("sweeps/chinchilla_cpu/english.txt")
DOCUMENT_CHARS = 2000


def chunks(text: str, size: int = DOCUMENT_CHARS) -> list[str]:
    """`text` as documents of about `size` characters, cut at spaces."""
    words, documents, current, length = text.split(), [], [], 0
    for word in words:
        current.append(word)
        length += len(word) + 1
        if length >= size:
            documents.append(" ".join(current))
            current, length = [], 0
    if current:
        documents.append(" ".join(current))
    return documents


def documents(data_dir: pathlib.Path, name: str) -> list[str]:
    text = (data_dir / name).read_text(encoding="utf-8")
    if name in CHUNKED:
        return chunks(text)
    return [doc.strip() for doc in re.split(r"\n\s*\n", text) if doc.strip()]


def interleaved(sources) -> list[str]:
    """Every source's documents in order, merged by their position within their source, so
    that the corpus' last 10% (its validation split) is the last 10% of each source."""
    keyed = [((index + 0.5) / len(docs), rank, doc) for rank, docs in enumerate(sources)
             for index, doc in enumerate(docs)]
    return [doc for _, _, doc in sorted(keyed)]


def main() -> int:
    data_dir = pathlib.Path(os.environ.get("LMJAX_DATA_DIR", "../shared/data"))
    found = {name: documents(data_dir, name) for name in SOURCES}
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(interleaved(found.values())) + "\n"
    OUTPUT.write_text(text, encoding="utf-8")
    for name, docs in found.items():
        print(f"{name}: {len(docs)} documents, {sum(map(len, docs)):,} characters")
    print(f"{OUTPUT}: {len(text):,} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())

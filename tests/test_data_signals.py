"""Computed quality signals: values counted by hand on small documents, the repetition
signals against their definition (Gopher, Rae et al. 2021, table A1: a line is a duplicate
when it equals an earlier one), filters on them keeping exactly the documents they should,
and the manifest counting what each filter removed."""

import json
import random

import pytest

from lmjax.config import load_config
from lmjax.data import build_tokenizer
from lmjax.data import cache as cache_lib
from lmjax.data import signals
from lmjax.data.sources import resolve_sources
from lmjax.errors import DataError

DOC = "Hello, world!\nThe cat sat.\nHello, world!\n\nno end here"


def test_signals_of_a_small_document_counted_by_hand():
    # 13 + 1 + 12 + 1 + 13 + 2 + 11 characters
    assert signals.chars(DOC) == 53
    # Hello, world! | The cat sat. | Hello, world! | no end here
    assert signals.words(DOC) == 10
    # Hello world The cat sat Hello world no end here: 5+5+3+3+3+5+5+2+3+4 = 38 letters
    assert signals.mean_word_length(DOC) == pytest.approx(3.8)
    # four non-blank lines, three end in ! or .
    assert signals.line_punct_ratio(DOC) == pytest.approx(0.75)
    # lines at runs of newlines: the third repeats the first
    assert signals.duplicate_line_fraction(DOC) == pytest.approx(0.25)
    assert signals.duplicate_line_char_fraction(DOC) == pytest.approx(13 / 53)


def test_punctuation_alone_is_no_word_and_empty_text_is_all_zero():
    assert signals.words("a -- b") == 3
    assert signals.mean_word_length("a -- b") == 1.0  # "--" left out, as datatrove's symbols
    assert signals.mean_word_length("«¡Hola!» dijo.") == pytest.approx((4 + 4) / 2)
    assert signals.line_punct_ratio("¿Qué?\nnada\n«Sí»\n") == pytest.approx(2 / 3)
    for name, function in signals.SIGNALS.items():
        assert function("") == 0, name


def test_duplicate_lines_against_the_definition():
    rng = random.Random(0)
    for _ in range(200):
        lines = [rng.choice(["a", "bb", "ccc", "dd d", "e."]) for _ in range(rng.randint(1, 12))]
        text = "\n".join(lines)
        # a line equal to an earlier one is a duplicate: all lines but the first of each kind
        repeats = len(lines) - len(set(lines))
        repeat_chars = sum(len(line) for line in lines) - sum(len(line) for line in set(lines))
        assert signals.duplicate_line_fraction(text) == pytest.approx(repeats / len(lines))
        assert signals.duplicate_line_char_fraction(text) == pytest.approx(repeat_chars / len(text))


def documents():
    rng = random.Random(1)
    vocabulary = ["el", "gato", "come", "pescado", "y", "duerme", "mucho", "bajo", "sol"]
    docs = []
    for index in range(120):
        lines = [" ".join(rng.choices(vocabulary, k=rng.randint(1, 6))) + rng.choice([".", "", "!"])
                 for _ in range(rng.randint(1, 5))]
        if index % 4 == 0:
            lines += lines[:2]  # repeated lines
        docs.append(f"{index}.\n" + "\n".join(lines))
    return docs


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    path = tmp_path_factory.mktemp("sig") / "s" / "a.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents()))
    return path


def config_for(tmp_path, shard, filters):
    quoted = ", ".join(f"'{item}'" for item in filters)
    return load_config("gpt_tiny", [f"data.sources=[{{files: '{shard}', filters: [{quoted}]}}]",
                                    f"data.cache_dir={tmp_path / 'cache'}", "data.prepare_workers=1",
                                    "data.validation_fraction=0.3"])


def test_filters_on_signals_keep_what_they_should_and_the_manifest_counts_each(tmp_path, shard):
    filters = ["doc.words >= 8", "doc.duplicate_line_fraction <= 0.3", "doc.line_punct_ratio >= 0.5"]
    config = config_for(tmp_path, shard, filters)
    (source,) = resolve_sources(config.data)
    docs = documents()

    def failing(text):  # the rules restated on plain Python, first failing rule wins
        lines = text.split("\n")
        nonblank = [line for line in lines if line.strip()]
        rules = [len(text.split()) >= 8, (len(lines) - len(set(lines))) / len(lines) <= 0.3,
                 sum(line[-1] in ".!" for line in nonblank) / len(nonblank) >= 0.5]
        return next((i for i, ok in enumerate(rules) if not ok), None)

    first = [failing(text) for text in docs]
    assert [t for path in source.files for t in source.documents(path)] == \
        [t for t, f in zip(docs, first) if f is None]
    expected = {filters[i]: first.count(i) for i in range(3)}
    assert all(0 < n < len(docs) for n in expected.values()), expected
    tokenizer = build_tokenizer(config.data, config.model.vocab_size)
    (cache,) = cache_lib.prepare_sources(config.data, [source], tokenizer, workers=1)
    shown = {str(item): n for item, n in zip(source.filters, expected.values())}
    assert cache.manifest["removed_by"] == shown
    assert cache.manifest["filtered_out"] == sum(expected.values())


def test_a_filter_on_an_unknown_signal_lists_the_computed_ones(tmp_path, shard):
    with pytest.raises(DataError, match=r"doc\.wordz.*computed ones doc\.chars, doc\.words"):
        resolve_sources(config_for(tmp_path, shard, ["doc.wordz >= 3"]).data)

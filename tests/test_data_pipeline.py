"""The grain pipeline: deterministic for a seed, resumable mid-epoch, lossless packing,
host slicing that leaves the global batch unchanged, and the run's tokenizer."""

import itertools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lmjax.config import load_config
from lmjax.data import build_tokenizer, make_batches, token_stream, unigram_entropy_nats
from lmjax.data.corpora import prepare_corpus
from lmjax.data.pipeline import Window
from lmjax.errors import ConfigError, DataError
from lmjax.objectives import make_objective

WORDS = "the a king queen speaks sings loudly softly to of my lord lady castle sword night".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Eighty made-up documents of one to four lines."""
    rng = np.random.default_rng(0)
    lines = lambda: " ".join(rng.choice(WORDS, rng.integers(3, 12))).capitalize() + "."  # noqa: E731
    documents = ["\n".join(lines() for _ in range(rng.integers(1, 5))) for _ in range(80)]
    path = tmp_path_factory.mktemp("corpus") / "made_up.txt"
    path.write_text("\n\n".join(documents) + "\n")
    return path


@pytest.fixture(scope="module")
def config(corpus, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return load_config("gpt_tiny", [f"data.corpus={corpus}", f"data.cache_dir={cache}", "data.seq_len=16"])


@pytest.fixture(scope="module")
def tokenizer(config):
    return build_tokenizer(config.data, config.model.vocab_size)


@pytest.fixture(scope="module")
def objective(tokenizer):
    return make_objective("causal_lm", pad_id=tokenizer.pad_id)


def take(iterator, n):
    return list(itertools.islice(iterator, n))


def assert_same_batches(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_batches_have_the_local_batch_shape(config, tokenizer, objective):
    batch = next(make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "train", process_count=2, process_index=1))
    assert {key: value.shape for key, value in batch.items()} == {key: (4, 16) for key in batch}
    assert batch["inputs"].dtype == np.int32 and batch["weights"].dtype == np.float32


def test_deterministic_for_a_seed(config, tokenizer, objective):
    runs = [take(make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "train", seed=seed), 12) for seed in (7, 7, 8)]
    assert_same_batches(runs[0], runs[1])
    assert not np.array_equal(runs[0][0]["inputs"], runs[2][0]["inputs"])


def test_every_epoch_sees_every_window_in_a_new_order(config, tokenizer, objective):
    stream = token_stream(config.data, tokenizer, "train")
    count = Window.for_objective(stream, objective, 16, tokenizer.pad_id).count
    batches = take(make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "train"), 2 * count // 8 + 1)
    examples = np.concatenate([batch["inputs"] for batch in batches])
    epochs = [examples[:count], examples[count : 2 * count]]
    rows = [sorted(map(tuple, epoch)) for epoch in epochs]
    assert rows[0] == rows[1]  # the same windows ...
    assert not np.array_equal(*epochs)  # ... in another order


@pytest.mark.smoke
def test_resumes_mid_epoch_from_json_state(config, tokenizer, objective):
    uninterrupted = take(make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "train"), 10)
    first = make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "train")
    take(first, 4)
    state = json.loads(json.dumps(first.get_state()))
    resumed = make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "train")
    resumed.set_state(state)
    assert_same_batches(take(resumed, 6), uninterrupted[4:])


@pytest.mark.parametrize("split", ["train", "validation"])
@pytest.mark.parametrize("process_count", [2, 4])
def test_hosts_slice_the_same_global_batch(config, tokenizer, objective, split, process_count):
    single = take(make_batches(config.data, config.train.global_batch_size, tokenizer, objective, split), 5)
    hosts = [
        take(make_batches(config.data, config.train.global_batch_size, tokenizer, objective, split, process_index=p, process_count=process_count), 5)
        for p in range(process_count)
    ]
    assert all(len(host) == len(single) for host in hosts)
    joined = [{key: np.concatenate([host[b][key] for host in hosts]) for key in batch} for b, batch in enumerate(single)]
    assert_same_batches(joined, single)


def test_packing_loses_no_token(config, tokenizer, objective):
    """Each document is followed by eos, and one validation pass predicts the whole stream."""
    records = prepare_corpus(config.data).documents("validation")
    expected = [tok for record in records for tok in [*tokenizer.encode(record["text"].decode()), tokenizer.eos_id]]
    stream = token_stream(config.data, tokenizer, "validation")
    np.testing.assert_array_equal(stream, expected)

    batches = list(make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "validation"))
    assert len({batch["inputs"].shape for batch in batches}) == 1
    inputs, targets, weights = (np.concatenate([b[k] for b in batches]) for k in ("inputs", "targets", "weights"))
    assert inputs[0, 0] == stream[0]
    np.testing.assert_array_equal(targets[weights > 0], stream[1:])
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])  # windows overlap by the one shared token
    assert weights.sum() == len(stream) - 1


def test_windows_overlap_by_one_and_pad_only_the_end():
    window = Window(np.arange(10), length=4, stride=3, pad_id=-1)
    assert window.count == 3
    assert [window.map(k).tolist() for k in range(window.count)] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert Window(np.arange(11), length=4, stride=3, pad_id=-1).map(3).tolist() == [9, 10, -1, -1]


def test_validation_is_one_deterministic_pass(config, tokenizer, objective):
    first, second = (list(make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "validation")) for _ in range(2))
    assert_same_batches(first, second)


def test_bad_sharding_and_seed(config, tokenizer, objective):
    with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
        make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "train", process_count=3)
    with pytest.raises(ConfigError, match="shuffle_seed"):
        make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "train", seed=-1)
    with pytest.raises(DataError, match="unknown split"):
        make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "test")


def test_worker_processes_give_the_same_batches(config, tokenizer, objective):
    with_workers = load_config("gpt_tiny", [f"data.corpus={config.data.corpus}", f"data.cache_dir={config.data.cache_dir}",
                                            "data.seq_len=16", "data.worker_count=1"])
    iterator = make_batches(with_workers.data, with_workers.train.global_batch_size, tokenizer, objective, "train")
    batches = [{key: np.asarray(value) for key, value in batch.items()} for batch in take(iterator, 3)]
    iterator.close()
    assert_same_batches(batches, take(make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "train"), 3))


def test_unigram_entropy_of_the_validation_tokens(config, tokenizer):
    counts = np.bincount(token_stream(config.data, tokenizer, "validation"))
    probs = counts[counts > 0] / counts.sum()
    entropy = unigram_entropy_nats(config.data, tokenizer)
    assert entropy == pytest.approx(-(probs * np.log(probs)).sum())
    assert 0 < entropy < np.log(tokenizer.vocab_size)


def test_tokenizer_is_trained_once_and_reused(config, tokenizer):
    again = build_tokenizer(config.data, config.model.vocab_size)
    assert again.model_proto == tokenizer.model_proto
    assert tokenizer.eos_id is not None and tokenizer.pad_id is not None
    assert tokenizer.vocab_size <= config.model.vocab_size


def test_tokenizer_dir_is_loaded_and_checked(config, tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tok")
    overrides = [f"data.corpus={config.data.corpus}", f"data.cache_dir={tmp_path / 'cache'}",
                 f"data.tokenizer_dir={tmp_path / 'tok'}"]
    loaded = build_tokenizer(load_config("gpt_tiny", overrides).data, config.model.vocab_size)
    assert loaded.model_proto == tokenizer.model_proto and not (tmp_path / "cache").exists()
    with pytest.raises(DataError, match="set model.vocab_size>="):
        build_tokenizer(load_config("gpt_tiny", overrides).data, vocab_size=8)


def test_two_processes_prepare_the_same_cache_at_once(corpus, tmp_path):
    script = textwrap.dedent(f"""
        from lmjax.config import load_config
        from lmjax.data import build_tokenizer, token_stream
        config = load_config("gpt_tiny", ["data.corpus={corpus}", "data.cache_dir={tmp_path}"])
        tokenizer = build_tokenizer(config.data, config.model.vocab_size)
        print(token_stream(config.data, tokenizer, "train").sum())
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate() for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs[0][1][-2000:] + outputs[1][1][-2000:]
    sums = [stdout.splitlines()[-1] for stdout, _ in outputs]
    assert sums[0] == sums[1]
    assert len(list((tmp_path / "tokenizers").glob("*/sentencepiece-256-*"))) == 1
    assert not list(tmp_path.glob("**/*.tmp-*"))  # no half-written leftovers


def test_tiny_shakespeare_end_to_end(data_dir, tmp_path):
    config = load_config("gpt_tiny", [f"data.data_dir={data_dir}", f"data.cache_dir={tmp_path}", "data.download=false",
                                      "model.vocab_size=128"])
    tokenizer = build_tokenizer(config.data, config.model.vocab_size)
    objective = make_objective("causal_lm", pad_id=tokenizer.pad_id)
    batch = next(make_batches(config.data, config.train.global_batch_size, tokenizer, objective, "train"))
    assert batch["inputs"].shape == (8, 32) and batch["weights"].all()
    stream = token_stream(config.data, tokenizer, "validation")
    assert (stream == tokenizer.eos_id).sum() == len(prepare_corpus(config.data).documents("validation"))
    assert tokenizer.decode(stream[:20]).startswith("KATHARINA")
    assert 0 < unigram_entropy_nats(config.data, tokenizer) < np.log(tokenizer.vocab_size)

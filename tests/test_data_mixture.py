"""Weighted mixtures: proportions measured from the batches' own tokens, determinism per seed,
exact resume mid-epoch from the iterator's state, hosts reading disjoint rows whose union is
the one-process batch, per-source accounting, and a training run that logs each source."""

import itertools
import json

import numpy as np
import pytest

from lmjax.config import load_config
from lmjax.data import demo_shards as data_shards
from lmjax.data import build_tokenizer, make_batches
from lmjax.data.mixture import MixtureSampler, block_counts, load_mixture
from lmjax.errors import DataError
from lmjax.objectives import objective_for

WEIGHTS = {"es": 2.0, "ca": 1.0, "en": 1.0}
BATCH = 8


def overrides(root, cache):
    entries = [f"{{name: es, files: '{root}/es/*.parquet', weight: 2}}",
               f"{{name: ca, files: '{root}/ca/*.jsonl.zst'}}",
               f"{{name: en, files: '{root}/en/*.parquet'}}"]
    return [f"data.sources=[{', '.join(entries)}]", f"data.cache_dir={cache}", "data.seq_len=16",
            "data.validation_fraction=0.2", "data.tokenizer_train_bytes=150000", "data.prepare_workers=1",
            f"train.global_batch_size={BATCH}"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("shards")
    data_shards.write_corpus(root, data_dir, limit=60)
    config = load_config("gpt_tiny", overrides(root, tmp_path_factory.mktemp("cache")))
    tokenizer = build_tokenizer(config.data, config.model.vocab_size)
    return config, tokenizer, objective_for(config, tokenizer), load_mixture(config.data, tokenizer)


def batches(setup, split="train", **kwargs):
    config, tokenizer, objective, mixture = setup
    return make_batches(config.data, BATCH, tokenizer, objective, split, mixture=mixture, **kwargs)


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_block_counts_by_largest_remainder():
    assert block_counts(np.array([2.0, 1.0, 1.0])).tolist() == [512, 256, 256]
    assert block_counts(np.array([1.0, 1.0, 1.0])).tolist() == [342, 341, 341]  # 1024/3 = 341.33
    assert block_counts(np.array([0.0, 3.0])).tolist() == [0, 1024]


def test_leftover_goes_to_the_largest_remainders_when_they_differ():
    # 1024 * (0.1, 0.25, 0.65) = 102.4, 256, 665.6: floors leave one example over, which
    # belongs to the .6 remainder, not the .4 nor the zero one.
    assert block_counts(np.array([0.1, 0.25, 0.65])).tolist() == [102, 256, 666]
    rng = np.random.default_rng(0)
    for _ in range(50):  # against the allocation closest to the shares, found by brute force
        weights = rng.uniform(0.01, 1.0, rng.integers(2, 6))
        share = weights / weights.sum() * 16
        floors = np.floor(share).astype(int)
        ups = [np.array(bits) for bits in itertools.product([0, 1], repeat=len(weights))
               if sum(bits) == 16 - floors.sum()]
        closest = min(ups, key=lambda bits: np.abs(floors + bits - share).sum())
        assert block_counts(weights, block=16).tolist() == (floors + closest).tolist()


def test_proportions_measured_from_the_tokens_are_the_weights(setup):
    *_, mixture = setup
    streams = {name: mixture.cache(name).tokens("train")[:].tobytes() for name in mixture.names}
    found = {name: 0 for name in streams}
    for batch in take(batches(setup), 60):
        for row in batch["inputs"]:
            (owner,) = [name for name, stream in streams.items() if row.astype(np.int32).tobytes() in stream]
            found[owner] += 1
    n = 60 * BATCH
    for name, weight in WEIGHTS.items():
        p = weight / sum(WEIGHTS.values())
        assert abs(found[name] / n - p) <= 4 * np.sqrt(p * (1 - p) / n), (name, found)


def test_same_seed_same_batches_other_seed_others(setup):
    first, again, other = (take(batches(setup, seed=seed), 3) for seed in (0, 0, 1))
    assert all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, again))
    assert not all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, other))


def test_resume_mid_epoch_gives_the_same_batches(setup):
    config, *_, mixture = setup
    epoch = min(mixture.cache(n).manifest["train"]["tokens"] for n in mixture.names) // (16 * BATCH)
    uninterrupted = take(batches(setup), epoch + 6)  # past the smallest source's first epoch
    killed = batches(setup)
    take(killed, epoch + 2)
    state = json.loads(json.dumps(killed.get_state()))  # as the checkpoint stores it
    restarted = batches(setup)
    restarted.set_state(state)
    for expected, got in zip(uninterrupted[epoch + 2:], take(restarted, 4)):
        assert all(np.array_equal(expected[k], got[k]) for k in expected)


def test_two_hosts_read_disjoint_rows_whose_union_is_the_batch(setup):
    single = take(batches(setup), 3)
    hosts = [take(batches(setup, process_index=p, process_count=2), 3) for p in range(2)]
    for whole, first, second in zip(single, *hosts):
        assert np.array_equal(np.concatenate([first["inputs"], second["inputs"]]), whole["inputs"])
        assert len(first["inputs"]) == len(second["inputs"]) == BATCH // 2


def test_examples_per_source_counts_what_the_sampler_picks():
    sampler = MixtureSampler(np.array([0.5, 0.3, 0.2]), seed=3, block=64)
    picks = [sampler.locate(i) for i in range(200)]
    for n in (0, 1, 63, 64, 130, 200):
        counted = np.bincount([source for source, _ in picks[:n]], minlength=3)
        assert sampler.examples_per_source(n).tolist() == counted.tolist()
    for source in range(3):  # each source's own example numbers run 0, 1, 2, ... without gaps
        numbers = [number for s, number in picks if s == source]
        assert numbers == list(range(len(numbers)))


def test_each_source_alone_evaluates_every_validation_token(setup):
    *_, mixture = setup
    for name in mixture.names:
        stream = mixture.cache(name).tokens("validation")
        weights = sum(batch["weights"].sum() for batch in batches(setup, "validation", source=name))
        assert weights == len(stream) - 1  # every token but the first is a target once


def test_a_source_without_validation_documents_fails_before_training(setup):
    config, tokenizer, *_ = setup
    config.data.validation_fraction = 0.0
    try:
        with pytest.raises(DataError, match="es has 0 validation documents.*raise data.validation_fraction"):
            load_mixture(config.data, tokenizer)
    finally:
        config.data.validation_fraction = 0.2


@pytest.mark.slow
def test_training_logs_each_source(setup, tmp_path):
    from lmjax.train.callbacks import MetricsFile
    from lmjax.train.loop import train
    from lmjax.train.reporting import read_metrics

    config, *_ = setup
    config.run_dir, config.train.steps, config.train.eval_every, config.train.log_every = str(tmp_path), 4, 4, 2
    config.train.eval_batches, config.train.warmup_steps = 1, 1
    train(config, defaults=False, callbacks=[MetricsFile()])
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [2, 4]
    for record in records:
        per_source = [record[f"tokens_seen/{name}"] for name in WEIGHTS]
        assert sum(per_source) == record["step"] * BATCH * 16 >= record["tokens_seen"]
    for name in WEIGHTS:
        assert records[-1][f"eval_loss/{name}"] > 0 and records[-1][f"eval_bits_per_byte/{name}"] > 0
        assert 0 < records[-1][f"epochs/{name}"] < 1

"""Input-pipeline throughput for sharded sources: prepare speed per worker count, and the share
of step time a `gpt_small_cpu_mix` step waits for its batch.

    python experiments/bench_data.py [--parts 8] [--steps 40] [--workers 1 2]

Prepare: FineWeb-2-style shards written from the data dir's Spanish, Catalan and English text
(`lmjax data demo-shards`), a SentencePiece tokenizer of the config's vocabulary trained once
(untimed), then the whole token cache built from nothing with 1, 2, ... worker processes;
MB/s counts the UTF-8 text of every document read, tokens/s the tokens written, both over
the wall time including the workers' start; MB per CPU-second (this process and its workers)
is the figure that does not depend on who else shares the cores. Input wait: the real training set-up, each step
timed as fetching the next batch (grain: windows, examples, host-to-device copy) plus the
jitted step run to completion; the loop itself overlaps the two (dispatch is asynchronous),
so the share reported is an upper bound. Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", type=int, default=8, help="shards per language")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps (0: prepare only)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    from lmjax.config import DataConfig, load_config, resolve_data_dir
    from lmjax.data import build_tokenizer
    from lmjax.data.demo_shards import write_corpus

    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        write_corpus(work / "fineweb_like", resolve_data_dir(DataConfig()), parts=args.parts)
        config = load_config("gpt_small_cpu_mix", [f"data.cache_dir={work / 'cache'}", f"run_dir={work / 'run'}",
                                                   *source_overrides(work)])
        tokenizer = build_tokenizer(config.data, config.model.vocab_size)
        for workers in args.workers:
            print(json.dumps(bench_prepare(config, tokenizer, workers, work / f"cache-{workers}")), flush=True)
        if args.steps:
            print(json.dumps(bench_input_wait(config, args.steps)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def source_overrides(work: Path) -> list[str]:
    """The named config's sources, with globs pointing at this run's shards."""
    from lmjax.config import load_config

    named = load_config("gpt_small_cpu_mix").data.sources
    moved = [{**entry, "files": str(work / entry["files"])} for entry in named]
    return [f"data.sources={json.dumps(moved)}"]


def bench_prepare(config, tokenizer, workers: int, cache: Path) -> dict:
    import dataclasses

    from lmjax.data.cache import prepare_sources
    from lmjax.data.sources import resolve_sources

    data = dataclasses.replace(config.data, cache_dir=str(cache))
    sources = resolve_sources(data)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    caches = prepare_sources(data, sources, tokenizer, workers=workers)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    text = sum(s["bytes"] for c in caches for s in c.manifest["shards"])
    tokens = sum(s["tokens"] for c in caches for s in c.manifest["shards"])
    return {"bench": "prepare", "workers": workers, "shards": sum(len(s.files) for s in sources),
            "text_mb": text / 1e6, "tokens": tokens, "seconds": seconds,
            "mb_per_s": text / 1e6 / seconds, "tokens_per_s": tokens / seconds, "cpu_seconds": cpu,
            "mb_per_cpu_s": text / 1e6 / cpu, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker pool is closed by then):
    on a shared machine, MB per CPU-second is what the cores would give unshared."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def bench_input_wait(config, steps: int) -> dict:
    import jax

    from lmjax import parallel
    from lmjax.train.setup import build_setup

    setup = build_setup(config)
    state, batches = setup.new_state(), setup.batches("train")
    waits, totals = [], []
    with parallel.activate(setup.mesh, setup.rules):
        for step in range(steps + 3):
            start = time.perf_counter()
            batch = parallel.global_batch(next(batches), setup.mesh)
            jax.block_until_ready(batch)
            fetched = time.perf_counter()
            state, metrics = setup.train_step(state, batch)
            jax.block_until_ready(metrics["loss"])
            if step >= 3:  # the first steps compile
                waits.append(fetched - start)
                totals.append(time.perf_counter() - start)
    return {"bench": "input_wait", "config": config.name, "steps": steps,
            "wait_ms": 1e3 * float(np.mean(waits)), "step_ms": 1e3 * float(np.mean(totals)),
            "wait_fraction": float(np.sum(waits) / np.sum(totals)), "device": str(jax.devices()[0].platform)}


if __name__ == "__main__":
    main()

"""`lmjax posttrain`: a stage writes an export the next stage and open_run read; bad input
fails in one line before any training."""

import json
import os
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from lmjax.cli import main
from lmjax.config import Config, ModelConfig
from lmjax.models import build_model
from lmjax.runs.config_file import save_config
from lmjax.runs.layout import RunLayout
from lmjax.runs.open import open_run
from lmjax.runs.params import save_params
from lmjax.runs.version import write_version

DATA = pathlib.Path(os.environ.get("LMJAX_DATA_DIR", "")) / "stories260K"
MODEL = ["--from", str(DATA / "stories260K.bin"), "--tokenizer", str(DATA / "tok512.model")]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def sft_file(tmp_path):
    return write_jsonl(tmp_path / "sft.jsonl", [
        {"prompt": "Write a story about a dog.", "response": "Once upon a time, there was a dog."},
        {"messages": [{"role": "user", "content": "Write a story about a cat."},
                      {"role": "assistant", "content": "The cat sat in the sun."}]},
    ])


@pytest.mark.slow
def test_sft_then_dpo_through_the_cli(tmp_path, capsys):
    sft_out, dpo_out = tmp_path / "sft", tmp_path / "dpo"
    assert main(["posttrain", "sft", *MODEL, "--data", sft_file(tmp_path), "--out", str(sft_out),
                 "--steps", "2", "--batch-size", "1", "--seq-len", "48", "--lora-rank", "2"]) == 0
    assert (sft_out / "lora" / "adapters.npz").exists()
    prefs = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "Write a story about a dog.",
                                                   "chosen": "The dog ran.", "rejected": "Tom sat."}])
    assert main(["posttrain", "dpo", "--from", str(sft_out), "--data", prefs, "--out", str(dpo_out),
                 "--steps", "2", "--batch-size", "1", "--seq-len", "48"]) == 0
    run = open_run(dpo_out)
    assert run.tokenizer is not None and len(run.metrics) == 1  # logged at the last step
    assert "DPO on 1 pairs" in capsys.readouterr().out


@pytest.mark.parametrize("row, message", [
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "chosen and rejected are identical"),
    ({"prompt": "p", "chosen": "a"}, "lacks 'rejected'"),
])
def test_bad_preference_file_fails_in_one_line(tmp_path, capsys, row, message):
    data = write_jsonl(tmp_path / "prefs.jsonl", [row])
    assert main(["posttrain", "dpo", *MODEL, "--data", data, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_lora_rank_above_layer_fails_before_training(tmp_path, capsys):
    assert main(["posttrain", "sft", *MODEL, "--data", sft_file(tmp_path), "--out", str(tmp_path / "out"),
                 "--lora-rank", "100"]) == 2
    assert "LoRA rank 100 exceeds layer" in capsys.readouterr().err


def test_reference_of_another_shape_is_refused(tmp_path, capsys):
    data = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    other = tmp_path / "other"
    small = ModelConfig(vocab_size=512, d_model=32, n_layers=1, n_heads=4, d_ff=64, max_len=128)
    params = nn.meta.unbox(build_model(small).init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))["params"])
    save_params(other, params)
    save_config(other, Config(name="other", model=small))
    write_version(RunLayout.at(other))
    assert main(["posttrain", "dpo", *MODEL, "--ref", str(other), "--data", data, "--out", str(tmp_path / "out")]) == 2
    assert "architecture differs from the policy's" in capsys.readouterr().err


@pytest.mark.parametrize("reads, keys", [("mean", ["b", "w_mean"]), ("last+mean", ["b", "w", "w_mean"])])
def test_rm_reads_picks_what_the_saved_head_reads(tmp_path, reads, keys):
    import numpy as np

    prefs = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "Write a story about a dog.",
                                                   "chosen": "The dog ran.", "rejected": "Tom sat."}])
    out = tmp_path / "rm"
    assert main(["posttrain", "rm", *MODEL, "--data", prefs, "--out", str(out), "--steps", "1",
                 "--batch-size", "1", "--seq-len", "32", "--reads", reads]) == 0
    with np.load(out / "reward_head.npz") as head:
        assert sorted(head.files) == keys

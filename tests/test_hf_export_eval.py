"""lm-eval's own transformers backend (HFLM) on a `lmjax convert to-hf` export against LmjaxLM
on the lmjax export it came from: the same loglikelihoods and the same task metrics.

The model is an lmjax GPT with random weights and GPT-2's real tokenizer (from the shared
data), so both sides also tokenize through different code: lmjax's BPE and transformers'.
"""

import math

import pytest
from hf_export_helpers import random_export, to_hf

from lmjax.config import ModelConfig
from lmjax.tokenizers import BPETokenizer

lm_eval = pytest.importorskip("lm_eval")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from lm_eval import evaluator  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from lmjax.eval import LmjaxLM  # noqa: E402
from lmjax.eval import tasks as task_lib  # noqa: E402
from lmjax.eval.api import task_record  # noqa: E402

GPT = ModelConfig(arch="gpt", vocab_size=50257, d_model=32, n_layers=2, n_heads=2, d_ff=128,
                  max_len=256)


@pytest.fixture(scope="module")
def models(tmp_path_factory, data_dir):
    directory = tmp_path_factory.mktemp("eval")
    tokenizer = BPETokenizer.from_gpt2_files(data_dir / "gpt2_bpe" / "encoder.json",
                                             data_dir / "gpt2_bpe" / "vocab.bpe")
    source = random_export(directory / "lmjax", GPT, tokenizer, seed=11, noise=0.2)
    export = to_hf(source, directory / "hf")
    ours = LmjaxLM(str(source), batch_size=4)
    theirs = HFLM(pretrained=str(export), batch_size=4, device="cpu", dtype="float32")
    return ours, theirs


def test_loglikelihoods_equal(models):
    ours, theirs = models
    pairs = [("The history of the", " world"), ("Once upon a time", ", there lived a king."),
             ("1 2 3", " 4 5 6"), ("Ünïcödé", " héllo")]
    requests = [Instance(request_type="loglikelihood", doc={}, idx=i, arguments=pair)
                for i, pair in enumerate(pairs)]
    mine = ours.loglikelihood(requests, disable_tqdm=True)
    reference = theirs.loglikelihood(requests, disable_tqdm=True)
    for (value, greedy), (expected, expected_greedy) in zip(mine, reference):
        assert value == pytest.approx(expected, abs=1e-4) and greedy == expected_greedy


@pytest.mark.parametrize("task_name,shots,limit", [("copa", 0, 10), ("lambada", 0, 16)])
def test_task_metrics_equal(models, data_dir, task_name, shots, limit):
    ours, theirs = models

    def metrics(model):
        task = task_lib.build_task(task_name, str(data_dir), shots)
        out = evaluator.simple_evaluate(model=model, tasks=[task], limit=limit, bootstrap_iters=0,
                                        verbosity="ERROR", task_manager=task_lib.light_task_manager())
        return task_record(out, task_name)

    mine, reference = metrics(ours), metrics(theirs)
    assert mine["examples"] == reference["examples"]
    assert set(mine["metrics"]) == set(reference["metrics"]) and mine["metrics"]
    for name, value in reference["metrics"].items():
        assert math.isfinite(value), name
        assert mine["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name

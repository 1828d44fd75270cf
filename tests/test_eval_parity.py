"""LmjaxLM against the harness's own transformers backend (HFLM) on the same random GPT-2.

The model is built here with transformers (random weights, GPT-2's real tokenizer from the
shared data), saved, and opened by lmjax through `open_run`; both backends run the same
harness task objects (local files) and must agree on every metric to 1e-4 relative.
"""

import math
import shutil

import pytest

lm_eval = pytest.importorskip("lm_eval")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from lm_eval import evaluator  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from lmjax.eval import LmjaxLM  # noqa: E402
from lmjax.eval import tasks as task_lib  # noqa: E402
from lmjax.eval.api import task_record  # noqa: E402

CONTEXT = 256


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, data_dir):
    """A random-weight GPT-2 (GPT-2's vocabulary, narrow and shallow) with its tokenizer."""
    directory = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=CONTEXT,
                                     initializer_range=0.2)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(directory)
    shutil.copy(data_dir / "gpt2_bpe" / "encoder.json", directory / "vocab.json")
    shutil.copy(data_dir / "gpt2_bpe" / "vocab.bpe", directory / "merges.txt")
    transformers.GPT2TokenizerFast.from_pretrained(directory).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def models(gpt2_dir):
    ours = LmjaxLM(str(gpt2_dir), batch_size=4)
    theirs = HFLM(pretrained=str(gpt2_dir), batch_size=4, device="cpu", dtype="float32")
    return ours, theirs


def metrics(model, task_name, data_dir, shots, limit):
    task = task_lib.build_task(task_name, str(data_dir), shots)
    out = evaluator.simple_evaluate(model=model, tasks=[task], limit=limit, bootstrap_iters=0,
                                    verbosity="ERROR", task_manager=task_lib.light_task_manager())
    return task_record(out, task_name)


@pytest.mark.parametrize("task_name,shots,limit", [
    ("wikitext2", 0, 1), ("lambada", 0, 16), ("copa", 0, 10), ("copa", 2, 10),
    ("wsc", 0, 10), ("wsc", 2, 10),
])
def test_lmjax_matches_the_harness_transformers_backend(models, data_dir, task_name, shots, limit):
    ours, theirs = models
    mine = metrics(ours, task_name, data_dir, shots, limit)
    reference = metrics(theirs, task_name, data_dir, shots, limit)
    assert mine["examples"] == reference["examples"]
    assert set(mine["metrics"]) == set(reference["metrics"]) and mine["metrics"]
    for name, value in reference["metrics"].items():
        assert math.isfinite(value), name
        assert mine["metrics"][name] == pytest.approx(value, rel=1e-4), name


def test_greedy_generation_matches_the_harness_transformers_backend(models):
    from lm_eval.api.instance import Instance

    ours, theirs = models
    prompts = ["The history of the", "Once upon a time, in a land far away, there lived", "1 2 3"]
    requests = [Instance(request_type="generate_until", doc={}, idx=0,
                         arguments=(prompt, {"until": ["\n\n"], "max_gen_toks": 8, "do_sample": False}))
                for prompt in prompts]
    generated = ours.generate_until(requests, disable_tqdm=True)
    assert all(generated) and generated == theirs.generate_until(requests, disable_tqdm=True)

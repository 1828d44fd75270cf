"""What the harness class claims about itself, checked against lm-eval and lmjax's layout."""

import inspect
import subprocess
import sys

import pytest

pytest.importorskip("lm_eval")

from lmjax.eval import harness  # noqa: E402


def test_the_docstring_does_not_promise_the_harness_command_line():
    """lm-eval 0.4 finds a model class only once its module is imported (no entry-point
    plugins), so `lm_eval --model lmjax` cannot work; the docstring must say so. If a later
    lm-eval finds `lmjax` without the import, this fails and the docstring can promise it."""
    found = subprocess.run([sys.executable, "-c", "from lm_eval.api.registry import get_model; "
                            "get_model('lmjax')"], capture_output=True, text=True)
    assert found.returncode != 0 and "lmjax" in found.stderr
    assert "cannot find it" in harness.__doc__ and "lmjax eval" in harness.__doc__


@pytest.mark.smoke
def test_the_harness_asks_the_run_layout_for_file_names():
    source = inspect.getsource(harness)
    assert '"config.yaml"' not in source and '"model.json"' not in source

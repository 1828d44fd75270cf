"""Test set-up: eight simulated CPU devices (set before JAX starts) and the shared data dir."""

import os
import pathlib
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One cache of prepared corpora and trained tokenizers per test session, shared by the
# subprocesses that tests start, so each corpus is prepared once.
os.environ.setdefault("LMJAX_CACHE_DIR", tempfile.mkdtemp(prefix="lmjax-test-cache-"))
# One persistent XLA compilation cache per test session, shared the same way: a run and its
# resume, a restarted run, or the same tiny config trained by several tests compile each
# program once (JAX reads this before it starts; compiles under a second are not stored).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="lmjax-test-xla-"))

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("LMJAX_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The read-only shared corpora, from LMJAX_DATA_DIR (or ../shared/data beside the repo)."""
    path = pathlib.Path(os.environ["LMJAX_DATA_DIR"])
    if not path.is_dir():
        pytest.fail(f"data dir {path} not found: set LMJAX_DATA_DIR to the shared corpora")
    return path

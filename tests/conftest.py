"""Test set-up: eight simulated CPU devices (set before JAX starts) and the shared data dir."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The read-only shared corpora, from LMJAX_DATA_DIR (or ../shared/data beside the repo)."""
    path = pathlib.Path(os.environ.get("LMJAX_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.fail(f"data dir {path} not found: set LMJAX_DATA_DIR to the shared corpora")
    return path

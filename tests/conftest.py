"""Shared fixtures: small corpora built on the fly, seeded, so every test is reproducible."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    # The default embedding cache (commands run by tests without --cache-dir, their subprocesses too) is one
    # folder per test session, not the user's ~/.cache: tests neither read a developer's entries nor leave theirs.
    if "MUSICLM_EVAL_CACHE" not in os.environ:
        import tempfile

        os.environ["MUSICLM_EVAL_CACHE"] = tempfile.mkdtemp(prefix="musiclm-eval-test-cache-")
        config._musiclm_test_cache = os.environ["MUSICLM_EVAL_CACHE"]
    # One intra-op thread: the suite runs beside browser/server subprocesses on 2 cores, where torch's
    # spinning worker threads were measured 16–40× slower than a single thread.
    import torch

    torch.set_num_threads(1)
    # tests import TensorFlow themselves (SavedModel fixtures); torchvision or torch._dynamo imported after it
    # segfaults, so they go first, for every test file alone or together (metrics.embedders.tfhub)
    from metrics.embedders.tfhub import preload_torch_extensions

    preload_torch_extensions()

def pytest_unconfigure(config):
    folder = getattr(config, "_musiclm_test_cache", None)
    if folder:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on the shared 2-core machine two threads per process oversubscribe it.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repo; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """24 procedural clips × 4 s at 24 kHz with captions.csv and labels.csv (seed 1234)."""
    from musiclm_ref.data.synth import generate_corpus

    out = tmp_path_factory.mktemp("corpus")
    generate_corpus(out, n=24, seconds=4.0, seed=1234, sample_rate=24000)
    return out


@pytest.fixture(scope="session")
def pg_server_url():
    """A PostgreSQL server for the session: $MUSICLM_EVAL_PG_URL, or a throwaway one started here (tests/pg_server.py).

    Skips only when no server binaries are installed; one that is installed but fails to start is an error.
    """
    pytest.importorskip("psycopg", reason="psycopg (the 'postgres' extra) is not installed")
    from pg_server import session_server

    yield from session_server(pytest.skip)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)

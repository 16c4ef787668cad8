"""What must keep holding with verified cache entries: a ``compare`` SIGKILLed part-way and rerun on the same
cache gives exactly the numbers of an uninterrupted run, and two runs sharing one cache at the same time
both give them. Real processes (``python -m benchmarks.cli``), real kills."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kill_util import kill_when, numbers, run_ok

from metrics.audio import load_dir, save_audio
from metrics.cache import EmbeddingCache

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(small_corpus, tmp_path_factory):
    from musiclm_ref.data.degrade import degrade

    root = tmp_path_factory.mktemp("resume")
    for c in load_dir(small_corpus).clips:
        save_audio(root / "light" / f"{c.id}.wav", degrade(c.wave, c.sr, "noise", 0.3, seed=2), c.sr)
    return small_corpus, root


def command(small_corpus, root, out, cache) -> list[str]:
    return [sys.executable, "-m", "benchmarks.cli", "compare", "--system", f"light={root / 'light'}",
            "--reference", str(small_corpus), "--captions", str(small_corpus / "captions.csv"), "--out", str(out),
            "--embedders", "mel", "--kad", "--classifier", "none", "--joint", "none", "--bootstrap", "50",
            "--cache-dir", str(cache), "--batch-size", "1", "--no-progress"]


@pytest.fixture(scope="module")
def uninterrupted(setup, tmp_path_factory):
    small_corpus, root = setup
    out = tmp_path_factory.mktemp("plain")
    run_ok(command(small_corpus, root, out / "r", out / "cache"))
    return numbers(out / "r")


def test_killed_compare_rerun_on_the_same_cache_gives_the_uninterrupted_numbers(setup, uninterrupted, tmp_path):
    small_corpus, root = setup
    cache = tmp_path / "cache"
    cmd = command(small_corpus, root, tmp_path / "r", cache)
    kill_when(cmd, lambda: len(EmbeddingCache(cache)._entries()) >= 5)
    n_at_kill = len(EmbeddingCache(cache)._entries())
    assert 0 < n_at_kill < 48 and EmbeddingCache(cache).verify()["bad"] == []  # part-way; no entry half-written
    run_ok(cmd)
    assert numbers(tmp_path / "r") == uninterrupted


def test_two_runs_sharing_one_cache_both_give_the_numbers(setup, uninterrupted, tmp_path):
    small_corpus, root = setup
    procs = [subprocess.Popen(command(small_corpus, root, tmp_path / f"r{i}", tmp_path / "cache"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    assert numbers(tmp_path / "r0") == numbers(tmp_path / "r1") == uninterrupted
    assert EmbeddingCache(tmp_path / "cache").verify()["bad"] == []

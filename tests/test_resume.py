"""Long runs that survive a kill: ``score`` and ``stats`` SIGKILLed part-way and rerun on the same cache give
exactly the numbers of an uninterrupted run; the trainers killed after a periodic checkpoint and rerun end
with exactly the weights of an uninterrupted run. Real processes, real SIGKILLs (``kill_util``); ``compare``
is ``test_cache_resume``'s."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kill_util import kill_when, numbers, run_ok

from metrics.cache import EmbeddingCache

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "benchmarks.cli"]
N_CLIPS = 6


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Six 2 s reference clips and a noisy copy of each (paired by id), with captions."""
    from metrics.audio import load_dir, save_audio
    from musiclm_ref.data.degrade import degrade
    from musiclm_ref.data.synth import generate_corpus

    root = tmp_path_factory.mktemp("pair")
    generate_corpus(root / "ref", n=N_CLIPS, seconds=2.0, seed=1234, sample_rate=16000)
    for c in load_dir(root / "ref").clips:
        save_audio(root / "gen" / f"{c.id}.wav", degrade(c.wave, c.sr, "noise", 0.3, seed=2), c.sr)
    return root


def entries(cache) -> int:
    return len(EmbeddingCache(cache)._entries())


def in_process(cmd: list[str]) -> None:
    """The uninterrupted run: the same command line, in this process (no second interpreter start-up)."""
    from click.testing import CliRunner

    from benchmarks.cli import main

    r = CliRunner().invoke(main, cmd[len(CLI):])
    assert r.exit_code == 0, r.output


def killed_then_rerun(cmd: list[str], cache, at: int, total: int) -> str:
    """Kill ``cmd`` once ``at`` cache entries exist, check it was part-way with no bad entry, run it again;
    returns the rerun's stderr."""
    kill_when(cmd, lambda: entries(cache) >= at)
    assert 0 < entries(cache) < total and EmbeddingCache(cache).verify()["bad"] == []
    return run_ok(cmd).stderr


def score_cmd(root, out, cache) -> list[str]:
    return [*CLI, "score", "--generated", str(root / "gen"), "--reference", str(root / "ref"), "--captions",
            str(root / "ref" / "captions.csv"), "--embedders", "mel", "--classifier", "none", "--joint", "none",
            "--bootstrap", "20", "--cache-dir", str(cache), "--batch-size", "1", "--no-progress", "--out", str(out)]


def test_killed_score_rerun_on_the_same_cache_gives_the_uninterrupted_numbers(pair, tmp_path):
    in_process(score_cmd(pair, tmp_path / "plain", tmp_path / "plain-cache"))
    cmd = score_cmd(pair, tmp_path / "r", tmp_path / "cache")
    err = killed_then_rerun(cmd, tmp_path / "cache", 2, 2 * N_CLIPS)
    assert "took over the lock of a run that is gone" in err  # the killed run's store lock
    assert numbers(tmp_path / "r") == numbers(tmp_path / "plain")


def stats_cmd(root, path, cache) -> list[str]:
    return [*CLI, "stats", "--audio", str(root / "ref"), "--stats", str(path), "--embedder", "mel",
            "--cache-dir", str(cache), "--batch-size", "1", "--no-progress"]


def test_killed_stats_rerun_on_the_same_cache_gives_the_uninterrupted_statistics(pair, tmp_path):
    in_process(stats_cmd(pair, tmp_path / "plain.npz", tmp_path / "plain-cache"))
    killed_then_rerun(stats_cmd(pair, tmp_path / "r.npz", tmp_path / "cache"), tmp_path / "cache", 2, N_CLIPS)
    with np.load(tmp_path / "plain.npz") as a, np.load(tmp_path / "r.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k


# --- trainers: killed after a periodic checkpoint, rerun from it -------------------------------------------

STAGE_CFG = dict(steps=8, batch=4, warmup=2, lr=3e-3, checkpoint_every=2)
TRAINER = textwrap.dedent("""
    import json, sys, time
    import torch
    sys.path.insert(0, sys.argv[1])
    torch.set_num_threads(1)
    path, pause, cfg = sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])
    from training_fixtures import micro_stage, random_corpus
    from musiclm_ref.train.stage import StageTrainConfig, fit_stage
    # a pause after each step leaves time to kill between checkpoints; the numbers do not change
    fit_stage(micro_stage("coarse", dropout=0.1), random_corpus(), StageTrainConfig(**cfg), path,
              progress=False, on_step=lambda s, v: time.sleep(pause))
""")


def trainer(path, pause: float) -> list[str]:
    """The stage trainer of ``test_training_loop`` (micro stage, dropout on) in its own process."""
    return [sys.executable, "-c", TRAINER, str(Path(__file__).parent), str(path), str(pause), json.dumps(STAGE_CFG)]


def replaced(path, times: int) -> Callable[[], bool]:
    """Whether ``path`` was written ``times`` times (each atomic write is a new inode): cheap to poll."""
    seen: set[int] = set()

    def ready() -> bool:
        with contextlib.suppress(FileNotFoundError):
            seen.add(os.stat(path).st_ino)
        return len(seen) >= times
    return ready


def same_weights(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_killed_stage_run_resumed_from_its_checkpoint_ends_with_the_uninterrupted_weights(tmp_path):
    import torch
    from training_fixtures import micro_stage, random_corpus

    from musiclm_ref.train.stage import StageTrainConfig, fit_stage

    fit_stage(micro_stage("coarse", dropout=0.1), random_corpus(), StageTrainConfig(**STAGE_CFG), tmp_path / "plain.pt",
              progress=False)
    path = tmp_path / "run.pt"
    kill_when(trainer(path, 0.3), replaced(path, 1))
    meta = torch.load(path, weights_only=False)["metadata"]
    assert meta["train_state"] is not None and 2 <= meta["step"] < STAGE_CFG["steps"]  # killed part-way
    run_ok(trainer(path, 0))
    plain, resumed = (torch.load(p, weights_only=False) for p in (tmp_path / "plain.pt", path))
    same_weights(plain["state_dict"], resumed["state_dict"])
    assert resumed["metadata"]["step"] == STAGE_CFG["steps"]


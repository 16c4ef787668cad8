"""A ``memorization audit`` SIGKILLed part-way and rerun on the same cache ends with exactly the uninterrupted
run's ``memorization.json`` and ``matches.csv``: every clip's features (tokens, mel windows; generated,
training, leave-one-out null and planted clips) go through the verified embedding cache. A real process,
a real kill; tiny 6 s clips so the three runs stay cheap."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from kill_util import kill_when

from benchmarks.cli import main
from metrics.audio import save_audio
from metrics.cache import EmbeddingCache
from musiclm_ref.data.render import render
from musiclm_ref.data.specs import sample_spec

SR = 16000
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Three 6 s training clips, two generated ones: a copy of a training clip and a novel clip."""
    root = tmp_path_factory.mktemp("memo_resume")
    train = {f"t{i}": render(sample_spec(31, i), 6.0, SR) for i in range(3)}
    for cid, w in train.items():
        save_audio(root / "train" / f"{cid}.wav", w, SR)
    save_audio(root / "gen" / "copy.wav", train["t1"], SR)
    save_audio(root / "gen" / "novel.wav", render(sample_spec(32, 0), 6.0, SR), SR)
    return root


def args(root, out, cache) -> list[str]:
    return ["memorization", "audit", "--generated", str(root / "gen"), "--train", str(root / "train"),
            "--window-s", "2", "--gen-hop-s", "2", "--train-hop-s", "0.2", "--phases", "2", "--detect", "1",
            "--max-null", "6", "--out", str(out), "--cache-dir", str(cache)]


def outputs(out) -> tuple[dict, str]:
    return json.loads((out / "memorization.json").read_text()), (out / "matches.csv").read_text()


def test_killed_audit_rerun_on_the_same_cache_gives_the_uninterrupted_outputs(dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICLM_EVAL_CACHE", str(tmp_path / "env_cache"))
    plain = CliRunner().invoke(main, [*args(dirs, tmp_path / "plain", tmp_path / "unused")[:-2], "--no-cache"])
    assert plain.exit_code == 0, plain.output
    assert not (tmp_path / "unused").exists() and not (tmp_path / "env_cache").exists()  # --no-cache: no entries
    cache, out = tmp_path / "cache", tmp_path / "resumed"
    kill_when([sys.executable, "-m", "benchmarks.cli", *args(dirs, out, cache)],
              lambda: len(EmbeddingCache(cache)._entries()) >= 3)
    before = {p: p.stat().st_mtime_ns for p in EmbeddingCache(cache)._entries()}
    assert EmbeddingCache(cache).verify()["bad"] == [] and not (out / "memorization.json").exists()
    rerun = CliRunner().invoke(main, args(dirs, out, cache))  # also takes over the killed run's store lock
    assert rerun.exit_code == 0, rerun.output
    after = {p: p.stat().st_mtime_ns for p in EmbeddingCache(cache)._entries()}
    assert 0 < len(before) < len(after)  # killed part-way
    assert all(after[p] == t for p, t in before.items())  # what was cached was read, not recomputed
    summary, matches = outputs(out)
    assert (summary, matches) == outputs(tmp_path / "plain")
    assert summary["best_cost"]["copy"] is not None  # the copy is found, so the equality compares real matches

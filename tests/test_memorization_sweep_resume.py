"""A ``memorization sweep`` SIGKILLed part-way and rerun on the same cache ends with exactly the uninterrupted
run's ``memorization.json``, ``matches.csv`` and results-store metrics, computing only the continuations the
killed run had not cached; a cached continuation whose bytes changed is recomputed, never used. A real
process, a real kill; 3 s clips, 4 prompt lengths and 25-token continuations keep the runs to seconds."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from kill_util import kill_when

from benchmarks.cli import main
from metrics.audio import save_audio
from metrics.cache import EmbeddingCache
from metrics.memorization.sweep import CONTINUATION_VERSION
from musiclm_ref.data.render import render
from musiclm_ref.data.specs import sample_spec

SR = 16000
N_CLIPS, LENGTHS = 4, (0, 10, 20, 30)
FULL = N_CLIPS * len(LENGTHS)  # continuations of one sweep
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_resume") / "train"
    for i in range(N_CLIPS):
        save_audio(root / f"t{i}.wav", render(sample_spec(31, i), 3.0, SR), SR)
    return root


def args(train, out, cache) -> list[str]:
    return ["memorization", "sweep", "--train", str(train), "--prompt-lengths", ",".join(map(str, LENGTHS)),
            "--n-new", "25", "--fpr", "0.1", "--out", str(out), "--json", str(out.parent / f"{out.name}.json"),
            "--cache-dir", str(cache)]


def outputs(out) -> tuple[dict, str, dict]:
    store = json.loads((out / "results.json").read_text())
    return (json.loads((out / "memorization.json").read_text()), (out / "matches.csv").read_text(),
            {s: e["metrics"] for s, e in store["systems"].items()})


def continuation_entries(cache) -> list:
    """The cache's continuation entries (the examples' token entries carry another code version)."""
    found = []
    for p in EmbeddingCache(cache)._entries():
        with np.load(p) as z:
            if CONTINUATION_VERSION in json.loads(str(z["meta"][()]))["code"]:
                found.append(p)
    return found


def run(argv, out) -> dict:
    r = CliRunner().invoke(main, argv)  # also takes over a killed run's store lock
    assert r.exit_code == 0, r.output
    return json.loads((out.parent / f"{out.name}.json").read_text())["cache"]


def test_killed_sweep_rerun_on_the_same_cache_gives_the_uninterrupted_outputs(train, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICLM_EVAL_CACHE", str(tmp_path / "env_cache"))
    plain_out = tmp_path / "plain"
    plain = CliRunner().invoke(main, [*args(train, plain_out, tmp_path / "unused")[:-2], "--no-cache"])
    assert plain.exit_code == 0, plain.output
    assert not (tmp_path / "unused").exists() and not (tmp_path / "env_cache").exists()  # --no-cache: no entries
    cache, out = tmp_path / "cache", tmp_path / "resumed"
    kill_when([sys.executable, "-m", "benchmarks.cli", *args(train, out, cache)],
              lambda: len(EmbeddingCache(cache)._entries()) >= 2 * N_CLIPS + 3)  # all examples' tokens, 3 continuations
    assert EmbeddingCache(cache).verify()["bad"] == [] and not (out / "memorization.json").exists()
    before = {p: p.stat().st_mtime_ns for p in continuation_entries(cache)}
    assert 0 < len(before) < FULL  # killed part-way through the continuations
    used = run(args(train, out, cache), out)
    assert used["continuations_cached"] == len(before) and used["continuations_computed"] == FULL - len(before)
    after = {p: p.stat().st_mtime_ns for p in continuation_entries(cache)}
    assert len(after) == FULL and all(after[p] == t for p, t in before.items())  # read, not recomputed
    summary = outputs(out)
    assert summary == outputs(plain_out)
    assert [r["prompt_tokens"] for r in summary[0]["rows"]] == list(LENGTHS) and summary[0]["rows"][0]["n"] == N_CLIPS

    # a continuation entry whose bytes changed is a miss: recomputed (the rerun's outputs unchanged), not read
    victim = sorted(after)[0]
    with np.load(victim) as z:
        good = z["array"].copy()
    raw = bytearray(victim.read_bytes())
    at = bytes(raw).index(good.tobytes())
    raw[at] ^= 0xFF
    victim.write_bytes(bytes(raw))
    again = tmp_path / "again"
    with pytest.warns(UserWarning, match="ignoring entry"):
        used = run(args(train, again, cache), again)
    assert used == {"root": str(cache), "continuations_cached": FULL - 1, "continuations_computed": 1}
    assert outputs(again) == outputs(plain_out)
    with np.load(victim) as z:
        assert np.array_equal(z["array"], good)  # rewritten with the recomputed continuation

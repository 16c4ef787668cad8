"""The audit on the clip shapes people have, not only the 20 s training clips the other tests use.

MusicCaps-shaped data (10 s generated, 10 s training clips) left the detection table no room to plant an
excerpt as long as a generated clip at an offset: every plant was skipped and the empty planted set crashed
the whole audit ("generated: empty set"), losing its result. Now the table plants what the data allow
(whole clips at sub-frame offsets when there is no room for an excerpt), says what it planted, and says why
when it is empty. One test per shape: 10 s / 10 s (through the CLI, default matchers), training clips
shorter than the generated ones, one training clip, very many short clips.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

from metrics.audio import save_audio  # noqa: E402
from metrics.memorization.alter import ALTERATIONS  # noqa: E402
from metrics.memorization.detection import plant_copies  # noqa: E402
from metrics.memorization.pipeline import audit_audio  # noqa: E402
from metrics.memorization.registry import MemorizationError  # noqa: E402
from musiclm_ref.data.render import render  # noqa: E402
from musiclm_ref.data.specs import sample_spec  # noqa: E402

SR = 16000
MEL = ("embedding:mel",)  # the cheap matcher for the library-level shapes; the CLI test runs the default ones
ALTS = {k: ALTERATIONS[k] for k in ("exact", "shift_offgrid", "gain_-6db", "tempo_+3%")}


def clips(seed: int, n: int, seconds: float, first: int = 0) -> dict[str, tuple[np.ndarray, int]]:
    return {f"s{seed}_{i:03d}": (render(sample_spec(seed, i), seconds, SR), SR) for i in range(first, first + n)}


def copy_found(res, gen_id: str, train_id: str, lag_s: float = 0.0, tol_s: float = 0.25) -> bool:
    return any(m["generated_id"] == gen_id and m["train_id"] == train_id
               and abs(m["train_offset_s"] - m["gen_offset_s"] - lag_s) <= tol_s for m in res.matches)


def test_plant_copies_falls_back_to_whole_clips_and_says_what_it_planted():
    train = clips(21, 2, 10.0)
    # room for excerpts: 10 s training clips, 5 s copies
    plants, truth, rep = plant_copies(train, 5.0, 2, alterations=ALTS, min_s=4.0)
    assert rep["modes"] == {"excerpt": 8} and rep["planted"] == len(plants) == 8 and rep["why_empty"] is None
    # the MusicCaps shape: copies as long as the training clips -> whole clips at the alteration's sub-frame offset
    plants, truth, rep = plant_copies(train, 10.0, 2, alterations=ALTS, min_s=5.0)
    assert rep["modes"] == {"whole clip": 8} and rep["requested"] == 8
    for pid, (alt, src, start) in truth.items():
        assert start == (0.02 if alt == "shift_offgrid" else 0.0)  # half a 25 Hz frame
        if alt == "exact":
            np.testing.assert_array_equal(plants[pid][0], train[src][0])
    assert rep["copy_s"][0] >= 9.7 and rep["copy_s"][1] == 10.0  # tempo +3 % is 1/1.03 as long
    # copies the matcher could not compare are skipped with the reason; nothing plantable says why
    plants, truth, rep = plant_copies(train, 10.0, 1, alterations=ALTS, min_s=9.9)
    assert rep["skipped"] == {"tempo_+3%: the altered copy is shorter than the matcher's 9.9 s window": 1}
    plants, truth, rep = plant_copies(train, 10.0, 1, alterations=ALTS, min_s=12.0)
    assert not plants and rep["planted"] == 0 and "no training clip is long enough" in rep["why_empty"]
    assert "10.00 s" in rep["why_empty"] and "12 s window" in rep["why_empty"]


@pytest.fixture(scope="module")
def musiccaps_dirs(tmp_path_factory):
    """10 s generated and training clips: two generated clips are exact copies of whole training clips."""
    root = tmp_path_factory.mktemp("mc")
    train, novel, null = clips(21, 3, 10.0), clips(99, 1, 10.0), clips(77, 5, 10.0)
    for name, group in (("train", train), ("null", null)):
        for cid, (w, sr) in group.items():
            save_audio(root / name / f"{cid}.wav", w, sr)
    ids = sorted(train)
    for i in (0, 1):
        save_audio(root / "gen" / f"copy_{i}.wav", train[ids[i]][0], SR)
    for cid, (w, sr) in novel.items():
        save_audio(root / "gen" / f"novel_{cid}.wav", w, sr)
    return root, ids


@pytest.mark.slow
def test_musiccaps_shape_cli_reports_exact_copies_and_fills_the_detection_table(musiccaps_dirs):
    """``memorization audit`` on 10 s / 10 s clips (it exited with "generated: empty set" before)."""
    from click.testing import CliRunner

    from benchmarks.cli import main

    root, ids = musiccaps_dirs
    out = root / "out"
    r = CliRunner().invoke(main, ["memorization", "audit", "--generated", str(root / "gen"), "--train", str(root / "train"),
                                  "--null", str(root / "null"), "--detect", "1", "--phases", "1", "--train-hop-s", "0.2",
                                  "--gen-hop-s", "2.5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert len(re.findall(r"detection table: 1[12]/12 copies planted \(1[12] whole clip\)", r.output)) == 2, r.output
    summary = json.loads((out / "memorization.json").read_text())
    assert set(summary["matchers"]) == {"semantic-ot", "embedding-mel"}
    for name, m in summary["matchers"].items():
        best = m["best_cost"]
        assert best["copy_0"] is not None and best["copy_1"] is not None, (name, best)  # both copies reported
        planted = summary["detection_planted"][name]
        assert planted["modes"] == {"whole clip": planted["planted"]} and planted["planted"] >= 11, planted
        table = summary["detection"][name]
        assert table["exact"] == {**table["exact"], "n": 1, "detected": 1}, table
    rows = (out / "matches.csv").read_text()
    for i in (0, 1):
        assert f"copy_{i},{ids[i]},0.0,0.0," in rows  # right training clip, lag 0
    assert (out / "results.json").is_file() and (out / "detection.png").is_file()


def test_training_clips_shorter_than_generated():
    """6 s training clips, 10 s generated: the copy is the whole training clip inside a longer generated clip."""
    train, null = clips(21, 3, 6.0), clips(77, 6, 10.0)
    ids = sorted(train)
    tail = render(sample_spec(99, 0), 4.0, SR)
    gen = {"copy": (np.concatenate([train[ids[1]][0], tail]), SR), **clips(99, 1, 10.0, first=1)}
    res = audit_audio(gen, train, MEL, null=null, detect=2, alterations=ALTS, phases=2)
    r = res.results["embedding-mel"]
    assert copy_found(r, "copy", ids[1]), r.matches
    planted = res.planted["embedding-mel"]
    assert planted["modes"] == {"whole clip": 8} and planted["target_s"] == 6.0
    assert res.detection["embedding-mel"]["exact"]["detected"] == 2
    assert res.summary()["detection_planted"] == res.planted
    # leave-one-out nulls would be 6 s excerpts for 10 s clips: said, not hidden
    with pytest.warns(UserWarning, match=r"shorter than the generated clips \(10 s, median\)"):
        audit_audio(gen, train, MEL, detect=0, phases=1)


def test_one_training_clip():
    """One training clip: plants come from it; leave-one-out calibration has nothing to compare with, so it is a
    clear error asking for null clips, never an infinite τ that reports every clip."""
    train, null = clips(21, 1, 12.0), clips(77, 6, 8.0)
    (tid,) = train
    gen = {"copy": (train[tid][0][SR : 9 * SR], SR), **clips(99, 2, 8.0)}
    res = audit_audio(gen, train, MEL, null=null, detect=2, alterations=ALTS, phases=2)
    r = res.results["embedding-mel"]
    assert copy_found(r, "copy", tid, lag_s=1.0)
    assert res.planted["embedding-mel"]["planted"] == 8 and res.detection["embedding-mel"]["exact"]["detected"] == 2
    with pytest.raises(MemorizationError, match=r"there is 1: give null clips .*--null DIR"):
        audit_audio(gen, train, MEL, detect=0)


def test_very_many_short_clips():
    """120 training clips of 3 s, shorter than the default 5 s window: a clear error naming the clip and the flag,
    not a silent change of what the audit compares; with a window that fits, the copy is found and the detection
    table plants whole 3 s clips (those the matcher can compare)."""
    train, null = clips(21, 120, 3.0), clips(77, 8, 3.0)
    ids = sorted(train)
    gen = {"copy": train[ids[57]], **clips(99, 3, 3.0)}
    with pytest.raises(MemorizationError, match=r"shorter than a window of 10 frames .*--window-s"):
        audit_audio(gen, train, MEL, null=null, detect=0, phases=1)
    res = audit_audio(gen, train, MEL, null=null, detect=2, alterations=ALTS, phases=1, window_s=2.5)
    r = res.results["embedding-mel"]
    assert r.extra["window_s"] == 2.5 and r.extra["n_train"] == 120
    assert copy_found(r, "copy", ids[57]) and r.best_cost["copy"] == pytest.approx(0.0, abs=1e-6)
    planted = res.planted["embedding-mel"]
    # at 2 mel frames/s half a frame is 0.25 s: the off-grid and tempo copies of a 3 s clip lose the window's last frame
    assert planted["modes"] == {"whole clip": 4} and planted["planted"] == 4
    assert planted["skipped"] == {f"{a}: the copy featurizes shorter than the matcher's window": 2
                                  for a in ("shift_offgrid", "tempo_+3%")}
    assert res.detection["embedding-mel"]["exact"]["detected"] == 2


def test_nothing_plantable_keeps_the_audit_and_says_why(tmp_path):
    """Detection copies that the matcher cannot compare leave the audit's own result intact (and written)."""
    from metrics.memorization.pipeline import audit_dirs

    train, null = clips(21, 3, 6.0), clips(77, 6, 6.0)
    for name, group in (("train", train), ("null", null), ("gen", {"copy": train[sorted(train)[0]]})):
        for cid, (w, sr) in group.items():
            save_audio(tmp_path / name / f"{cid}.wav", w, sr)
    alts = {"tempo_+3%": ALTERATIONS["tempo_+3%"]}  # 1/1.03 of a clip that is exactly one window long
    res = audit_dirs(tmp_path / "gen", tmp_path / "train", tmp_path / "out", MEL, null=tmp_path / "null", detect=2,
                     alterations=alts, phases=1, window_s=5.5)
    planted = res["detection_planted"]["embedding-mel"]
    assert planted["planted"] == 0 and planted["why_empty"], planted
    assert res["detection"]["embedding-mel"] == {} and res["best_cost"]["copy"] is not None
    written = json.loads((tmp_path / "out" / "memorization.json").read_text())
    assert written["detection_planted"]["embedding-mel"]["why_empty"] == planted["why_empty"]

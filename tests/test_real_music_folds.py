"""The cross-split real-music measurement (benchmarks/real_music_folds.py): the rotation puts every piece of
the installed soundtrack on the novel side exactly once and never on both sides of a fold; a fold's clips
have the shape they claim; the pooled figure adds the folds up. Skips only when ``wesnoth-1.16-music`` is
absent (the pooling test needs no audio)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

from benchmarks.real_music_folds import (  # noqa: E402
    CLIP_S,
    FOLD_COPIES,
    fold_clips,
    fold_split,
    pooled,
    usable_pieces,
)
from metrics.memorization import MemorizationError  # noqa: E402

PACKAGE = "wesnoth-1.16-music"


@pytest.fixture(scope="module")
def pieces():
    pytest.importorskip("soundfile")
    found = usable_pieces()
    if len(found) < 2 * len(FOLD_COPIES):
        pytest.skip(f"real orchestral recordings not installed: apt-get install {PACKAGE}")
    return found


@pytest.mark.parametrize("k", [2, 3, 5])
def test_every_piece_is_novel_exactly_once_and_never_on_both_sides(pieces, k):
    folds = fold_split(pieces, k, seed=0)
    assert len(folds) == k
    novel = [p for f in folds for p in f["novel"]]
    assert sorted(novel) == sorted(pieces)  # each piece novel in exactly one fold
    for f in folds:
        assert f["novel"] and not set(f["novel"]) & set(f["train"])
        assert set(f["novel"]) | set(f["train"]) == set(pieces)
    sizes = [len(f["novel"]) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert fold_split(pieces, k, seed=1) != folds  # the seed draws another rotation


def test_nulls_from_other_pieces_are_a_third_side(pieces):
    folds = fold_split(pieces, 4, seed=1, null_pieces=True)
    assert sorted(p for f in folds for p in f["null"]) == sorted(pieces)  # each piece a null piece once too
    for f in folds:
        sides = [set(f["novel"]), set(f["null"]), set(f["train"])]
        assert all(sides) and sum(map(len, sides)) == len(set().union(*sides)) == len(pieces)  # disjoint, covering
    with pytest.raises(MemorizationError, match="k ≥ 3"):
        fold_split(pieces, 2, null_pieces=True)


def test_fold_split_refuses_impossible_k(pieces):
    with pytest.raises(MemorizationError, match="k=1"):
        fold_split(pieces, 1)
    with pytest.raises(MemorizationError, match="pieces"):
        fold_split(pieces[:3], 4)


@pytest.mark.parametrize("train_clip_s", [10.0, 30.0])
def test_a_fold_has_the_shape_it_claims(pieces, train_clip_s):
    from pathlib import Path

    fold = {"novel": pieces[:2], "train": pieces[2:7]}  # a small fold: the cut is what is tested
    train, gen, truth = fold_clips(fold, train_clip_s, novel_per_piece=1)
    stems = {Path(f).stem for f in fold["train"]}
    assert len(train) == len(fold["train"]) * round(30 / train_clip_s)
    assert all(abs(len(w) / sr - train_clip_s) < 1e-3 for w, sr in train.values())
    assert all(abs(len(w) / sr - CLIP_S) < 1e-3 for w, sr in gen.values())
    novel = [g for g in gen if g.startswith("novel_")]
    assert len(novel) == len(fold["novel"])  # one excerpt per novel piece here
    assert not any(g.removeprefix("novel_").rsplit("_", 1)[0] in stems for g in novel)  # no training piece is novel
    assert set(truth) == {f"copy_{g}" for g in FOLD_COPIES}
    for g, (src, lag) in truth.items():
        w, sr = train[src]
        if g == "copy_exact" or g == "copy_exact_offgrid":  # an exact copy is the training clip from its lag on
            i = round(lag * sr)
            n = min(len(w) - i, len(gen[g][0]))
            np.testing.assert_array_equal(gen[g][0][:n], w[i : i + n])
        assert 0 <= lag < train_clip_s


def _fold(reported: int, n: int, found: int, det: int) -> dict:
    return {"matchers": {"m": {"novel_clips": n, "novel_reported": [f"novel_{i}" for i in range(reported)],
                               "planted_found": {f"copy_{i}": i < found for i in range(5)},
                               "detection": {"exact": {"n": 4, "detected": det}}}}}


def test_pooled_adds_the_folds_up():
    p = pooled([_fold(0, 200, 5, 4), _fold(1, 150, 3, 2), _fold(0, 100, 4, 3)])["m"]
    assert (p["novel_reported"], p["novel_clips"]) == (1, 450)
    assert p["rate"] == pytest.approx(1 / 450)
    lo, hi = p["ci95"]
    assert 0 < lo < 1 / 450 < hi < 0.0125  # one alarm in 450 nulls: Wilson upper bound ≈ 1.25 %
    assert (p["planted_found"], p["planted"]) == (12, 15)
    assert (p["detection"]["exact"]["detected"], p["detection"]["exact"]["n"]) == (9, 12)


def test_pooled_counts_false_alarms_per_piece():
    """False alarms cluster by piece: the pooled entry says how many pieces had one, and which, out of how many
    clips of each (summed over the folds that audited the piece)."""
    folds = [_fold(0, 0, 5, 4), _fold(0, 0, 5, 4)]
    folds[0]["matchers"]["m"].update(novel_clips=5, novel_reported=["novel_a_b_002.0", "novel_a_b_012.0"],
                                     novel_clips_by_piece={"a_b": 3, "c": 2})
    folds[1]["matchers"]["m"].update(novel_clips=4, novel_reported=["novel_d_002.0"], novel_clips_by_piece={"d": 4})
    p = pooled(folds)["m"]
    assert (p["novel_reported"], p["novel_clips"], p["pieces"], p["pieces_reported"]) == (3, 9, 3, 2)
    assert p["reported_by_piece"] == {"a_b": [2, 3], "d": [1, 4]}
    lo, hi = p["ci95_pieces"]
    assert 0 <= lo <= 3 / 9 <= hi <= 3 / 4  # resampling three pieces: at most the worst piece's share


def test_piece_clustered_interval_is_wider_than_wilson_when_alarms_share_a_piece():
    """Six alarms in one piece of 30 (40 clips each): the clip-level Wilson bound treats the 1200 clips as
    independent; resampling pieces puts the pooled share anywhere from 0 to a few times that piece's, so the bound is
    wider. Six alarms spread one per piece over six pieces: the two agree more closely."""
    from benchmarks.real_music_folds import piece_clustered_ci
    from metrics.intervals import wilson_ci

    one = [[6, 40]] + [[0, 40]] * 29
    spread = [[1, 40]] * 6 + [[0, 40]] * 24
    w = wilson_ci(6, 1200)[1]
    assert piece_clustered_ci(one)[1] > 1.3 * w  # 1.5 % against 1.09 %
    assert piece_clustered_ci(spread)[1] < piece_clustered_ci(one)[1]
    assert piece_clustered_ci(one) == piece_clustered_ci(one)  # seeded
    assert "pieces" not in pooled([_fold(1, 100, 5, 4)])["m"]  # runs that did not record clips per piece


def test_merge_joins_matchers_of_the_same_split_and_refuses_another_split():
    from benchmarks.real_music_folds import merge

    def run(matcher: str, reported: int, seed: int = 0) -> dict:
        folds = [{"fold": i, "seconds": 1.0, **_fold(reported, 100, 5, 4)} for i in range(2)]
        for f in folds:
            f["matchers"] = {matcher: f["matchers"]["m"]}
        return {"k": 2, "seed": seed, "pieces": 10, "matchers": [matcher],
                "shapes": {"s": {"train_clip_s": 10.0, "search_correction": True, "folds": folds, "pooled": pooled(folds)}}}

    out = merge([run("a", 0), run("b", 1)])
    assert out["matchers"] == ["a", "b"]
    assert [f["fold"] for f in out["shapes"]["s"]["folds"]] == [0, 1]
    p = out["shapes"]["s"]["pooled"]
    assert (p["a"]["novel_reported"], p["b"]["novel_reported"], p["b"]["novel_clips"]) == (0, 2, 200)
    with pytest.raises(MemorizationError, match="same split"):
        merge([run("a", 0), run("b", 0, seed=1)])
    old = run("a", 1)  # calibrated before the searched-windows correction: kept beside the corrected run
    del old["shapes"]["s"]["search_correction"]
    old["shared_material"] = {"method": "m", "clips": {"s": {"a": {"novel_x_002.0": {}}}}}
    both = merge([run("a", 0), old])  # new runs first: their rows lead, the earlier check is kept
    assert list(both["shapes"]) == ["s", "s+no-search-correction"]
    assert both["shapes"]["s+no-search-correction"]["search_correction"] is False
    assert both["shapes"]["s+no-search-correction"]["pooled"]["a"]["novel_reported"] == 2
    assert both["shapes"]["s"]["pooled"]["a"]["novel_reported"] == 0
    assert set(both["shared_material"]["clips"]) == {"s+no-search-correction"}


def test_leave_one_out_nulls_leave_their_whole_piece():
    """At the MusicCaps shape a piece is three training clips; a null cut from one is compared with none of the
    three (metrics.memorization.pipeline.audio_nulls with the benchmark's piece groups), at 30 s with all others."""
    from benchmarks.real_music_folds import piece_groups
    from metrics.memorization.pipeline import audio_nulls

    sr = 100
    train = {f"{p}_{o:02d}": (np.zeros(10 * sr, np.float32), sr) for p in ("a_b", "c") for o in (0, 10, 20)}
    groups = piece_groups(train, 10.0)
    assert groups == {k: k.rsplit("_", 1)[0] for k in train} and set(groups.values()) == {"a_b", "c"}
    null, exclude = audio_nulls(train, 10.0, 100, groups=groups)
    assert len(null) == 6
    for nid, ex in exclude.items():
        assert ex == {k for k in train if k.startswith(nid.split("@")[0].rsplit("_", 1)[0] + "_")}
    _, alone = audio_nulls(train, 10.0, 100)
    assert all(ex == {nid.split("@")[0]} for nid, ex in alone.items())  # without groups: its own clip only
    assert piece_groups({"a_b": None, "c": None}, 30.0) == {"a_b": "a_b", "c": "c"}


def test_shared_material_check_finds_a_quoted_passage_at_any_lag():
    """benchmarks/real_music_shared.py: a passage quoted at another lag scores 1 (every frame agrees), unrelated
    random chroma less; computed against a direct loop over lags and positions."""
    from benchmarks.real_music_shared import HOP, SR, WINDOW_S, best_diagonal

    rng = np.random.default_rng(0)
    w = int(round(WINDOW_S * SR / HOP))
    unit = lambda x: x / np.linalg.norm(x, axis=0, keepdims=True)  # noqa: E731
    a, b = unit(rng.random((12, w + 40))), unit(rng.random((12, w + 90)))
    b_quoted = b.copy()
    b_quoted[:, 60 : 60 + w] = a[:, 25 : 25 + w]
    assert best_diagonal(a, b_quoted) == pytest.approx(1.0)
    direct = max(float(np.mean(np.sum(a[:, i : i + w] * b[:, j : j + w], 0)))
                 for i in range(a.shape[1] - w + 1) for j in range(b.shape[1] - w + 1))
    assert best_diagonal(a, b) == pytest.approx(direct) and direct < 0.9


def test_reliability_line_keeps_only_the_default_audit_and_its_own_bounds(tmp_path):
    """The README's Reliability line: the default τ rule (confidence, searched-windows correction), leave-one-out
    nulls and the default matcher only; other rules and matchers are left to the full table."""
    from benchmarks.figures_memo_folds import MEMO_FOLDS, memorization_real_folds_reliability

    def shape(**kw):
        pooled = {"embedding-mel": {"novel_reported": 2, "novel_clips": 400, "ci95": [0.0007, 0.009],
                                    "ci95_pieces": [0.0, 0.0123]},
                  "semantic-ot": {"novel_reported": 9, "novel_clips": 400, "ci95": [0.01, 0.04]}}
        return {"seed": 0, "tau_confidence": 0.95, "search_correction": True, "null_pieces": False, "pooled": pooled, **kw}

    doc = {"fpr": 0.01, "shapes": {"musiccaps": shape(), "long-train+novel-hop-5": shape(novel_hop_s=5.0, seed=2),
                                   "musiccaps+no-search-correction": shape(search_correction=False),
                                   "musiccaps+expected-rate": shape(tau_confidence=0.0),
                                   "musiccaps+null-pieces": shape(null_pieces=True)}}
    (tmp_path / MEMO_FOLDS).parent.mkdir(parents=True)
    (tmp_path / MEMO_FOLDS).write_text(json.dumps(doc))
    line = memorization_real_folds_reliability(tmp_path)
    assert line.count("2/400") == 2 and "9/400" not in line
    assert "10 s training clips, excerpts every 10 s, seed 0: 2/400, Wilson ≤ 0.90 %, piece-clustered ≤ 1.23 %" in line
    assert "30 s training clips, excerpts every 5 s, seed 2" in line

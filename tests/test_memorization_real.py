"""The audit on real recorded music of a style the procedural corpus cannot make: orchestral scores.

Source: Debian's ``wesnoth-1.16-music`` (the Battle for Wesnoth soundtrack, Ogg Vorbis, GPL-2+;
``apt-get install wesnoth-1.16-music``). The excerpts are cut at run time by
``benchmarks.real_music.real_set`` (nothing is committed): 8 training pieces (20 s each); as
"generated" clips 10 planted copies of training excerpts (exact on and off the 40 ms grid, ±6 dB,
white noise at 40 / 30 / 20 dB SNR, −6 dB with 30 dB-SNR noise) and 8 s of 6 *other* pieces of the
same soundtrack; one 8 s null excerpt of each of the 24 remaining pieces of at least 12 s. The issue's "Done when" on a
same-genre set: every exact and gain/noise-altered copy found with the right training clip and lag
(±0.25 s) and no novel piece reported, at the default ``--fpr``. Skips only when the package is absent.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.slow

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

from benchmarks.real_music import REAL_COPIES, real_pieces, real_set  # noqa: E402
from metrics.memorization import DEFAULT_CLIP_FPR, FewNegativesWarning  # noqa: E402

PACKAGE = "wesnoth-1.16-music"
LAG_TOL = 0.25


@pytest.fixture(scope="module")
def clips():
    pytest.importorskip("soundfile")
    if len(real_pieces()) < 30:
        pytest.skip(f"real orchestral recordings not installed: apt-get install {PACKAGE}")
    return real_set(null_per_piece=1)


@pytest.fixture(scope="module")
def real_audit(clips):
    from metrics.memorization.alter import ALTERATIONS
    from metrics.memorization.pipeline import audit_audio

    train, gen, null, truth = clips
    alts = {k: ALTERATIONS[k] for k in ("gain_+6db", "noise_20db")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewNegativesWarning)  # 12 held-out nulls cannot certify 1 %: recorded, not hidden
        res = audit_audio(gen, train, ("semantic-ref", "embedding:mel"), null=null, phases=4, detect=2, alterations=alts,
                          fpr=DEFAULT_CLIP_FPR)
    return res, truth


def _found(res, truth, gid):
    src, start = truth[gid]
    rows = [m for m in res.matches if m["generated_id"] == gid and m["train_id"] == src]
    return any(abs(m["train_offset_s"] - m["gen_offset_s"] - start) <= LAG_TOL + 1e-9 for m in rows)


def test_the_set_is_what_the_done_when_names(real_audit):
    _, truth = real_audit
    assert set(truth) == set(REAL_COPIES)
    assert {"exact0", "exact1", "exact2", "gain_p6db", "gain_m6db", "noise_40db", "noise_30db", "noise_20db"} <= set(truth)


def test_no_novel_piece_of_the_same_genre_is_reported(real_audit):
    res, _ = real_audit
    for name, r in res.results.items():
        novel = [k for k in r.best_cost if k.startswith("novel_")]
        assert len(novel) == 6
        assert [k for k in novel if r.best_cost[k] < np.inf] == [], name
        cal = r.calibration
        assert (cal.n_calibration + cal.n_heldout, cal.source) == (24, "null")  # the 24 remaining pieces of at least 12 s
        assert cal.clip_false_alarms <= 1, name  # held-out nulls: other pieces of the same soundtrack


def test_embedding_matcher_finds_every_exact_gain_and_noise_copy_at_the_right_lag(real_audit):
    """The Done-when, on the default embedding matcher (per-window mean-normalized log-mel windows)."""
    res, truth = real_audit
    r = res.results["embedding-mel"]
    assert r.matches and all(m["train_id"] in {t for t, _ in truth.values()} for m in r.matches)
    assert [g for g in truth if not _found(r, truth, g)] == []
    for g, (src, start) in truth.items():  # and at the nearest sub-frame step: 0.5 s hop / 4 phases = 0.125 s
        (m,) = [m for m in r.matches if m["generated_id"] == g and m["train_id"] == src]
        assert abs(m["train_offset_s"] - m["gen_offset_s"] - start) <= 0.0625 + 0.01, (g, m)
    reported = {k for k, v in r.best_cost.items() if v < np.inf}
    assert reported == set(truth)  # the copies and nothing else
    det = res.detection["embedding-mel"]
    assert det["gain_+6db"]["detected"] == det["noise_20db"]["detected"] == 2


def test_frames_pooling_misses_20db_noise_where_centred_does_not(clips):
    """The change that made 20 dB SNR detectable, on its own: the same 20 dB-SNR excerpt against its source
    window and against the nearest window of another piece, under both window representations."""
    from metrics.embedders import get_embedder
    from metrics.memorization.alter import noise
    from metrics.memorization.levels import embed_clip
    from metrics.memorization.matchers import EmbeddingMatcher

    train, _, null, _ = clips
    emb = get_embedder("mel")
    src = sorted(train)[7]
    w, sr = train[src]
    copy = noise(20.0)(w[9 * sr : 17 * sr], sr, np.random.default_rng(0))
    feats = {k: embed_clip(x, s, emb, 2.0) for k, (x, s) in train.items()}
    margins = {}
    for pooling in ("centred", "frames"):
        m = EmbeddingMatcher("mel", 2.0, pooling=pooling)
        m.check(feats, "train", 10)
        m.fit(feats)
        tw = m.windows(feats, 10, 1)
        q = m.windows({"q": embed_clip(copy, sr, emb, 2.0)}, 10, 2)
        d = m.bound(q.vec, tw.vec)
        own = np.asarray([tw.ids[c] == src for c in tw.clip])
        nulls = m.windows({k: embed_clip(x, s, emb, 2.0) for k, (x, s) in list(null.items())[:8]}, 10, 2)
        null_min = float(m.bound(nulls.vec, tw.vec).min())
        margins[pooling] = null_min - float(d[:, own].min())
    assert margins["centred"] > 0.15  # the copy is far closer to its source than any null is to anything
    assert margins["centred"] > margins["frames"] + 0.1

"""Rhythm control metrics (metrics/control/rhythm.py) and the madmom tracker (metrics/control/beats.py).

The F-measure equals mir_eval's own ``beat.f_measure`` on random event sets; tempo accuracy equals a hand-computed
case; the tracker finds the beats, downbeats and tempo the procedural renderer put in its clips; and on real
recordings a 6 % time stretch fails tempo acc1 against the original's tempo while a 1 % stretch passes.
madmom runs ~1 s per 8 s clip per network, so every tracked clip is analysed once, in a module-scoped fixture.
"""

from __future__ import annotations

import importlib.metadata
import sys
import warnings

import numpy as np
import pytest

from metrics.control import CONTROL_METRICS, control_metric
from metrics.control.beats import NO_EVENT, MadmomUnavailable, event_times, import_madmom
from metrics.control.rhythm import ACC2_FACTORS, BeatF, TempoAcc1, TempoAcc2, f_measure, matched_events, tempo_accuracy
from metrics.errors import InputError, UnavailableError

mir_eval = pytest.importorskip("mir_eval")
RHYTHM = ("beat_f", "downbeat_f", "tempo_acc1", "tempo_acc2")


def _pairs(rng, n_sets: int = 400):
    """Random reference/estimate pairs: jittered copies (some hits on the ±70 ms edge), spurious and missing events."""
    for _ in range(n_sets):
        n = int(rng.integers(0, 25))
        ref = np.sort(rng.uniform(0, 12, n))
        kept = ref[rng.random(n) < 0.8]
        est = np.concatenate([kept + rng.normal(0, 0.05, len(kept)), rng.uniform(0, 12, int(rng.integers(0, 8))),
                              ref[:2] + 0.07])
        yield ref, np.sort(np.abs(est))


def test_f_measure_and_matching_equal_mir_eval():
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns about empty event lists
        for ref, est in _pairs(rng):
            assert f_measure(ref, est) == pytest.approx(mir_eval.beat.f_measure(ref, est), abs=1e-12)
            assert matched_events(ref, est) == len(mir_eval.util.match_events(ref, est, 0.07))
            want = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ref), mir_eval.beat.trim_beats(est))
            assert f_measure(ref, est, trim=5.0) == pytest.approx(want, abs=1e-12)


def test_f_measure_hand_case():
    # 4 reference beats; estimates: one 60 ms late (hit), one 80 ms late (miss), one exact, one spurious
    ref, est = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.06, 2.08, 3.0, 3.5])
    assert f_measure(ref, est) == pytest.approx(0.5)  # P = 2/4, R = 2/4
    assert f_measure(ref, []) == 0.0 and f_measure([], est) == 0.0
    with pytest.raises(InputError, match="NaN"):
        f_measure(ref, [np.nan])


def test_tempo_accuracy_hand_computed():
    assert tempo_accuracy(120, 124.8) == 1.0 and tempo_accuracy(120, 115.2) == 1.0  # exactly 4 %: counts (≤)
    assert tempo_accuracy(120, 125.0) == 0.0 and tempo_accuracy(120, 115.0) == 0.0
    for est in (240.0, 360.0, 60.0, 40.0, 245.0):  # double, triple, half, third, 2 × 120 + 2 %
        assert tempo_accuracy(120, est) == 0.0 and tempo_accuracy(120, est, factors=ACC2_FACTORS) == 1.0
    assert tempo_accuracy(120, 80.0, factors=ACC2_FACTORS) == 0.0  # 2/3 (a ternary-binary confusion) is no factor
    assert tempo_accuracy(120, 0.0, factors=ACC2_FACTORS) == 0.0  # no tempo found
    with pytest.raises(InputError, match="positive bpm"):
        tempo_accuracy(0, 120)


def test_metrics_score_per_clip_merge_and_skip():
    ref = {"a": np.arange(0, 8, 0.5)[:, None], "b": np.arange(0, 8, 0.5)[:, None]}
    gen = {"a": np.arange(0, 8, 0.5)[:, None] + 0.02, "b": np.full((1, 1), NO_EVENT)}  # b: no beat tracked
    m = BeatF(n_boot=0)
    m.update("reference", ref)
    m.update("generated", gen)
    res = m.compute()
    assert res.per_item == {"a": 1.0, "b": 0.0} and res.value == 0.5 and res.higher_is_better
    half = BeatF(n_boot=0)
    half.update("reference", {"a": ref["a"]})
    half.update("generated", {"a": gen["a"]})
    other = BeatF(n_boot=0)
    other.update("reference", {"b": ref["b"]})
    other.update("generated", {"b": gen["b"]})
    assert half.merge(other).compute().per_item == res.per_item
    t1, t2 = TempoAcc1(n_boot=0), TempoAcc2(n_boot=0)
    for t in (t1, t2):
        t.update("reference", {"x": np.array([[120.0]]), "y": np.array([[100.0]]), "z": np.array([[0.0]])})
        t.update("generated", {"x": np.array([[122.0]]), "y": np.array([[201.0]]), "z": np.array([[90.0]])})
    r1, r2 = t1.compute(), t2.compute()
    assert r1.per_item == {"x": 1.0, "y": 0.0} and r2.per_item == {"x": 1.0, "y": 1.0}
    assert r1.extra["skipped"] == ["z"]  # the control had no tempo: nothing to adhere to
    assert np.array_equal(event_times(np.array([[NO_EVENT]])), np.zeros(0))


def test_registry_names_the_rhythm_metrics():
    for name in RHYTHM:
        e = CONTROL_METRICS[name]
        assert control_metric(name, n_boot=0).name == name and e.extractor.startswith("madmom-")


def test_madmom_imports_through_the_shim_and_says_which_extra_is_missing(monkeypatch):
    before = importlib.metadata.distribution
    assert import_madmom().__version__
    assert importlib.metadata.distribution is before  # the metadata lookup is restored after the import
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("madmom")  # only the import saw the fallback
    monkeypatch.setitem(sys.modules, "madmom", None)  # an import of madmom now raises ImportError
    with pytest.raises(MadmomUnavailable, match=r"\.\[controls\]") as e:
        import_madmom()
    assert isinstance(e.value, UnavailableError)


# ----------------------------------------------------------------------------- the tracker on audio with known truth


@pytest.fixture(scope="module")
def corpus_tracked():
    """Two procedural clips (a 3/4 waltz without drums, a 4/4 march with drums), 8 s, through the pipeline's extractor."""
    from benchmarks.rhythm_accuracy import corpus_truth
    from metrics.control.beats import RhythmExtractor
    from musiclm_ref.data.render import render
    from musiclm_ref.data.specs import sample_spec

    specs = [sample_spec(0, 0), sample_spec(0, 10)]
    assert [(s.meter, s.drums != "none") for s in specs] == [(3, False), (4, True)]
    ext = RhythmExtractor("beats")
    heads = ext.embed_heads([render(s, 8.0, ext.sample_rate) for s in specs])
    return [(s, corpus_truth(s.tempo, s.meter, 8.0), {h: heads[h][i] for h in heads}) for i, s in enumerate(specs)]


def test_tracker_finds_the_rendered_beats_downbeats_and_tempo(corpus_tracked):
    for spec, (beats, downbeats), out in corpus_tracked:
        assert out["tempo"].shape == (1, 1)
        assert f_measure(beats, event_times(out["beats"])) >= 0.9, spec.style
        assert f_measure(downbeats, event_times(out["downbeats"])) >= 0.9, spec.style
        assert tempo_accuracy(spec.tempo, out["tempo"][0, 0]) == 1.0, (spec.style, spec.tempo, out["tempo"])


@pytest.fixture(scope="module")
def stretched_tempi():
    """Tempo of three 10 s Wesnoth excerpts and of their 1 % and 6 % faster time stretches (pitch kept)."""
    pytest.importorskip("soundfile")
    from benchmarks.real_music import cut_excerpt, real_pieces
    from metrics.control.beats import estimate_tempo
    from musiclm_ref.data.degrade import time_stretch

    pieces = {p.rsplit("/", 1)[-1]: p for p in real_pieces()}
    names = ("casualties_of_war.ogg", "northern_mountains.ogg", "silvan_sanctuary.ogg")
    if not all(n in pieces for n in names):
        pytest.skip("real orchestral recordings not installed: apt-get install wesnoth-1.16-music")
    out = {}
    for n in names:
        wave, sr = cut_excerpt(pieces[n], 30.0, 10.0, 44100)
        out[n] = {rate: estimate_tempo(time_stretch(wave, sr, rate) if rate != 1 else wave, sr) for rate in (1, 1.01, 1.06)}
    return out


def test_time_stretch_by_6_percent_fails_tempo_accuracy_and_1_percent_passes(stretched_tempi):
    for name, t in stretched_tempi.items():
        control = t[1]
        assert control > 0, name
        assert tempo_accuracy(control, t[1.01]) == 1.0, (name, t)
        assert tempo_accuracy(control, t[1.06]) == 0.0, (name, t)
        assert t[1.06] / control == pytest.approx(1.06, abs=0.02), (name, t)  # the tracker follows the stretch


def test_score_runs_the_rhythm_metrics_against_control_files(tmp_path):
    """The pipeline end to end: beats/tempo control files (the truth) against the tracked generated clip."""
    from benchmarks.rhythm_accuracy import corpus_truth
    from metrics.audio import save_audio
    from metrics.commands import compute_score
    from musiclm_ref.data.render import render
    from musiclm_ref.data.specs import sample_spec

    spec = sample_spec(0, 10)  # 4/4 march with drums, 115 bpm
    gen, ctrl = tmp_path / "gen", tmp_path / "ctrl"
    gen.mkdir(), ctrl.mkdir()
    save_audio(gen / "c.wav", render(spec, 6.0, 22050), 22050)
    beats, _ = corpus_truth(spec.tempo, spec.meter, 6.0)
    (ctrl / "c.beats.txt").write_text("".join(f"{t:.4f} {k % spec.meter + 1}\n" for k, t in enumerate(beats)))
    (ctrl / "c.tempo.txt").write_text(f"{spec.tempo * 2}\n")  # double time: acc2 accepts it, acc1 does not
    doc = compute_score(gen, gen, None, embedders=(), classifier=None, joint=None, n_boot=0, controls=ctrl,
                        control_metrics=list(RHYTHM))
    assert doc["beat_f"] >= 0.9 and doc["downbeat_f"] >= 0.9
    assert (doc["tempo_acc1"], doc["tempo_acc2"]) == (0.0, 1.0)

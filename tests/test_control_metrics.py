"""Control metrics (metrics/control/): each score equals mir_eval's own function or an independent formulation,
the estimators find what synthetic audio was built with, and the Metrics run through the registry."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.control import CONTROL_METRICS, control_metric
from metrics.control.dynamics import pearson
from metrics.control.melody import pitch_class_accuracy
from metrics.control.tonal import (
    chord_frames,
    chord_labels,
    frame_accuracy,
    key_label,
    key_weighted_score,
    majmin_scores,
    root_scores,
)
from metrics.embedders import get_embedder

mir_eval = pytest.importorskip("mir_eval")

SR = 22050


def _tones(freqs, seconds, sr=SR, amp=0.1):
    t = np.arange(int(seconds * sr)) / sr
    return amp * sum(np.sin(2 * np.pi * f * k * t) / k for f in freqs for k in (1, 2, 3))


def test_key_weighted_score_equals_mir_eval_on_every_pair():
    keys = [(t, m) for t in range(12) for m in (0, 1)] + [(-1, 0)]
    for ref in keys:
        for est in keys:
            want = mir_eval.key.weighted_score(key_label(*ref), key_label(*est))
            assert key_weighted_score(ref, est) == want, (ref, est)


LABELS = ["N", "X", "C:maj", "C:min", "A:min", "E:maj", "C:7", "C:maj7", "C:min7", "G:maj/3", "G:maj/b7", "D:sus4",
          "F#:dim", "Bb:maj", "A:min/b3", "C:maj(9)", "Eb:aug", "C:min/5"]


def test_chord_majmin_and_root_equal_mir_eval_on_random_label_sequences():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ref = list(rng.choice(LABELS, 200))
        est = list(rng.choice(LABELS, 200))
        r, e = chord_frames(ref), chord_frames(est)
        np.testing.assert_array_equal(majmin_scores(r, e), mir_eval.chord.majmin(ref, est))
        np.testing.assert_array_equal(root_scores(r, e), mir_eval.chord.root(ref, est))
        iv = np.column_stack([np.arange(200), np.arange(1, 201)]).astype(float)  # equal 1 s frames
        for mine, theirs in ((majmin_scores, mir_eval.chord.majmin), (root_scores, mir_eval.chord.root)):
            want = mir_eval.chord.weighted_accuracy(theirs(ref, est), mir_eval.util.intervals_to_durations(iv))
            assert frame_accuracy(mine(r, e)) == pytest.approx(want, abs=1e-12)


def test_chord_labels_round_trip_through_mir_eval_encoding():
    labels = ["N", "C:maj", "A:min", "F#:maj", "Bb:min"]
    frames = chord_frames(labels)
    assert chord_frames(chord_labels(frames)).tolist() == frames.tolist()


def _pc_frames(pcs, voiced):
    out = np.zeros((len(pcs), 13), np.float32)
    out[np.arange(len(pcs)), pcs] = 1
    out[:, 12] = voiced
    return out


def test_pitch_class_accuracy_by_hand():
    ctrl = _pc_frames([0, 2, 4, 5, 7, 0], [1, 1, 1, 1, 0, 1])
    gen = _pc_frames([0, 2, 3, 5, 7, 0], [1, 1, 1, 0, 1, 1])  # frame 2 wrong class, 3 unvoiced, 4 not counted
    assert pitch_class_accuracy(ctrl, gen) == pytest.approx(3 / 5)
    assert pitch_class_accuracy(_pc_frames([0], [0]), gen) is None


def test_melody_accuracy_is_octave_invariant_and_sees_a_transposition():
    ext = get_embedder("controlnet-chroma")
    notes = [523.25, 587.33, 659.26, 698.46]  # C5 D5 E5 F5, 0.5 s each
    melody = np.concatenate([_tones([f], 0.5) for f in notes])
    up = np.concatenate([_tones([2 * f], 0.5) for f in notes])
    shifted = np.concatenate([_tones([f * 2 ** (2 / 12)], 0.5) for f in notes])
    c, u, s = ext.embed(melody), ext.embed(up), ext.embed(shifted)
    assert pitch_class_accuracy(c, u) > 0.9
    assert pitch_class_accuracy(c, s) < 0.2


def test_key_and_chord_estimators_on_triads():
    cmaj, amin = _tones([261.63, 329.63, 392.0], 2.0), _tones([220.0, 261.63, 329.63], 2.0)
    wave = np.concatenate([cmaj, amin])
    chords = chord_labels(get_embedder("chords-template").embed(wave))
    half = len(chords) // 2
    assert chords[5:half - 5] == ["C:maj"] * (half - 10) and set(chords[half + 5:-2]) == {"A:min"}
    scale = [261.63 * 2 ** (s / 12) for s in (0, 2, 4, 5, 7, 9, 11, 12)]  # C major scale over a C major chord
    tonic = np.concatenate([_tones([f, 261.63, 392.0], 0.4) for f in scale])
    assert get_embedder("key-ks").embed(tonic)[0].tolist() == [0, 0]


def test_pearson_equals_numpy_and_is_none_for_a_flat_curve():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=60)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b[:50])[0, 1], abs=1e-12)
    assert pearson(np.ones(10), a) is None


def test_dynamics_correlation_follows_a_ramp_and_its_reverse():
    ext = get_embedder("loudness-curve")
    carrier = _tones([440.0], 4.0, amp=1.0)
    ramp = 10 ** (np.linspace(-40.0, 0.0, len(carrier)) / 20)  # linear in dB: its reverse is its mirror image
    c, same, rev = (ext.embed(carrier * g) for g in (ramp, ramp * 0.5, ramp[::-1]))
    assert pearson(c, same) > 0.99 and pearson(c, rev) < -0.9


def test_every_registered_control_metric_computes_through_the_registry():
    rng = np.random.default_rng(2)
    ext_wave = {f"c{i}": _tones([220.0 * 2 ** (rng.integers(12) / 12)], 2.0) * np.linspace(0.1, 1, 2 * SR)
                for i in range(3)}
    for name in ("melody_accuracy", "key_accuracy_ks", "chord_majmin_template", "dynamics_correlation"):
        e = CONTROL_METRICS[name]
        feats = {cid: get_embedder(e.extractor).embed(w) for cid, w in ext_wave.items()}
        m = control_metric(name, n_boot=20, seed=0)
        m.update("reference", feats)
        m.update("generated", feats)
        res = m.compute()
        assert res.value == pytest.approx(1.0), name  # a clip follows its own control
        assert res.higher_is_better and set(res.per_item) == set(ext_wave)


def test_madmom_key_and_chords_find_a_corpus_clips_truth():
    """The real-weight recognizers (the registry's key_accuracy / chord_* extractors) on one procedural clip whose
    spec knows its key and chords (benchmarks.control_accuracy measures them on many)."""
    from benchmarks.control_accuracy import chord_check, key_check
    from metrics.control.beats import MadmomUnavailable
    from musiclm_ref.data.render import render
    from musiclm_ref.data.specs import sample_spec

    try:
        get_embedder("key-madmom")
    except MadmomUnavailable as e:
        pytest.skip(str(e))
    spec = sample_spec(1, 0)
    wave = render(spec, 8.0, 22050)
    assert key_check(spec, wave, 22050, 8.0)["mirex_weighted"] >= 0.5
    assert chord_check(spec, wave, 22050, 8.0)["majmin"] >= 0.6

"""Control metrics on real recorded music (the Wesnoth soundtrack, Debian ``wesnoth-1.16-music``; see
tests/test_memorization_real.py): the control is extracted from an excerpt, the "generated" clip is the same excerpt
altered. Pitch-shifted by two semitones its key no longer matches (a whole tone is neither a fifth, relative nor
parallel key: only an estimator's own fifth/relative confusion can earn the shifted clip partial credit); under a loudness ramp reversed its dynamics correlate negatively with the
control's. Skips only when the package is absent."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.real_music import cut_excerpt, real_pieces
from metrics.control import control_metric
from metrics.embedders import get_embedder

SR = 22050
PIECES = ("battle.ogg", "casualties_of_war.ogg", "elvish-theme.ogg", "knalgan_theme.ogg", "heroes_rite.ogg",
          "northerners.ogg")


@pytest.fixture(scope="module")
def excerpts():
    pytest.importorskip("soundfile")
    found = {p.rsplit("/", 1)[-1]: p for p in real_pieces()}
    chosen = [found[n] for n in PIECES if n in found]
    if len(chosen) < 4:
        pytest.skip("real orchestral recordings not installed: apt-get install wesnoth-1.16-music")
    return {p.rsplit("/", 1)[-1][:-4]: cut_excerpt(p, 20.0, 12.0, SR)[0] for p in chosen}


def _score(name: str, extractor: str, control: dict, generated: dict):
    ext, metric = get_embedder(extractor), control_metric(name, n_boot=0)
    metric.update("reference", {k: ext.embed(w) for k, w in control.items()})
    metric.update("generated", {k: ext.embed(w) for k, w in generated.items()})
    return metric.compute()


@pytest.fixture(scope="module")
def shifted(excerpts):
    """The first three excerpts' first 8 s, as they are and pitch-shifted up two semitones (librosa's phase vocoder)."""
    librosa = pytest.importorskip("librosa")
    orig = {k: w[: 8 * SR] for k, w in list(excerpts.items())[:3]}
    return orig, {k: librosa.effects.pitch_shift(w, sr=SR, n_steps=2) for k, w in orig.items()}


@pytest.mark.parametrize("metric,extractor", [("key_accuracy", "key-madmom"), ("key_accuracy_ks", "key-ks")])
def test_pitch_shift_by_two_semitones_breaks_key_accuracy(shifted, metric, extractor):
    from metrics.control.beats import MadmomUnavailable

    orig, moved = shifted
    try:
        ext = get_embedder(extractor)
    except MadmomUnavailable as e:
        pytest.skip(str(e))
    keys = {k: ext.embed(w) for k, w in orig.items()}
    keys_moved = {k: ext.embed(w) for k, w in moved.items()}
    same, broken = control_metric(metric, n_boot=0), control_metric(metric, n_boot=0)
    for m, gen in ((same, keys), (broken, keys_moved)):
        m.update("reference", keys)
        m.update("generated", gen)
    assert same.compute().value == 1.0
    res = broken.compute()  # no shifted clip keeps its key; a fifth/relative confusion may still earn partial credit
    assert res.value <= 0.5 and all(v < 1.0 for v in res.per_item.values()), res.per_item
    if extractor == "key-ks":  # the chroma baseline is transposition-equivariant: its tonic follows the shift
        tonic_moves = [int((keys_moved[k][0, 0] - keys[k][0, 0]) % 12) for k in keys]
        assert sum(m == 2 for m in tonic_moves) >= len(tonic_moves) - 1, tonic_moves


def test_a_loudness_ramp_reversed_drives_dynamics_correlation_negative(excerpts):
    n = len(next(iter(excerpts.values())))
    ramp = 10 ** (np.linspace(-24.0, 0.0, n) / 20)  # 24 dB crescendo over the excerpt
    up = {k: w[:n] * ramp for k, w in excerpts.items()}
    down = {k: w[:n] * ramp[::-1] for k, w in excerpts.items()}
    follows = _score("dynamics_correlation", "loudness-curve", up, {k: 0.5 * w for k, w in up.items()})
    reversed_ = _score("dynamics_correlation", "loudness-curve", up, down)
    assert follows.value == pytest.approx(1.0, abs=1e-6)
    assert reversed_.value < -0.5 and all(v < 0 for v in reversed_.per_item.values()), reversed_.per_item

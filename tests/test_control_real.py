"""Control metrics on real recorded music (the Wesnoth soundtrack, Debian ``wesnoth-1.16-music``; see
tests/test_memorization_real.py): the control is extracted from an excerpt, the "generated" clip is the same excerpt
altered. Pitch-shifted by two semitones its key no longer matches (MIREX weighted score 0: a whole tone is neither a
fifth, relative nor parallel key); under a loudness ramp reversed its dynamics correlate negatively with the
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


def test_pitch_shift_by_two_semitones_breaks_key_accuracy(excerpts):
    librosa = pytest.importorskip("librosa")
    shifted = {k: librosa.effects.pitch_shift(w, sr=SR, n_steps=2) for k, w in excerpts.items()}
    same = _score("key_accuracy", "key-ks", excerpts, excerpts)
    moved = _score("key_accuracy", "key-ks", excerpts, shifted)
    assert same.value == 1.0
    assert moved.value <= 0.2, moved.per_item  # at most a stray relative/parallel credit
    ext = get_embedder("key-ks")
    tonic_moves = [int((ext.embed(shifted[k])[0, 0] - ext.embed(w)[0, 0]) % 12) for k, w in excerpts.items()]
    assert sum(m == 2 for m in tonic_moves) >= len(tonic_moves) - 1, tonic_moves  # the estimate follows the shift


def test_a_loudness_ramp_reversed_drives_dynamics_correlation_negative(excerpts):
    n = len(next(iter(excerpts.values())))
    ramp = 10 ** (np.linspace(-24.0, 0.0, n) / 20)  # 24 dB crescendo over the excerpt
    up = {k: w[:n] * ramp for k, w in excerpts.items()}
    down = {k: w[:n] * ramp[::-1] for k, w in excerpts.items()}
    follows = _score("dynamics_correlation", "loudness-curve", up, {k: 0.5 * w for k, w in up.items()})
    reversed_ = _score("dynamics_correlation", "loudness-curve", up, down)
    assert follows.value == pytest.approx(1.0, abs=1e-6)
    assert reversed_.value < -0.5 and all(v < 0 for v in reversed_.per_item.values()), reversed_.per_item

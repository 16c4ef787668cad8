"""Degradations: identity at 0, requested SNR, cutoff respected, distortion monotone in severity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio
from click.testing import CliRunner

from benchmarks.cli import main
from metrics.audio import load_audio
from musiclm_ref.data.degrade import DEGRADATIONS, add_noise, degrade, lowpass
from musiclm_ref.data.render import render
from musiclm_ref.data.specs import sample_spec

SR = 16000


@pytest.fixture(scope="module")
def music():
    return render(sample_spec(0, 3, "rock"), 3.0, SR)


def logmel(x):
    mel = torchaudio.transforms.MelSpectrogram(SR, n_fft=1024, hop_length=256, n_mels=64)(torch.from_numpy(x))
    return torch.log(mel + 1e-5).numpy()


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_identity_length_dtype_and_monotone(music, kind):
    np.testing.assert_array_equal(degrade(music, SR, kind, 0.0), music)
    ref = logmel(music)
    dists = []
    for sev in (0.25, 0.5, 0.75, 1.0):
        y = degrade(music, SR, kind, sev, seed=1)
        assert y.dtype == np.float32 and y.shape == music.shape and np.isfinite(y).all()
        dists.append(float(np.mean(np.abs(logmel(y) - ref))))
    assert all(a < b for a, b in zip(dists, dists[1:])), (kind, dists)


def test_noise_snr_is_exact(music):
    for snr in (40, 20, 0):
        y = add_noise(music, snr, seed=0)
        measured = 10 * np.log10(np.mean(music.astype(np.float64) ** 2) / np.mean((y - music).astype(np.float64) ** 2))
        assert abs(measured - snr) < 0.5


def test_lowpass_removes_energy_above_cutoff(music):
    y = lowpass(music, SR, 1000.0)
    f = np.fft.rfftfreq(len(music), 1 / SR)
    before, after = np.abs(np.fft.rfft(music)) ** 2, np.abs(np.fft.rfft(y)) ** 2
    assert after[f > 2000].sum() < 1e-3 * before[f > 2000].sum()
    assert after[f < 500].sum() > 0.9 * before[f < 500].sum()


def test_bad_arguments(music):
    with pytest.raises(ValueError, match="unknown degradation 'fuzz'; expected one of noise, lowpass"):
        degrade(music, SR, "fuzz", 0.5)
    with pytest.raises(ValueError, match=r"severity must be in \[0, 1\]"):
        degrade(music, SR, "noise", 1.5)
    with pytest.raises(ValueError, match=r"non-empty mono wave \(1-D\), got shape \(2, 10\)"):
        degrade(np.zeros((2, 10), np.float32), SR, "noise", 0.5)
    with pytest.raises(ValueError, match="contains NaN or inf"):
        degrade(np.array([0.1, np.nan], np.float32), SR, "clip", 0.5)


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_very_short_clips(kind):
    y = degrade(np.linspace(-0.5, 0.5, 20, dtype=np.float32), SR, kind, 0.9)
    assert y.shape == (20,) and y.dtype == np.float32 and np.isfinite(y).all()


def test_degrade_cli(small_corpus, tmp_path):
    res = CliRunner().invoke(main, ["degrade", "--input", str(small_corpus), "--clips", str(tmp_path / "d"), "--kind", "noise", "--severity", "0.5"])
    assert res.exit_code == 0, res.output
    assert "snr_db = 20" in res.output
    assert (tmp_path / "d" / "captions.csv").is_file()
    a, b = load_audio(small_corpus / "syn-s1234-4s-00000.wav"), load_audio(tmp_path / "d" / "syn-s1234-4s-00000.wav")
    assert a.wave.shape == b.wave.shape and not np.allclose(a.wave, b.wave)
    bad = CliRunner().invoke(main, ["degrade", "--input", str(small_corpus), "--clips", str(tmp_path / "e"), "--kind", "fuzz", "--severity", "0.5"])
    assert bad.exit_code != 0 and "unknown degradation 'fuzz'; expected one of noise, lowpass, clip" in bad.output
    same = CliRunner().invoke(main, ["degrade", "--input", str(small_corpus), "--clips", str(small_corpus), "--kind", "clip", "--severity", "0.5"])
    assert same.exit_code != 0 and "must not overwrite the originals" in same.output

"""Altered copies the audit plants in its own training audio to measure what it detects.

Each alteration maps ``(wave, sr, rng) -> wave`` at the clip's own sample rate (before the
featurizer resamples), so a low-pass at 8 kHz removes content only where the source has it: at a
16 kHz source it is a no-op, at 44.1 kHz it is what an MP3 encoder's low-pass does. Pitch and tempo
use torchaudio's phase vocoder (``pitch_shift``; ``phase_vocoder`` + inverse STFT for tempo).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Alteration = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
N_FFT, HOP = 2048, 512


def gain(db: float) -> Alteration:
    return lambda w, sr, rng: (w * 10 ** (db / 20)).astype(np.float32)


def noise(snr_db: float) -> Alteration:
    """White Gaussian noise at ``snr_db`` below the excerpt's RMS."""

    def f(w, sr, rng):
        rms = float(np.sqrt(np.mean(np.asarray(w, np.float64) ** 2))) or 1e-9
        return (w + rng.normal(0, rms * 10 ** (-snr_db / 20), len(w))).astype(np.float32)

    return f


def lowpass(cutoff_hz: float) -> Alteration:
    """Zero-phase FFT low-pass with a 10 % raised-cosine transition below ``cutoff_hz`` (MP3-style band limit)."""

    def f(w, sr, rng):
        if cutoff_hz >= sr / 2:
            return np.asarray(w, np.float32)
        spec = np.fft.rfft(np.asarray(w, np.float64))
        fr = np.fft.rfftfreq(len(w), 1 / sr)
        lo = 0.9 * cutoff_hz
        gain_ = np.clip((cutoff_hz - fr) / (cutoff_hz - lo), 0, 1)
        gain_ = 0.5 - 0.5 * np.cos(np.pi * gain_)
        return np.fft.irfft(spec * gain_, n=len(w)).astype(np.float32)

    return f


def pitch(semitones: float) -> Alteration:
    def f(w, sr, rng):
        import torch
        import torchaudio.functional as AF

        x = torch.as_tensor(np.asarray(w, np.float32))[None]
        return AF.pitch_shift(x, sr, semitones, n_fft=N_FFT, hop_length=HOP)[0].numpy().astype(np.float32)

    return f


def tempo(factor: float) -> Alteration:
    """Play ``factor`` times faster, pitch unchanged (phase vocoder); the copy is 1/factor as long."""

    def f(w, sr, rng):
        import torch
        import torchaudio.functional as AF

        x = torch.as_tensor(np.asarray(w, np.float32))
        win = torch.hann_window(N_FFT)
        spec = torch.stft(x, N_FFT, HOP, window=win, return_complex=True)
        adv = torch.linspace(0, np.pi * HOP, spec.shape[0])[..., None]
        st = AF.phase_vocoder(spec, factor, adv)
        return torch.istft(st, N_FFT, HOP, window=win, length=int(round(len(w) / factor))).numpy().astype(np.float32)

    return f


def identity(w, sr, rng):
    return np.asarray(w, np.float32)


# name -> (alteration, extra start offset in token frames: "shift" starts half a frame off the grid)
ALTERATIONS: dict[str, tuple[Alteration, float]] = {
    "exact": (identity, 0.0),
    "gain_+6db": (gain(6.0), 0.0),
    "gain_-6db": (gain(-6.0), 0.0),
    "noise_40db": (noise(40.0), 0.0),
    "noise_30db": (noise(30.0), 0.0),
    "noise_20db": (noise(20.0), 0.0),
    "shift_offgrid": (identity, 0.5),
    "lowpass_8k": (lowpass(8000.0), 0.0),
    "pitch_+1": (pitch(1.0), 0.0),
    "pitch_-1": (pitch(-1.0), 0.0),
    "tempo_+3%": (tempo(1.03), 0.0),
    "tempo_-3%": (tempo(1 / 1.03), 0.0),
}

"""Altered copies the audit plants in its own training audio to measure what it detects.

Each alteration maps ``(wave, sr, rng) -> wave`` at the clip's own sample rate (before the
featurizer resamples), so a low-pass at 8 kHz removes content only where the source has it: at a
16 kHz source it is a no-op, at 44.1 kHz it is what an MP3 encoder's low-pass does. Pitch and tempo
use torchaudio's phase vocoder (``phase_vocoder`` + inverse STFT); pitch then resamples by the inverse
ratio with torchaudio's Hann-windowed sinc — torchaudio's ``pitch_shift``, computed cheaper (``sinc_resample``).
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


def _stretch(w: np.ndarray, factor: float):
    """``w`` played ``factor`` times faster, pitch unchanged (phase vocoder): a tensor 1/factor as long."""
    import torch
    import torchaudio.functional as AF

    x = torch.as_tensor(np.asarray(w, np.float32))
    win = torch.hann_window(N_FFT)
    spec = torch.stft(x, N_FFT, HOP, window=win, return_complex=True)
    adv = torch.linspace(0, np.pi * HOP, spec.shape[0])[..., None]
    st = AF.phase_vocoder(spec, factor, adv)
    return torch.istft(st, N_FFT, HOP, window=win, length=int(round(len(w) / factor)))


def sinc_resample(x, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99):
    """torchaudio's ``resample`` (``sinc_interp_hann``) of a 1-D tensor, each output phase's filter
    computed only where it is non-zero.

    Why: a pitch shift resamples at a ratio like 16951/16000 that no common factor reduces, and torchaudio
    then builds its whole [new, orig + 2·width] kernel (16000 × 16965 float64 values, ≈2 GB of work per
    call, the bulk of an audit's detection table). Each row is a windowed sinc around its own phase and
    exactly 0.0 in float32 outside ``2·width`` taps, so the same values (same formula, same float64 steps)
    on those taps give the same filter; only the summation order differs from ``conv1d`` (float32 rounding;
    tests/test_memorization_alter.py compares with torchaudio).
    """
    import math

    import torch

    g = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // g, int(new_freq) // g
    if orig == new:
        return x
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    taps = 2 * width + 2  # the support of every row (< 2·width wide) starts at or after k = ⌊c·orig/new⌋
    first = torch.arange(new) * orig // new  # [new] first tap of phase c (a kernel column index)
    k = first[:, None] + torch.arange(taps)  # [new, taps] kernel column indices
    idx = (k - width).to(torch.float64) / orig  # torchaudio: arange(-width, width + orig, float64) / orig
    t = (torch.arange(0, -new, -1)[:, None] / new + idx) * base  # float32 phase term + float64 idx, as torchaudio
    t = t.clamp_(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t *= math.pi
    kernel = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    kernel *= window * (base / orig)
    kernel = kernel.to(torch.float32).masked_fill_(k >= 2 * width + orig, 0.0)  # beyond torchaudio's kernel
    n = x.shape[-1]
    blocks = n // orig + 1  # conv1d's output length on the padded input
    padded = torch.nn.functional.pad(x.to(torch.float32), (width, width + orig + 1))
    frames = padded[(torch.arange(blocks) * orig)[:, None, None] + k[None]]  # [blocks, new, taps]
    out = (frames * kernel).sum(-1).reshape(-1)
    return out[: int(torch.ceil(torch.as_tensor(new * n / orig)))]  # torchaudio's length (a float32 ceil)


def pitch(semitones: float) -> Alteration:
    """torchaudio's ``pitch_shift``: stretch by 2^(−semitones/12), resample by the inverse, same length."""

    def f(w, sr, rng):
        import torch

        rate = 2.0 ** (-float(semitones) / 12)
        out = sinc_resample(_stretch(w, rate), int(sr / rate), sr)
        n = len(w)
        out = out[:n] if len(out) >= n else torch.nn.functional.pad(out, (0, n - len(out)))
        return out.numpy().astype(np.float32)

    return f


def tempo(factor: float) -> Alteration:
    """Play ``factor`` times faster, pitch unchanged (phase vocoder); the copy is 1/factor as long."""
    return lambda w, sr, rng: _stretch(w, factor).numpy().astype(np.float32)


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

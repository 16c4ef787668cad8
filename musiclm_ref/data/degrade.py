"""Degradations with a severity knob, for validating that metrics move the right way.

``severity`` runs from 0 (identity) to 1 (very degraded) and maps monotonically to each kind's
physical parameter (``DEGRADATIONS``), so "FAD grows with severity" is a testable statement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, sosfiltfilt


def add_noise(wave: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` relative to the clip's mean power."""
    power = float(np.mean(wave.astype(np.float64) ** 2))
    noise = np.random.default_rng(seed).standard_normal(len(wave))
    noise *= np.sqrt(power / 10 ** (snr_db / 10) / np.mean(noise**2)) if power > 0 else 0.0
    return (wave + noise).astype(np.float32)


def lowpass(wave: np.ndarray, sr: int, cutoff_hz: float) -> np.ndarray:
    """8th-order zero-phase Butterworth low-pass."""
    if cutoff_hz >= sr / 2:
        return wave.astype(np.float32)
    sos = butter(8, cutoff_hz, btype="low", fs=sr, output="sos")
    padlen = min(3 * (2 * len(sos) + 1), len(wave) - 1)  # scipy's default, shortened for very short clips
    return sosfiltfilt(sos, wave.astype(np.float64), padlen=max(padlen, 0)).astype(np.float32)


def clip(wave: np.ndarray, threshold: float) -> np.ndarray:
    """Hard clipping at ``threshold`` × the clip's peak (level kept: no make-up gain)."""
    peak = float(np.max(np.abs(wave))) or 1.0
    t = threshold * peak
    return np.clip(wave, -t, t).astype(np.float32)


def _resample_linear(wave: np.ndarray, factor: float) -> np.ndarray:
    n = max(int(round(len(wave) / factor)), 1)
    return np.interp(np.arange(n) * factor, np.arange(len(wave)), wave)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x[:n], (0, max(0, n - len(x)))).astype(np.float32)


def _ola_stretch(wave: np.ndarray, rate: float, sr: int) -> np.ndarray:
    """Overlap-add time stretch (rate > 1 = faster), pitch unchanged."""
    win = int(0.05 * sr)
    hop_out = win // 2
    hop_in = hop_out * rate
    n_frames = int((len(wave) - win) / hop_in) + 1 if len(wave) > win else 1
    w = np.hanning(win)
    out = np.zeros(n_frames * hop_out + win)
    norm = np.zeros_like(out)
    for i in range(n_frames):
        a = int(i * hop_in)
        seg = wave[a : a + win]
        out[i * hop_out : i * hop_out + len(seg)] += seg * w[: len(seg)]
        norm[i * hop_out : i * hop_out + len(seg)] += w[: len(seg)]
    return out / np.maximum(norm, 1e-3)


def time_stretch(wave: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """Play ``rate`` times faster without changing pitch; output cropped/zero-padded to the input length."""
    return _fit(_ola_stretch(wave.astype(np.float64), rate, sr), len(wave))


def pitch_shift(wave: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift pitch (duration kept): time-stretch by the ratio, then resample back."""
    ratio = 2 ** (semitones / 12)
    stretched = _ola_stretch(wave.astype(np.float64), 1 / ratio, sr)
    return _fit(_resample_linear(stretched, ratio), len(wave))


def reverb(wave: np.ndarray, sr: int, wet: float, seed: int = 0) -> np.ndarray:
    """Add a seeded synthetic room (exponentially decaying noise, RT60 ≈ 1.7 s) at ``wet`` level."""
    n_ir = int(1.5 * sr)
    t = np.arange(n_ir) / sr
    ir = np.random.default_rng(seed).standard_normal(n_ir) * np.exp(-t * 4.0)
    ir /= np.sqrt(np.sum(ir**2))
    tail = fftconvolve(wave.astype(np.float64), ir)[: len(wave)]
    return ((1 - 0.5 * wet) * wave + wet * tail).astype(np.float32)


@dataclass(frozen=True)
class Degradation:
    parameter: str
    at_0: float
    at_1: float
    scale: str  # "linear" | "log"
    apply: Callable[[np.ndarray, int, float, int], np.ndarray]

    def value(self, severity: float) -> float:
        if self.scale == "log":
            return float(self.at_0 * (self.at_1 / self.at_0) ** severity)
        return float(self.at_0 + (self.at_1 - self.at_0) * severity)


DEGRADATIONS: dict[str, Degradation] = {
    "noise": Degradation("snr_db", 40.0, 0.0, "linear", lambda w, sr, v, s: add_noise(w, v, s)),
    "lowpass": Degradation("cutoff_hz", 8000.0, 500.0, "log", lambda w, sr, v, s: lowpass(w, sr, v)),
    "clip": Degradation("threshold", 1.0, 0.05, "log", lambda w, sr, v, s: clip(w, v)),
    "pitch": Degradation("semitones", 0.0, 4.0, "linear", lambda w, sr, v, s: pitch_shift(w, sr, v)),
    "stretch": Degradation("rate", 1.0, 1.5, "linear", lambda w, sr, v, s: time_stretch(w, sr, v)),
    "reverb": Degradation("wet", 0.0, 1.0, "linear", lambda w, sr, v, s: reverb(w, sr, v, s)),
}


def degrade(wave: np.ndarray, sr: int, kind: str, severity: float, seed: int = 0) -> np.ndarray:
    """Apply ``kind`` at ``severity`` ∈ [0, 1]; severity 0 returns the input unchanged."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; expected one of {', '.join(DEGRADATIONS)}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    wave = np.asarray(wave)
    if wave.ndim != 1 or len(wave) == 0:
        raise ValueError(f"degrade expects a non-empty mono wave (1-D), got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise ValueError("degrade expects a finite wave; it contains NaN or inf")
    if severity == 0:
        return wave.astype(np.float32, copy=True)
    d = DEGRADATIONS[kind]
    return d.apply(wave, sr, d.value(severity), seed)

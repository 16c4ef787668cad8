"""``mel``: a weight-free, deterministic log-mel statistics embedder.

Why it exists: it works everywhere (no TensorFlow, no downloaded weights), so tests, CI and
offline users always have an embedder. Each 1 s window (0.5 s hop) of 16 kHz audio becomes the
per-band mean and standard deviation of its 64-band log-mel spectrogram (25 ms periodic Hann,
10 ms hop, 512-point FFT, HTK mel 0–8 kHz, log(power + 1e-6)) → 128 dims. Its FAD
values are NOT comparable to published VGGish/TRILL FAD numbers; use it for relative comparisons.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from metrics.embedders import Embedder, EmbedderError


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms periodic Hann, zero-padded to n_fft
    hop_length: int = 160  # 10 ms
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0
    window_seconds: float = 1.0
    hop_seconds: float = 0.5
    log_floor: float = 1e-6
    version: int = 2  # bump when the computation changes: it is part of the id, so of cache keys


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> np.ndarray:
    """[n_freqs, n_mels] triangular HTK-mel filters without area normalization (torchaudio's defaults)."""
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    f_pts = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    slopes = f_pts[None, :] - all_freqs[:, None]
    f_diff = np.diff(f_pts)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


class MelEmbedder(Embedder):
    """Pure numpy (single-threaded FFTs): a tiny workload that multi-threaded torch ops slowed ~20x
    on a busy machine."""

    name = "mel"

    def __init__(self, cfg: MelConfig = MelConfig(), device: str = "cpu"):
        if cfg.window_seconds * cfg.sample_rate % cfg.hop_length or cfg.hop_seconds * cfg.sample_rate % cfg.hop_length:
            raise EmbedderError("mel: window_seconds and hop_seconds must be whole multiples of hop_length")
        self.cfg = cfg
        self.device = device  # numpy only; accepted for a uniform factory signature
        self.sample_rate = cfg.sample_rate
        self.dim = 2 * cfg.n_mels
        self.min_seconds = cfg.window_seconds
        digest = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]
        self.id = f"mel-{digest}"
        n = np.arange(cfg.win_length)
        self._window = 0.5 - 0.5 * np.cos(2 * np.pi * n / cfg.win_length)  # periodic Hann
        self._fb = mel_filterbank(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate)

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """[stft frames, n_mels] log power mel spectrogram (no centering/padding)."""
        c = self.cfg
        frames = np.lib.stride_tricks.sliding_window_view(np.asarray(wave, dtype=np.float64), c.win_length)
        power = np.abs(np.fft.rfft(frames[:: c.hop_length] * self._window, n=c.n_fft)) ** 2
        return np.log(power @ self._fb + c.log_floor)

    def embed(self, wave: np.ndarray) -> np.ndarray:
        c = self.cfg
        win = int(round(c.window_seconds * c.sample_rate))
        if len(wave) < win:
            return np.zeros((0, self.dim), np.float32)
        logmel = self.log_mel(wave)
        per_window = (win - c.win_length) // c.hop_length + 1  # stft frames inside one window
        step = int(round(c.hop_seconds * c.sample_rate)) // c.hop_length
        n_windows = (len(wave) - win) // int(round(c.hop_seconds * c.sample_rate)) + 1
        views = np.lib.stride_tricks.sliding_window_view(logmel, per_window, axis=0)[::step][:n_windows]  # [W, mels, t]
        return np.concatenate([views.mean(-1), views.std(-1)], axis=-1).astype(np.float32)


def factory(path: str | None = None, device: str = "cpu") -> MelEmbedder:
    if path:
        raise EmbedderError(f"the mel embedder has no weights; --embedder-path {path} does not apply to it")
    return MelEmbedder(device=device)

"""Dynamics control: Pearson correlation of smoothed loudness curves (Music ControlNet, Wu et al. 2023).

Music ControlNet's dynamics control is a frame-wise loudness curve smoothed with a Savitzky-Golay filter over about
one second, and its *dynamics correlation* is the Pearson correlation r between the control's curve and the one
extracted from the generated audio. Here the loudness is BS.1770's: the audio K-weighted (pyloudnorm's two
biquads, its ``Meter``'s own filters), the mean square over 2,048-sample windows (93 ms) every 512 samples at
22,050 Hz (43.07 frames/s), in LUFS (−0.691 + 10·log10 of the mean square), floored at BS.1770's −70 LUFS
absolute gate, then Savitzky-Golay smoothed (43 frames ≈ 1 s, order 1). The correlation runs over the common
frames from the start; a clip pair whose either curve is constant has no r and is left out (and reported).
"""

from __future__ import annotations

import numpy as np

from metrics.embedders import Embedder, EmbedderError, refuse_weights
from metrics.melody_adherence import _PairedMelody

FLOOR_LUFS = -70.0


class LoudnessCurve(Embedder):
    """``loudness-curve``: [frames, 1] smoothed K-weighted loudness in LUFS, 43.07 frames/s."""

    name = "loudness-curve"
    sample_rate = 22050
    dim = 1

    def __init__(self, window: int = 2048, hop: int = 512, smooth_frames: int = 43, device: str = "cpu"):
        try:
            import pyloudnorm
        except ImportError as e:
            raise EmbedderError(f"loudness-curve needs pyloudnorm: pip install -e '.[controls]' ({e})") from None
        self.filters = list(pyloudnorm.Meter(self.sample_rate)._filters.values())  # K-weighting: shelf, high-pass
        self.window, self.hop, self.smooth, self.device = window, hop, smooth_frames, device
        self.id = f"loudness-curve-k-sr{self.sample_rate}-w{window}-h{hop}-sg{smooth_frames}-v1"

    @property
    def config(self) -> dict:
        return {**super().config, "window": self.window, "hop_length": self.hop, "savgol_frames": self.smooth,
                "weighting": "K (BS.1770)", "floor_lufs": FLOOR_LUFS}

    def embed(self, wave: np.ndarray) -> np.ndarray:
        x = np.asarray(wave, np.float64)
        for f in self.filters:
            x = f.apply_filter(x)
        return loudness_curve(x, self.window, self.hop, self.smooth)[:, None].astype(np.float32)


def loudness_curve(weighted: np.ndarray, window: int, hop: int, smooth: int) -> np.ndarray:
    """LUFS per frame of already K-weighted samples, floored and Savitzky-Golay smoothed."""
    from scipy.signal import savgol_filter

    x = np.pad(weighted, (window // 2, window // 2))
    n = max(1, 1 + (len(x) - window) // hop)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(n) * hop
    ms = (csum[np.minimum(starts + window, len(x))] - csum[starts]) / window
    lufs = np.maximum(-0.691 + 10 * np.log10(np.maximum(ms, 1e-30)), FLOOR_LUFS)
    if n > smooth:
        lufs = savgol_filter(lufs, smooth if smooth % 2 else smooth + 1, 1)
    return lufs


def loudness_curve_factory(path: str | None = None, device: str = "cpu") -> LoudnessCurve:
    refuse_weights("loudness-curve", path)
    return LoudnessCurve(device=device)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r of two curves over their common frames from the start; None if either is constant."""
    t = min(len(a), len(b))
    x, y = np.asarray(a[:t], np.float64).ravel(), np.asarray(b[:t], np.float64).ravel()
    if t < 2:
        return None
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return None if den <= 1e-12 else float((x * y).sum() / den)


class DynamicsCorrelation(_PairedMelody):
    """Music ControlNet's dynamics correlation: mean over clips of Pearson r of the loudness curves."""

    name = "dynamics_correlation"
    output = "loudness-curve"
    higher_is_better = True  # the generated loudness follows the control's
    bounds = (-1.0, 1.0)

    def config(self) -> dict:
        return {"feature": "loudness-curve", "source": "Music ControlNet (Wu et al. 2023) dynamics correlation",
                "loudness": "BS.1770 K-weighted, 93 ms windows, 43.07 frames/s, Savitzky-Golay 1 s"}

    def pair_terms(self, prompt: np.ndarray, generated: np.ndarray) -> tuple[float, float] | None:
        r = pearson(prompt, generated)
        return None if r is None else (r, 1.0)

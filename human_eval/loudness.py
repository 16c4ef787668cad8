"""Loudness matching of the study's stimuli: ITU-R BS.1770-4 integrated loudness and true peak.

A louder clip is heard as "better", so listening-test practice (ITU-R BS.1534 / BS.1116 set-ups,
webMUSHRA, BeaqleJS) matches programme loudness before rating. Integrated loudness (K-weighting,
400 ms blocks at 75 % overlap, absolute −70 LUFS and relative −10 LU gates) comes from ``pyloudnorm``,
a maintained implementation of BS.1770-4. True peak follows BS.1770-4 Annex 2: 4× oversampling
(polyphase FIR) and the largest absolute value, in dBTP.

``match_loudness`` applies one gain that brings a clip to the target (EBU R128's −23 LUFS by default)
and, only where that gain would push the true peak over the ceiling (−1 dBTP), a look-ahead peak
limiter; the limiter takes a little loudness, so the gain is re-fitted until the result is within
``tolerance_lu`` of the target. A clip that cannot get there (silent, shorter than one gating block,
or too peaky for the ceiling) raises ``AudioError`` naming it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

from metrics.audio import AudioError

TARGET_LUFS = -23.0  # EBU R128 programme loudness
TRUE_PEAK_CEILING_DBTP = -1.0  # EBU R128 maximum true peak
LOOKAHEAD_S = 0.005  # limiter: the gain falls this long before a peak ...
RELEASE_S = 0.050  # ... and recovers over this long after it


@dataclass
class LoudnessInfo:
    """Both numbers recorded per clip: as received (``source_*``) and as stored in the study."""

    source_lufs: float
    source_true_peak_dbtp: float
    gain_db: float
    stored_lufs: float
    stored_true_peak_dbtp: float
    limited: bool  # the limiter touched the clip (its peaks would have passed the ceiling)

    def to_dict(self) -> dict:
        return asdict(self)


def integrated_loudness(wave: np.ndarray, sr: int) -> float:
    """BS.1770-4 integrated loudness in LUFS of a mono (or [samples, channels]) float clip; −inf when all gated.

    BS.1770 is defined on 400 ms blocks; a clip shorter than that (≥ 50 ms) is measured as one block of its
    own length (the mean K-weighted power of the whole clip), which is what the gated mean tends to as the
    clip shrinks.
    """
    import pyloudnorm

    x = np.asarray(wave, dtype=np.float64)
    if len(x) < int(0.05 * sr):
        raise ValueError(f"clip of {len(x) / sr:.3f} s is too short to measure (< 50 ms)")
    block = min(0.4, len(x) / sr)
    return float(pyloudnorm.Meter(sr, block_size=block).integrated_loudness(x))


def _oversampled_abs(wave: np.ndarray) -> np.ndarray:
    """|x| at 4× the rate, as [samples, 4] (each row: the sample and the three points after it)."""
    x = np.asarray(wave, dtype=np.float64)
    up = np.abs(resample_poly(x, 4, 1, axis=0))
    if up.ndim == 2:
        up = up.max(axis=1)
    up = up[: 4 * len(x)]
    return up.reshape(len(x), 4)


def true_peak_dbtp(wave: np.ndarray) -> float:
    """BS.1770-4 Annex 2 true peak: the largest |x| after 4× oversampling, in dB relative to full scale."""
    peak = float(_oversampled_abs(wave).max()) if len(wave) else 0.0
    return 20 * np.log10(peak) if peak > 0 else float("-inf")


def _limit(wave: np.ndarray, sr: int, ceiling_dbtp: float) -> np.ndarray:
    """A look-ahead peak limiter: the gain never lets an (oversampled) peak pass the ceiling.

    Per sample the gain needed is ``ceiling / peak``; a running minimum over ±look-ahead makes the gain
    fall before each peak, and a moving average (shorter than that minimum) smooths it without ever
    rising above the need at a peak. A short release average follows. Exact at the ceiling only up to the
    oversampling, so the caller re-measures.
    """
    ceiling = 10 ** (ceiling_dbtp / 20)
    need = np.minimum(1.0, ceiling / np.maximum(_oversampled_abs(wave).max(axis=1), 1e-12))
    la = max(1, int(LOOKAHEAD_S * sr))
    gain = minimum_filter1d(need, size=2 * la + 1, mode="nearest")
    gain = uniform_filter1d(gain, size=la, mode="nearest")
    rel = max(1, int(RELEASE_S * sr))
    gain = np.minimum(gain, uniform_filter1d(minimum_filter1d(gain, size=rel, mode="nearest"), size=rel, mode="nearest"))
    gain = np.minimum(gain, need)
    return wave * (gain[:, None] if wave.ndim == 2 else gain)


def match_loudness(wave: np.ndarray, sr: int, target_lufs: float = TARGET_LUFS,
                   ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP, tolerance_lu: float = 0.1,
                   path: str | Path = "clip") -> tuple[np.ndarray, LoudnessInfo]:
    """The clip at ``target_lufs`` (± ``tolerance_lu``) with its true peak at or below ``ceiling_dbtp``."""
    x = np.asarray(wave, dtype=np.float64)
    try:
        src = integrated_loudness(x, sr)
    except ValueError as e:
        raise AudioError(path, f"cannot measure loudness: {e}") from None
    if not np.isfinite(src):
        raise AudioError(path, "silent (below the −70 LUFS gate): cannot be loudness matched")
    src_tp = true_peak_dbtp(x)
    gain_db = target_lufs - src
    limited = False
    for _ in range(12):
        y = x * 10 ** (gain_db / 20)
        if true_peak_dbtp(y) > ceiling_dbtp:
            y = _limit(y, sr, ceiling_dbtp - 0.05)  # a little margin for what 4x oversampling misses
            limited = True
        got = integrated_loudness(y, sr)
        if abs(got - target_lufs) <= tolerance_lu:
            break
        gain_db += target_lufs - got
        if gain_db - (target_lufs - src) > 20:  # the limiter eats every extra dB: hopelessly peaky
            break
    tp = true_peak_dbtp(y)
    if abs(got - target_lufs) > tolerance_lu or tp > ceiling_dbtp + 1e-6:
        raise AudioError(path, f"cannot reach {target_lufs:g} LUFS under a {ceiling_dbtp:g} dBTP ceiling "
                               f"(source {src:.1f} LUFS, true peak {src_tp:.1f} dBTP); lower the target loudness")
    return y.astype(np.float32), LoudnessInfo(src, src_tp, float(gain_db), got, tp, limited)

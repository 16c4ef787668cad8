"""Audio → what the matchers compare: loudness normalization and (sub-frame phase) featurization.

Why normalize before tokenizing: a copy is often an excerpt at another gain; the semantic
tokenizer is not gain-invariant, the copy must be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metrics.memorization.registry import MemorizationError, Tokenizer


@dataclass(frozen=True)
class LevelConfig:
    """Loudness normalization applied to every clip (generated and training) before tokenizing.

    ``mode``: ``agc`` divides each sample by the RMS of the ``window_s`` around it (short-term level),
    ``rms`` by the whole clip's RMS, ``none`` leaves the audio as is; the level is brought to
    ``ref_dbfs``. Why ``agc``: a copy is usually an excerpt, whose whole-clip RMS differs from its
    source's, while the short-term level inside the excerpt is exactly the source's times the gain —
    so a gain change cancels exactly, away from the excerpt's first/last ``window_s / 2``. Why a low
    ``ref_dbfs`` (−50): the reference log-mel tokenizer floors band energies at 1e-5, so quiet detail
    more than ~50 dB below the short-term level (a 40 dB-SNR noise floor, reverb tails) sinks under
    that floor instead of moving tokens. ``floor_db``: short-term levels more than this far below the
    clip RMS are not amplified (silence stays silence)."""

    mode: str = "agc"
    ref_dbfs: float = -50.0
    window_s: float = 1.0
    floor_db: float = 60.0

    def __post_init__(self):
        if self.mode not in ("agc", "rms", "none"):
            raise MemorizationError(f"level mode must be agc, rms or none, got {self.mode!r}")
        if self.window_s <= 0:
            raise MemorizationError(f"level window must be > 0 s, got {self.window_s}")


def normalize_level(wave: np.ndarray, sr: int, level: LevelConfig = LevelConfig()) -> np.ndarray:
    """Apply :class:`LevelConfig` to a mono float wave (float32 out)."""
    w = np.asarray(wave, dtype=np.float64)
    if level.mode == "none" or len(w) == 0:
        return w.astype(np.float32)
    ref = 10 ** (level.ref_dbfs / 20)
    clip_ms = float(np.mean(w * w))
    if clip_ms <= 0:
        return w.astype(np.float32)  # digital silence: nothing to normalize
    floor = clip_ms * 10 ** (-level.floor_db / 10)
    if level.mode == "rms":
        return (w * ref / math.sqrt(clip_ms)).astype(np.float32)
    half = max(1, int(round(level.window_s * sr / 2)))
    cs = np.concatenate([[0.0], np.cumsum(w * w)])
    i = np.arange(len(w))
    lo, hi = np.clip(i - half, 0, len(w)), np.clip(i + half + 1, 0, len(w))
    ms = (cs[hi] - cs[lo]) / (hi - lo)
    return (w * ref / np.sqrt(np.maximum(ms, floor))).astype(np.float32)


def tokenize_clip(wave: np.ndarray, sr: int, tokenizer: Tokenizer, level: LevelConfig = LevelConfig(),
                  phases: int = 1) -> np.ndarray | list[np.ndarray]:
    """Level-normalized tokens of one clip; with ``phases`` P > 1, P tokenizations, the p-th starting
    p/P of a token frame later (offset search below one frame: a copy cut at a fractional frame is
    matched at the nearest phase, within 1/(2P) frame, instead of straddling two frames)."""
    if phases < 1:
        raise MemorizationError(f"phases must be >= 1, got {phases}")
    w = normalize_level(wave, sr, level)
    if phases == 1:
        return np.asarray(tokenizer.tokenize(w, sr), dtype=np.int64)
    frame = sr / int(tokenizer.frame_rate)
    return [np.asarray(tokenizer.tokenize(w[int(round(p * frame / phases)):], sr), dtype=np.int64) for p in range(phases)]


def tokenize_dir(directory: str | Path, tokenizer: Tokenizer, on_error: str = "raise", level: LevelConfig = LevelConfig(),
                 phases: int = 1) -> tuple[dict[str, np.ndarray | list[np.ndarray]], list[str]]:
    """Tokenize every clip of a folder (decoded by ``metrics.audio.load_dir``); returns tokens by id and skip notes."""
    from metrics.audio import load_dir

    report = load_dir(directory, on_error=on_error)
    if not report.clips:
        raise MemorizationError(f"{directory}: no usable audio clips" +
                                (f" ({len(report.skipped)} skipped)" if report.skipped else ""))
    toks = {c.id: tokenize_clip(c.wave, c.sr, tokenizer, level, phases) for c in report.clips}
    return toks, [f"{s.path}: {s.reason}" for s in report.skipped]


def embed_clip(wave: np.ndarray, sr: int, embedder, frame_rate: float, level: LevelConfig = LevelConfig(),
               phases: int = 1) -> np.ndarray | list[np.ndarray]:
    """Level-normalized ``[frames, dim]`` embeddings of one clip (resampled to the embedder's rate);
    with ``phases`` P > 1, P embeddings, the p-th starting p/P of a frame hop later (as :func:`tokenize_clip`)."""
    from metrics.audio import resample

    if phases < 1:
        raise MemorizationError(f"phases must be >= 1, got {phases}")
    w = normalize_level(wave, sr, level)
    if sr != embedder.sample_rate:
        w, sr = resample(w, sr, embedder.sample_rate), embedder.sample_rate
    hop = sr / frame_rate
    out = [np.asarray(embedder.embed(w[int(round(p * hop / phases)):]), dtype=np.float64) for p in range(phases)]
    return out[0] if phases == 1 else out

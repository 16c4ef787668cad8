"""Chroma tokens: the melody as the coarse stage hears it, one pitch class per 40 ms semantic frame.

MusicLM conditions on melody only through the semantic stage (melody-embedding tokens → semantic
tokens → coarse stage). In the tiny model that route does not reach the audio (issue #31: paired
chroma gain −0.028 [−0.088, 0.030]), so the coarse stage also gets the melody directly, as MusicGen's
melody model does (Copet et al. 2023, §3.3: the argmax chromagram of the reference as conditioning).
A deviation from the paper, recorded in docs/protocol.md.

Each token is Music ControlNet's melody representation (``metrics.control.melody.ControlNetChroma``:
high-pass at middle C, 12-bin STFT chroma, argmax, voiced within 40 dB of the loudest frame) — the same
feature ``melody_accuracy`` scores — read at the centre of each 25 Hz frame: the pitch class 0..11,
or 12 where the frame is unvoiced. A melody shorter than the clip is looped, as the melody embedding does.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from metrics.audio import resample
from metrics.errors import InputError
from musiclm_ref.stages import CHROMA_CLASSES

UNVOICED = CHROMA_CLASSES - 1
FRAME_RATE = 25


@lru_cache(maxsize=1)
def _extractor():
    from metrics.control.melody import ControlNetChroma

    return ControlNetChroma()


def chroma_tokens(wave: np.ndarray, sr: int, frames: int) -> np.ndarray:
    """int64 [frames]: the argmax pitch class (0..11) of ``wave`` at each 25 Hz frame's centre, 12 if unvoiced."""
    ext = _extractor()
    need = int(np.ceil(frames * sr / FRAME_RATE))
    w = np.asarray(wave, np.float32)
    if w.ndim != 1 or w.size == 0 or not np.isfinite(w).all():
        raise InputError(f"melody must be a non-empty, finite mono wave, got shape {w.shape}")
    if len(w) < need:  # loop a short melody to fill the clip
        w = np.tile(w, -(-need // len(w)))
    feats = ext.embed(resample(w[:need], sr, ext.sample_rate))  # [n, 13] at ext.frame_rate
    centres = ((np.arange(frames) + 0.5) / FRAME_RATE * ext.frame_rate).astype(int)
    rows = feats[np.minimum(centres, len(feats) - 1)]
    return np.where(rows[:, 12] > 0.5, rows[:, :12].argmax(axis=1), UNVOICED).astype(np.int64)

"""Validated sequences and sliding windows over them (token sequences or embedding frames)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from metrics.memorization.registry import FRAME_RATE, MemorizationError


def check_tokens(seqs: Mapping[str, np.ndarray], vocab_size: int, what: str, min_len: int) -> dict[str, np.ndarray]:
    """Validate a set of token sequences: non-empty, 1-D integer, ids in the vocabulary, long enough."""
    if not seqs:
        raise MemorizationError(f"{what}: empty set (no token sequences)")
    out = {}
    for cid, s in seqs.items():
        a = np.asarray(s)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise MemorizationError(f"{what}/{cid}: tokens must be a 1-D integer array, got {a.dtype} {a.shape}")
        if len(a) < min_len:
            raise MemorizationError(f"{what}/{cid}: {len(a)} tokens is shorter than a window of {min_len} tokens "
                                    f"({min_len / FRAME_RATE:g} s at {FRAME_RATE} Hz; shorter clips need a shorter "
                                    "window: --window-s)")
        if len(a) and (a.min() < 0 or a.max() >= vocab_size):
            bad = int(a.max()) if a.max() >= vocab_size else int(a.min())
            raise MemorizationError(f"{what}/{cid}: token id {bad} outside the vocabulary [0, {vocab_size}) "
                                    "(vocabulary mismatch between tokenizer and histograms?)")
        out[str(cid)] = a.astype(np.int64)
    return out


def check_frames(seqs: Mapping[str, np.ndarray], dim: int | None, what: str, min_len: int, frame_rate: float) -> dict[str, np.ndarray]:
    """Validate embedding sequences ``[frames, dim]``: finite, one dimension for all, long enough."""
    if not seqs:
        raise MemorizationError(f"{what}: empty set (no embedding sequences)")
    out = {}
    for cid, s in seqs.items():
        a = np.asarray(s, dtype=np.float64)
        if a.ndim != 2 or (dim is not None and a.shape[1] != dim):
            raise MemorizationError(f"{what}/{cid}: embeddings must be [frames, {dim or 'dim'}], got shape {a.shape}")
        dim = a.shape[1]
        if len(a) < min_len:
            raise MemorizationError(f"{what}/{cid}: {len(a)} frames is shorter than a window of {min_len} frames "
                                    f"({min_len / frame_rate:g} s at {frame_rate:g} Hz; shorter clips need a shorter "
                                    "window: --window-s)")
        if not np.isfinite(a).all():
            raise MemorizationError(f"{what}/{cid}: embedding contains NaN/Inf")
        out[str(cid)] = a
    return out


@dataclass
class Windows:
    """Sliding windows over named sequences: window ``i`` is clip ``ids[clip[i]]`` from ``offset[i]``.

    ``tokens [N, W]`` holds token windows (None for embedding windows); ``vec [N, D]`` is what a
    matcher's bound works on (window-mean centroid, or unit-norm mean embedding)."""

    ids: list[str]
    clip: np.ndarray
    offset: np.ndarray
    tokens: np.ndarray | None
    vec: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.clip)

    def take(self, idx: np.ndarray) -> Windows:
        return Windows(self.ids, self.clip[idx], self.offset[idx], None if self.tokens is None else self.tokens[idx],
                       None if self.vec is None else self.vec[idx])


def window_starts(n: int, window: int, hop: int) -> np.ndarray:
    """Starts every ``hop`` frames; the last window is flush with the end of the sequence."""
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] != n - window:
        starts.append(n - window)
    return np.asarray(starts, dtype=np.int64)


def cut_windows(seqs: Mapping[str, np.ndarray], window: int, hop: int, frames: Mapping[str, np.ndarray] | None = None) -> Windows:
    """Windows of ``window`` tokens every ``hop`` tokens (last one flush with the end).

    ``frames``: per clip a ``[T, D]`` sequence (centroids of the tokens, or embedding frames) whose
    window means become ``vec`` — by cumulative sums, O(T·D) per clip instead of O(T·W·D)."""
    if window < 1 or hop < 1:
        raise MemorizationError(f"window and hop must be >= 1 frame, got window={window}, hop={hop}")
    ids, clips, offs, toks, vecs = list(seqs), [], [], [], []
    for i, cid in enumerate(ids):
        s = np.asarray(seqs[cid])
        st = window_starts(len(s), window, hop)
        clips.append(np.full(len(st), i))
        offs.append(st)
        if s.ndim == 1 and np.issubdtype(s.dtype, np.integer):
            toks.append(np.lib.stride_tricks.sliding_window_view(s, window)[st])
        if frames is not None:
            f = np.asarray(frames[cid], dtype=np.float64)
            cs = np.concatenate([np.zeros((1, f.shape[1])), np.cumsum(f, axis=0)])
            vecs.append((cs[st + window] - cs[st]) / window)
    return Windows(ids, np.concatenate(clips), np.concatenate(offs), np.concatenate(toks) if toks else None,
                   np.concatenate(vecs) if vecs else None)


def entropy_bits(tokens: np.ndarray) -> float:
    """Shannon entropy (bits) of the empirical token distribution of one sequence."""
    _, counts = np.unique(np.asarray(tokens), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def phases_of(generated: Mapping[str, np.ndarray | Sequence[np.ndarray]]) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, float]]]:
    """Generated sequences → one sequence per (clip, sub-frame phase), and key → (clip id, phase in frames).

    A clip may give a list of phase featurizations (entry p starts p/P of a frame later, see
    :func:`metrics.memorization.levels.tokenize_clip`); a single array is phase 0."""
    seqs, meta = {}, {}
    for cid, v in generated.items():
        ph = list(v) if isinstance(v, (list, tuple)) else [v]
        for p, s in enumerate(ph):
            key = str(cid) if len(ph) == 1 else f"{cid}#{p}"
            seqs[key] = s
            meta[key] = (str(cid), p / len(ph))
    return seqs, meta


def first_phase(generated: Mapping[str, np.ndarray | Sequence[np.ndarray]]) -> dict[str, np.ndarray]:
    """Phase 0 of every clip (to validate with errors that name the clip, not its phase)."""
    return {cid: (v[0] if isinstance(v, (list, tuple)) and v else v) for cid, v in generated.items()}

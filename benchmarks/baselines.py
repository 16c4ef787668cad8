"""Baselines that need no trained generator.

``retrieval`` is a Mubert-like system: it does not synthesize anything, it picks the training clips
whose captions best match the prompt (TF-IDF cosine over words) and assembles loops cut from them.
It is the paper's point of comparison for "text → existing music" systems, and a useful sanity
check: it should score well on FAD (it *is* real corpus audio) and less well on MCC/KLD when the
caption asks for a combination the training set lacks.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from metrics.audio import load_audio, save_audio
from metrics.musiccaps import load_captions

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class TfidfIndex:
    """A tiny TF-IDF index over captions (no external dependency, deterministic)."""

    def __init__(self, ids: list[str], texts: list[str]):
        if not ids:
            raise ValueError("retrieval baseline: the training corpus has no captions")
        self.ids = ids
        docs = [Counter(_words(t)) for t in texts]
        df = Counter(w for d in docs for w in d)
        n = len(docs)
        self.idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}
        self.vectors = [self._vec(d) for d in docs]

    def _vec(self, counts: Counter) -> dict[str, float]:
        v = {w: c * self.idf.get(w, 0.0) for w, c in counts.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {w: x / norm for w, x in v.items()}

    def query(self, text: str, k: int = 2) -> list[tuple[str, float]]:
        q = self._vec(Counter(_words(text)))
        scores = [sum(q.get(w, 0.0) * x for w, x in v.items()) for v in self.vectors]
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], self.ids[i]))[:k]
        return [(self.ids[i], scores[i]) for i in order]


def assemble_loops(waves: list[np.ndarray], sr: int, seconds: float, loop_s: float = 2.0, fade_s: float = 0.01) -> np.ndarray:
    """Alternate ``loop_s`` loops cut from the start of each source, with short crossfades."""
    n_out, n_loop, n_fade = int(seconds * sr), int(loop_s * sr), int(fade_s * sr)
    loops = []
    for w in waves:
        seg = w[:n_loop]
        loops.append(np.pad(seg, (0, n_loop - len(seg))))
    out = np.zeros(n_out + n_loop, np.float32)
    ramp = np.linspace(0, 1, n_fade, dtype=np.float32)
    pos, i = 0, 0
    while pos < n_out:
        seg = loops[i % len(loops)].copy()
        seg[:n_fade] *= ramp
        seg[-n_fade:] *= ramp[::-1]
        out[pos : pos + n_loop] += seg
        pos += n_loop - n_fade
        i += 1
    return out[:n_out]


def retrieval_generate(
    train_dir: str | Path,
    captions: dict[str, str],
    out_dir: str | Path,
    seconds: float = 10.0,
    sample_rate: int = 24000,
    k: int = 2,
) -> dict[str, list[str]]:
    """Write ``out_dir/<id>.wav`` for each caption; return the training ids each one used."""
    train_dir = Path(train_dir)
    caps = load_captions(train_dir / "captions.csv", require_all_columns=False)
    index = TfidfIndex(list(caps.index), list(caps["caption"]))
    used: dict[str, list[str]] = {}
    cache: dict[str, np.ndarray] = {}
    for cid, text in sorted(captions.items()):
        picks = [tid for tid, _ in index.query(text, k=k)]
        waves = []
        for tid in picks:
            if tid not in cache:
                cache[tid] = load_audio(next(train_dir.glob(f"{tid}.*")), sr=sample_rate).wave
            waves.append(cache[tid])
        save_audio(Path(out_dir) / f"{cid}.wav", assemble_loops(waves, sample_rate, seconds), sample_rate)
        used[cid] = picks
    return used

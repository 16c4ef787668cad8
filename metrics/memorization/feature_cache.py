"""The audit's per-clip features (tokens, window embeddings) through the verified embedding cache.

Why: featurizing every generated, training, null and planted clip at every sub-frame phase is most of a
``memorization audit``; a run killed part-way (SIGKILL, an OOM kill) and rerun on the same cache
recomputes only the clips that were not cached yet, and — the features being the same bytes — ends with
exactly the uninterrupted run's ``memorization.json`` and ``matches.csv``. Entries are keyed like the
other commands' (``EmbeddingCache.key``): the sha256 of the clip's samples (not a file: null clips and
planted copies are excerpts and altered copies made in memory), the model id (tokenizer or embedder,
weights included) and the featurization settings (level normalization, frame rate, phase); the entry's
code version names the model's code and :data:`FEATURE_VERSION`, so a change here is a miss, never a
stale number. One entry per phase: phases differ in length.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from metrics.cache import EmbeddingCache, array_sha256
from metrics.memorization.levels import LevelConfig

FEATURE_VERSION = "memorization-features.v1"  # bump when levels.tokenize_clip / embed_clip change their output
Features = np.ndarray | list[np.ndarray]


def cached_features(fn: Callable[[np.ndarray, int, int], Features], cache: EmbeddingCache | None, model_id: str,
                    code: str, level: LevelConfig, frame_rate: float) -> Callable[[np.ndarray, int, int], Features]:
    """``fn`` (``(wave, sr, phases)`` → features) reading and writing ``cache`` (``fn`` itself when None)."""
    if cache is None:
        return fn
    code = f"{code}|{FEATURE_VERSION}"
    settings = {"level": [level.mode, level.ref_dbfs, level.window_s, level.floor_db], "frame_rate": frame_rate}

    def run(wave: np.ndarray, sr: int, phases: int) -> Features:
        content = array_sha256(np.asarray(wave))
        keys = [EmbeddingCache.key(content, model_id, json.dumps({**settings, "sr": sr, "phases": phases, "phase": p},
                                                                 sort_keys=True)) for p in range(phases)]
        got = [cache.get(k, code) for k in keys]
        if all(g is not None for g in got):
            return got[0] if phases == 1 else got
        out = fn(wave, sr, phases)
        for k, part in zip(keys, [out] if phases == 1 else out):
            cache.put(k, part, code)
        return out

    return run

"""The measured detection table: plant altered copies of training excerpts, audit them, count the hits.

A planted copy counts as *detected* only when the audit reports it against the right training clip
at the right lag (|train offset − generated offset − true start| ≤ ``lag_tol_s``), at the τ the
audit calibrated on null clips — the same decision the audit makes for generated clips.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from metrics.intervals import wilson_ci
from metrics.memorization.alter import ALTERATIONS

Clips = Mapping[str, tuple[np.ndarray, int]]
LAG_TOL_S = 0.25


def plant_copies(train: Clips, length_s: float, n_per: int, seed: int = 0, alterations: Mapping | None = None,
                 frame_rate: float = 25.0) -> tuple[dict[str, tuple[np.ndarray, int]], dict[str, tuple[str, str, float]]]:
    """``n_per`` altered excerpts of ``length_s`` per alteration, from seeded training clips and starts.

    Starts are whole frames of ``frame_rate`` (plus the alteration's own offset, half a frame for the
    off-grid shift). Returns the planted clips by id and the truth: id → (alteration, train id, start s)."""
    alterations = ALTERATIONS if alterations is None else alterations
    rng = np.random.default_rng(seed)
    ids = sorted(train)
    plants, truth = {}, {}
    for name, (fn, frames_off) in alterations.items():
        for k in range(n_per):
            src = ids[int(rng.integers(0, len(ids)))]
            wave, sr = train[src]
            n = int(round(length_s * sr))
            frame = sr / frame_rate
            room = len(wave) - n - int(np.ceil(frame))
            if room <= 0:
                continue
            start = int(round(int(rng.integers(0, int(room // frame) + 1)) * frame + frames_off * frame))
            pid = f"plant_{name}_{k:02d}"
            plants[pid] = (fn(np.asarray(wave[start : start + n], np.float32), sr, rng), sr)
            truth[pid] = (name, src, start / sr)
    return plants, truth


def detection_table(matches: list[dict], truth: Mapping[str, tuple[str, str, float]], lag_tol_s: float = LAG_TOL_S) -> dict:
    """Per alteration: planted copies, how many were detected (right clip and lag), the rate and its Wilson 95 % CI,
    and how many were reported at all (any training clip, any lag)."""
    by_gen: dict[str, list[dict]] = {}
    for m in matches:
        by_gen.setdefault(m["generated_id"], []).append(m)
    table: dict[str, dict] = {}
    for pid, (alt, src, start) in sorted(truth.items()):
        rows = by_gen.get(pid, [])
        hit = any(m["train_id"] == src and abs(m["train_offset_s"] - m["gen_offset_s"] - start) <= lag_tol_s + 1e-9
                  for m in rows)
        t = table.setdefault(alt, {"n": 0, "detected": 0, "reported": 0})
        t["n"] += 1
        t["detected"] += int(hit)
        t["reported"] += int(bool(rows))
    for t in table.values():
        t["rate"] = t["detected"] / t["n"]
        t["ci95"] = list(wilson_ci(t["detected"], t["n"]))
    order = list(ALTERATIONS) + sorted(set(table) - set(ALTERATIONS))
    return {k: table[k] for k in order if k in table}

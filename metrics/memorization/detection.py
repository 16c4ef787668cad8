"""The measured detection table: plant altered copies of training excerpts, audit them, count the hits.

A planted copy counts as *detected* only when the audit reports it against the right training clip
at the right lag (|train offset − generated offset − true start| ≤ ``lag_tol_s``), at the τ the
audit calibrated on null clips — the same decision the audit makes for generated clips.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from metrics.intervals import wilson_ci
from metrics.memorization.alter import ALTERATIONS

Clips = Mapping[str, tuple[np.ndarray, int]]
LAG_TOL_S = 0.25


def plant_copies(train: Clips, length_s: float, n_per: int, seed: int = 0, alterations: Mapping | None = None,
                 frame_rate: float = 25.0, min_s: float = 0.0,
                 usable: Callable[[str, np.ndarray, int], bool] | None = None) -> tuple[dict[str, tuple[np.ndarray, int]],
                                                                       dict[str, tuple[str, str, float]], dict]:
    """``n_per`` altered copies per alteration, from seeded training clips and starts: what the data allow.

    * ``excerpt`` — a training clip with room for an excerpt of ``length_s`` at a whole-frame start of
      ``frame_rate`` (plus the alteration's own offset, half a frame for the off-grid shift): that excerpt.
    * ``whole clip`` — no such room (training clips as long as the generated ones, the MusicCaps 10 s / 10 s
      shape, or shorter): the whole training clip, started at the alteration's sub-frame offset.

    Only clips of at least ``min_s`` (the matcher's window: shorter copies give it nothing to compare) are
    sources; an altered copy shorter than that (a tempo change), or one ``usable(id, wave, sr)`` rejects (the
    matcher's features of it are a frame short of a window), is skipped. Returns the planted
    clips by id, the truth (id → (alteration, train id, start s)) and a report of what was planted: counts per
    mode, the copies' length range, the skips by reason, and ``why_empty`` when nothing could be planted."""
    alterations = ALTERATIONS if alterations is None else alterations
    rng = np.random.default_rng(seed)
    ids = sorted(train)
    long_enough = [c for c in ids if len(train[c][0]) / train[c][1] >= min_s]
    plants, truth = {}, {}
    modes: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for name, (fn, frames_off) in alterations.items():
        for k in range(n_per if long_enough else 0):
            src = long_enough[int(rng.integers(0, len(long_enough)))]
            wave, sr = train[src]
            n = int(round(length_s * sr))
            frame = sr / frame_rate
            room = len(wave) - n - int(np.ceil(frame))
            if room > 0:
                mode = "excerpt"
                start = int(round(int(rng.integers(0, int(room // frame) + 1)) * frame + frames_off * frame))
            else:  # no room to slide an excerpt: the whole clip at the sub-frame offset
                mode, start = "whole clip", int(round(frames_off * frame))
                n = len(wave) - start
            copy = fn(np.asarray(wave[start : start + n], np.float32), sr, rng)
            pid = f"plant_{name}_{k:02d}"
            reason = (f"{name}: the altered copy is shorter than the matcher's {min_s:g} s window" if len(copy) < min_s * sr
                      else f"{name}: the copy featurizes shorter than the matcher's window"
                      if usable is not None and not usable(pid, copy, sr) else None)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            plants[pid] = (copy, sr)
            truth[pid] = (name, src, start / sr)
            modes[mode] = modes.get(mode, 0) + 1
    lengths = [len(w) / sr for w, sr in plants.values()]
    why = None
    if not plants:
        why = ("no planted copies requested" if not n_per or not alterations else
               f"no training clip is long enough to plant a copy: the longest is "
               f"{max(len(w) / sr for w, sr in train.values()):.2f} s, a copy needs the matcher's {min_s:g} s window" if not long_enough else
               "every copy was shorter than the matcher's window (see skipped)")
    report = {"requested": n_per * len(alterations), "planted": len(plants), "modes": modes,
              "copy_s": [round(min(lengths), 3), round(max(lengths), 3)] if lengths else None,
              "target_s": round(float(length_s), 3), "min_s": round(float(min_s), 3), "skipped": skipped, "why_empty": why}
    return plants, truth, report


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

"""Rhythm control adherence: beat and downbeat F-measure, tempo accuracy acc1 / acc2.

Each metric pairs a clip's control (side ``"reference"``: the beats, downbeats or tempo tracked in the reference
clip, or read from a file) with the same feature tracked in the generated clip of the same id
(``metrics.control.beats``), scores every pair, and reports the mean over pairs with per-clip values (so BCa
intervals and paired tests resample clips like every paired metric).

- **F-measure** (``beat_f``, ``downbeat_f``): ``mir_eval.beat.f_measure``'s definition, own code: a maximum
  one-to-one matching of reference and estimated events with ``|ref − est| ≤ 0.07 s`` (hits found the way
  ``mir_eval.util._fast_hit_windows`` finds them), precision = matches / estimated, recall = matches / reference,
  F = 2PR / (P + R), and 0 when either list is empty or nothing matches. Events are *not* trimmed before 5 s
  (``trim`` = 0): ``mir_eval.beat.evaluate`` trims because a tracker settles in the first seconds of a full track,
  but control clips are ~10 s long and both sides go through the same tracker; ``trim=5.0`` reproduces
  ``mir_eval.beat.evaluate``. The matching is the greedy earliest-hit assignment, which is maximum for events on a
  line with a fixed window (each estimate's hits are a contiguous run of the sorted references whose ends move
  forward with the estimate), so it equals mir_eval's Hopcroft–Karp matching.
- **Tempo accuracy** (``tempo_acc1``, ``tempo_acc2``; Gouyon et al. 2006, the MIREX tempo task): acc1 = 1 when the
  estimate is within 4 % of the control's tempo (``|est − ref| ≤ 0.04·ref``, mir_eval.tempo's ``≤ tol``
  relative error); acc2 also accepts 2, 3, 1/2 and 1/3 times the control's tempo (octave / metrical-level errors),
  each within 4 % of the scaled tempo.
"""

from __future__ import annotations

import numpy as np

from metrics.control.beats import event_times
from metrics.errors import InputError
from metrics.melody_adherence import _PairedMelody

F_WINDOW = 0.07  # s: mir_eval.beat.f_measure's f_measure_threshold (MIREX beat tracking)
TEMPO_TOLERANCE = 0.04  # relative: Gouyon et al. 2006, MIREX tempo estimation
ACC2_FACTORS = (1.0, 2.0, 3.0, 1 / 2, 1 / 3)  # Gouyon et al. 2006: the tempo, double, triple, half, third


def _events(x: np.ndarray, what: str) -> np.ndarray:
    t = np.asarray(x, np.float64).reshape(-1)
    if not np.isfinite(t).all():
        raise InputError(f"{what}: event times contain NaN/Inf")
    return np.sort(t)


def trim_events(times: np.ndarray, min_time: float = 5.0) -> np.ndarray:
    """Events at or after ``min_time`` s (``mir_eval.beat.trim_beats``)."""
    return times[times >= min_time]


def matched_events(reference: np.ndarray, estimated: np.ndarray, window: float = F_WINDOW) -> int:
    """Size of the maximum one-to-one matching of events within ``window`` s (``mir_eval.util.match_events``)."""
    ref, est = _events(reference, "reference"), _events(estimated, "estimated")
    left = np.searchsorted(ref, est - window, side="left")  # ref[left:right] are the hits of each estimate
    right = np.searchsorted(ref, est + window, side="right")
    matched, free = 0, 0  # free: the first reference not yet matched nor passed
    for lo, hi in zip(left, right):
        free = max(free, int(lo))
        if free < hi:
            matched += 1
            free += 1
    return matched


def f_measure(reference: np.ndarray, estimated: np.ndarray, window: float = F_WINDOW, trim: float = 0.0) -> float:
    """Beat F-measure of estimated against reference event times (s), ``mir_eval.beat.f_measure``'s definition."""
    ref, est = _events(reference, "reference"), _events(estimated, "estimated")
    if trim:
        ref, est = trim_events(ref, trim), trim_events(est, trim)
    if not len(ref) or not len(est):
        return 0.0
    m = matched_events(ref, est, window)
    precision, recall = m / len(est), m / len(ref)
    return 0.0 if precision == 0 and recall == 0 else 2 * precision * recall / (precision + recall)


def tempo_accuracy(reference_bpm: float, estimated_bpm: float, tolerance: float = TEMPO_TOLERANCE,
                   factors: tuple[float, ...] = (1.0,)) -> float:
    """1.0 when ``estimated_bpm`` is within ``tolerance`` (relative) of ``f · reference_bpm`` for a factor ``f``, else 0.0.

    ``factors=(1,)`` is acc1, ``ACC2_FACTORS`` acc2. An estimate of 0 (no tempo found) is never accurate.
    """
    ref, est = float(reference_bpm), float(estimated_bpm)
    if not np.isfinite(ref) or ref <= 0:
        raise InputError(f"tempo accuracy: the control's tempo must be a positive bpm, got {reference_bpm!r}")
    if not np.isfinite(est) or est <= 0:
        return 0.0
    return float(any(abs(f * ref - est) / (f * ref) <= tolerance for f in factors))


# ----------------------------------------------------------------------------- Metrics


class _MeanOverPairs(_PairedMelody):
    """A paired control metric whose value is the mean of one score per (control, generated) pair."""

    higher_is_better = True  # F-measures and accuracies: a larger share of the control is followed
    bounds = (0.0, 1.0)

    def score(self, control: np.ndarray, generated: np.ndarray) -> float | None:
        raise NotImplementedError

    def pair_terms(self, prompt: np.ndarray, generated: np.ndarray) -> tuple[float, float] | None:
        s = self.score(prompt, generated)
        return None if s is None else (s, 1.0)


class BeatF(_MeanOverPairs):
    """Beat F-measure (±70 ms, mir_eval) of the generated clip's tracked beats against the control's beats."""

    name = "beat_f"
    output = "madmom-beats"
    events = "beats"

    def __init__(self, window: float = F_WINDOW, trim: float = 0.0, n_boot: int = 1000, seed: int = 0):
        self.window, self.trim = window, trim
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        return {"feature": self.output, "events": self.events, "window_s": self.window, "trim_s": self.trim,
                "source": "mir_eval.beat.f_measure"}

    def score(self, control: np.ndarray, generated: np.ndarray) -> float:
        return f_measure(event_times(control), event_times(generated), self.window, self.trim)


class DownbeatF(BeatF):
    """Downbeat F-measure: the same F-measure over the downbeats (first beats of the bars)."""

    name = "downbeat_f"
    output = "madmom-downbeats"
    events = "downbeats"


class TempoAcc1(_MeanOverPairs):
    """Share of clips whose tracked tempo is within 4 % of the control's tempo (Gouyon et al. 2006's accuracy 1)."""

    name = "tempo_acc1"
    output = "madmom-tempo"
    factors: tuple[float, ...] = (1.0,)

    def __init__(self, tolerance: float = TEMPO_TOLERANCE, n_boot: int = 1000, seed: int = 0):
        self.tolerance = tolerance
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        return {"feature": self.output, "tolerance": self.tolerance, "factors": [round(f, 6) for f in self.factors],
                "source": "Gouyon et al. 2006 / MIREX tempo"}

    def score(self, control: np.ndarray, generated: np.ndarray) -> float | None:
        """None (the pair is skipped and listed) when the control clip has no tempo: nothing to adhere to."""
        ref, est = np.asarray(control, np.float64).reshape(-1), np.asarray(generated, np.float64).reshape(-1)
        if ref.size != 1 or est.size != 1:
            raise InputError(f"{self.name}: a tempo is one bpm per clip, got {ref.size} and {est.size} values")
        return tempo_accuracy(ref[0], est[0], self.tolerance, self.factors) if ref[0] > 0 else None


class TempoAcc2(TempoAcc1):
    """Like acc1, but a tempo within 4 % of 2, 3, 1/2 or 1/3 times the control's also counts (metrical-level errors)."""

    name = "tempo_acc2"
    factors = ACC2_FACTORS

"""τ calibration, counted where the false alarms are counted.

* :func:`calibrate_tau` — pairs: τ from the empirical quantile of negative-pair costs. Right for the
  paper's sweep, where each continuation is compared with exactly one target (one pair = one clip).
* :func:`calibrate_clips` — the audit: a generated clip is reported when its *minimum* cost over
  the whole training set is below τ, so τ is a quantile of the minima of *null clips* (audio known
  not to be in the training set) over the same training set. A per-pair rate would not bound this:
  with N training windows a clip gets N chances, and the per-clip false-alarm rate of a per-pair τ
  grows toward 1 with N. The measured per-clip rate on held-out nulls comes with a Wilson interval.

Two rules, chosen by ``confidence`` (``--tau-confidence``):

* ``confidence`` γ in (0, 1) (default :data:`DEFAULT_TAU_CONFIDENCE`): τ is chosen so that, with
  probability ≥ γ over the draw of the calibration nulls, the per-clip false-alarm rate of a new
  exchangeable null is ≤ fpr — a bound that holds across splits, not only on average over them. With
  n calibration minima s_(1) ≤ … ≤ s_(n), s_(j) lies below the fpr-quantile exactly when at least j of
  them do, so τ = s_(j) with the largest j such that P(Binomial(n, fpr) ≥ j) ≥ γ (distribution-free; at
  fpr 1 % and γ 95 % it needs n ≥ 299). With fewer nulls (n ≥ 5) the lower tail is a normal fit and τ its
  one-sided lower tolerance bound: τ = min(s_(1), mean − k·sd), k = t'_γ(n − 1, z_{1−fpr}·√n)/√n (noncentral
  t; NIST/SEMATECH e-Handbook 7.2.6.3), at least 1e-6 so exact copies still count; where that bound is ≤ 0
  (no cost can be) the same bound of a log-normal fit (:func:`tolerance_tau`). ``tail`` says which
  ("empirical-confident", "normal-tolerance" or "lognormal-tolerance").
* ``confidence`` None (the earlier protocol, expected rate only): with exchangeable nulls a new null
  falls below s_(j) with probability j/(n+1), so τ = s_(j) with j = ⌊fpr·(n+1)⌋; when that is 0 (fewer
  than 1/fpr − 1 nulls) the lower tail is extrapolated with a normal fit of the minima (median and
  1.4826·MAD): τ = min(s_(1), median + z_fpr·σ), at least 1e-6. That τ holds the rate only on average
  over calibration draws: measured across rotations of a real soundtrack it reported up to 7/232 novel
  clips in one split (docs/protocol.md, "Memorization").

Searched windows (``search_correction``, default on): a leave-one-out null is searched against the training set
less its own recording (M'ᵢ windows), an audited clip against all of it (M windows), so the null minimum is a
minimum over fewer chances and τ set at ``fpr`` on it over-alarms. A minimum over M windows is, in law, the
smallest of M/M' minima over M' (exactly so for M/M' disjoint blocks of equal law; Gumbel's max-of-n scaling,
Coles, *An Introduction to Statistical Modeling of Extreme Values*, 2001, §3.1), so P(min over M ≥ τ) =
P(min over M' ≥ τ)^(M/M'), and a per-clip rate ``fpr`` needs the null level 1 − (1 − fpr)^(M'ᵢ/M)
(:func:`null_level`: their mean over the calibration nulls, Hoeffding 1956 for the binomial rank). Every rule
above then runs at that level instead of ``fpr``. Nulls from a ``--null`` folder search all M windows: level
``fpr``, nothing changes.

With fewer than 5 calibration nulls no tail is fitted and τ is their smallest minimum (guarantee 1/(n+1)).
``tail`` records which rule set τ, and a :class:`FewNegativesWarning` says what the held-out nulls can certify.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from metrics.intervals import wilson_ci
from metrics.memorization.registry import DEFAULT_FPR, FewNegativesWarning, MemorizationError

Z95_SQ = 1.959964**2


@dataclass
class Calibration:
    tau: float
    fpr_target: float
    fpr_calibration: float  # empirical FPR on the negatives τ was chosen on (≤ target by construction)
    fpr_heldout: float  # measured on held-out negatives
    fpr_heldout_ci95: tuple[float, float]
    n_calibration: int
    n_heldout: int
    resolution: float  # 1 / n_calibration: the smallest FPR the calibration set can express
    certified: bool  # Wilson upper bound on held-out FPR ≤ target
    n_solved: int  # Sinkhorn problems actually solved (the rest were pruned by the lower bound)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fpr_heldout_ci95"] = list(self.fpr_heldout_ci95)
        return d


def _smallest_costs(scorer, a: np.ndarray, b: np.ndarray, k: int, batch: int = 256) -> tuple[np.ndarray, int]:
    """The ``k`` smallest OT costs among aligned pairs, solving pairs in lower-bound order until no
    unsolved pair can beat the current k-th smallest (its bound is already ≥ it)."""
    lb = scorer.lower_bound(a, b)
    order = np.argsort(lb, kind="stable")
    found = np.empty(0)
    solved = 0
    for s in range(0, len(order), batch):
        if len(found) >= k and lb[order[s]] >= found[k - 1]:
            break
        idx = order[s : s + batch]
        found = np.sort(np.concatenate([found, scorer.costs(a[idx], b[idx])]))[: max(k, 1)]
        solved += len(idx)
    return found[:k], solved


def _count_below(scorer, a: np.ndarray, b: np.ndarray, tau: float) -> tuple[int, int]:
    lb = scorer.lower_bound(a, b)
    cand = np.flatnonzero(lb < tau)
    if len(cand) == 0:
        return 0, 0
    return int((scorer.costs(a[cand], b[cand]) < tau).sum()), len(cand)


def calibrate_tau(scorer, neg_a: np.ndarray, neg_b: np.ndarray, fpr: float = DEFAULT_FPR,
                  heldout: float = 0.5, seed: int = 0) -> Calibration:
    """τ such that at most ``fpr`` of the calibration negatives have cost < τ; FPR re-measured on held-out ones.

    ``neg_a[i]``/``neg_b[i]`` are windows that must *not* match (e.g. a continuation and the target of
    another example). τ is the (⌊fpr·n⌋+1)-th smallest calibration cost, so a match is ``cost < τ``.
    """
    if not 0 < fpr < 1:
        raise MemorizationError(f"fpr must be in (0, 1), got {fpr}")
    n = len(neg_a)
    if n != len(neg_b):
        raise MemorizationError(f"negative pairs misaligned: {len(neg_a)} vs {len(neg_b)}")
    if n < 4:
        raise MemorizationError(f"only {n} negative pairs: need at least 4 to calibrate τ (more examples or clips)")
    perm = np.random.default_rng(seed).permutation(n)
    n_held = int(round(n * heldout))
    held, cal = perm[:n_held], perm[n_held:]
    k = int(math.floor(fpr * len(cal)))
    smallest, solved = _smallest_costs(scorer, neg_a[cal], neg_b[cal], k + 1)
    tau = float(smallest[k])
    fp_cal = int((smallest < tau).sum())
    fp_held, solved_h = _count_below(scorer, neg_a[held], neg_b[held], tau) if n_held else (0, 0)
    ci = wilson_ci(fp_held, n_held) if n_held else (0.0, 1.0)
    cal_res = Calibration(tau=tau, fpr_target=fpr, fpr_calibration=fp_cal / len(cal),
                          fpr_heldout=fp_held / n_held if n_held else float("nan"), fpr_heldout_ci95=ci,
                          n_calibration=len(cal), n_heldout=n_held, resolution=1.0 / len(cal),
                          certified=bool(n_held and ci[1] <= fpr), n_solved=solved + solved_h)
    if 1.0 / len(cal) > fpr or not cal_res.certified:
        warnings.warn(f"{len(cal)} calibration / {n_held} held-out negatives cannot certify FPR {fpr:g} "
                      f"(resolution {1 / len(cal):.2g}, held-out FPR 95% CI up to {ci[1]:.2g}); "
                      f"need about {math.ceil(3.7 / fpr)} held-out negatives with none below τ", FewNegativesWarning,
                      stacklevel=2)
    return cal_res


def negative_pairs(n_items: int, group: np.ndarray, max_pairs: int, rng: np.random.Generator,
                    other: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) with ``group[i] != other_group[j]``: all of them if few, else a uniform sample."""
    og = group if other is None else other
    n_other = len(og)
    total = n_items * n_other
    if total <= max_pairs:
        i, j = np.divmod(np.arange(total), n_other)
    else:
        i = rng.integers(0, n_items, size=int(max_pairs * 1.2))
        j = rng.integers(0, n_other, size=len(i))
    keep = group[i] != og[j]
    i, j = i[keep][:max_pairs], j[keep][:max_pairs]
    return i, j



def nulls_needed(fpr: float) -> int:
    """Held-out nulls needed for the Wilson 95 % upper bound of 0 false alarms to reach ``fpr``: z²/(n+z²) ≤ fpr."""
    return math.ceil(Z95_SQ / fpr - Z95_SQ)


def best_certifiable(n_heldout: int) -> float:
    """The smallest per-clip rate ``n_heldout`` held-out nulls can certify: the Wilson 95 % upper bound with
    no false alarm, z²/(n + z²) (1 for none). The inverse of :func:`nulls_needed`."""
    return Z95_SQ / (n_heldout + Z95_SQ) if n_heldout > 0 else 1.0


@dataclass
class ClipCalibration:
    """τ for per-clip decisions, from null clips' minimum costs, and its measured false-alarm rates."""

    tau: float
    fpr_target: float
    source: str  # "null" (a folder of audio known not to be in the training set) or "leave-one-out" (training excerpts)
    n_calibration: int
    n_heldout: int
    rank: int  # τ is the rank-th smallest calibration minimum
    clip_false_alarms: int  # held-out nulls reported as copies
    clip_false_alarm_rate: float
    clip_false_alarm_ci95: tuple[float, float]
    n_heldout_windows: int
    window_false_alarm_rate: float  # fraction of held-out null windows with any training window below τ
    window_false_alarm_ci95: tuple[float, float]
    certified: bool  # Wilson upper bound of the held-out per-clip rate ≤ target
    nulls_needed: int
    guaranteed_fpr: float  # rank / (n_calibration + 1): what the rank rule promises for exchangeable nulls
    n_solved: int
    tail: str = "empirical"  # which rule set τ: "empirical[-confident]" (rank) or "[log]normal[-tolerance]" (fitted tail); module docstring
    null_minima: list = field(default_factory=list)  # calibration minima, ascending (values ≥ the first censored one are upper bounds)
    confidence: float | None = None  # P(per-clip rate ≤ fpr) over calibration draws that τ was chosen for; None: expected rate
    null_fpr: float | None = None  # the level τ was set at on the null minima (fpr less the searched-windows correction)
    searched_ratio: float = 1.0  # mean over calibration nulls of M'/M: training windows a null searched / an audited clip searches

    def to_dict(self) -> dict:
        d = asdict(self)
        d["clip_false_alarm_ci95"] = list(self.clip_false_alarm_ci95)
        d["window_false_alarm_ci95"] = list(self.window_false_alarm_ci95)
        # the names earlier versions wrote, kept for readers of older memorization.json files
        d.update(level="clip", fpr_heldout=self.clip_false_alarm_rate, fpr_heldout_ci95=list(self.clip_false_alarm_ci95),
                 resolution=1.0 / (self.n_calibration + 1), best_certifiable_fpr=best_certifiable(self.n_heldout))
        return d

    @property
    def fpr_heldout(self) -> float:
        return self.clip_false_alarm_rate


def clip_rank(fpr: float, n_calibration: int, confidence: float | None = None) -> int:
    """Which order statistic of the calibration minima is τ (see the module docstring); 0 when the
    confident rule cannot use one (too few nulls for ``confidence``)."""
    if confidence is None:
        return max(1, min(n_calibration, math.floor(fpr * (n_calibration + 1))))
    from scipy.stats import binom

    j = 0  # the largest j with P(Binomial(n, fpr) ≥ j) ≥ confidence; binom.sf(j, …) = P(X ≥ j + 1)
    while j < n_calibration and binom.sf(j, n_calibration, fpr) >= confidence:
        j += 1
    return j


MIN_TAIL_NULLS = 5  # below this a fitted tail means nothing: the rank rule's smallest minimum, and a warning
DEFAULT_TAU_CONFIDENCE = 0.95  # P(per-clip false-alarm rate ≤ fpr) over the draw of calibration nulls


def check_confidence(confidence: float | None) -> float | None:
    """``None`` or 0: the expected-rate rule; else a probability in (0, 1)."""
    if confidence is None or confidence == 0:
        return None
    if not 0 < confidence < 1:
        raise MemorizationError(f"tau confidence must be in (0, 1) (or 0 for the expected-rate rule), got {confidence}")
    return float(confidence)


def needs_tail(fpr: float, n_calibration: int, confidence: float | None = None) -> bool:
    """Too few nulls for the rank rule to express ``fpr`` (at ``confidence``), enough to fit a tail (then
    every minimum must be exact)."""
    short = (math.floor(fpr * (n_calibration + 1)) == 0 if confidence is None
             else clip_rank(fpr, n_calibration, confidence) == 0)
    return short and n_calibration >= MIN_TAIL_NULLS


def clip_tau(minima: np.ndarray, fpr: float, confidence: float | None = None) -> tuple[float, str]:
    """τ and the rule that set it: a rank rule, or a normal tail when the nulls are too few."""
    srt = np.sort(np.asarray(minima, dtype=np.float64))
    if needs_tail(fpr, len(srt), confidence):
        if confidence is None:
            return extrapolated_tau(srt, fpr), "normal"
        return tolerance_tau(srt, fpr, confidence)
    if confidence is None:
        return float(srt[clip_rank(fpr, len(srt)) - 1]), "empirical"
    return float(srt[max(1, clip_rank(fpr, len(srt), confidence)) - 1]), "empirical-confident"


DEFAULT_SEARCH_CORRECTION = True  # τ at the null level that accounts for the windows a null did not search (docstring)


def null_level(fpr: float, searched: np.ndarray | None = None) -> float:
    """The level τ is set at on null minima so that a clip searching all M training windows is reported with
    probability ≤ ``fpr``: the mean over nulls of 1 − (1 − fpr)^(M'ᵢ/M), ``searched[i]`` = M'ᵢ/M (module docstring).
    ``fpr`` when every null searched every window (or ``searched`` is None)."""
    r = np.clip(np.asarray([] if searched is None else searched, dtype=np.float64), 0.0, 1.0)
    return float(fpr) if len(r) == 0 or r.min() >= 1.0 else float(np.mean(-np.expm1(r * np.log1p(-fpr))))


def finish_clip_calibration(cal_minima: np.ndarray, fpr: float, source: str, heldout_flags: np.ndarray,
                            heldout_window_flags: np.ndarray, n_solved: int, warn: bool = True,
                            confidence: float | None = DEFAULT_TAU_CONFIDENCE,
                            searched: np.ndarray | None = None) -> ClipCalibration:
    """τ from calibration minima + the held-out measurements (flags: which held-out nulls/windows were reported).
    ``searched``: per calibration null M'/M (:func:`null_level`); None: every null searched every window."""
    n_cal, n_held = len(cal_minima), len(heldout_flags)
    confidence = check_confidence(confidence)
    level = null_level(fpr, searched)
    rank = max(1, clip_rank(level, n_cal, confidence))
    srt = np.sort(np.asarray(cal_minima, dtype=np.float64))
    tau, tail = clip_tau(srt, level, confidence)
    k, nw, kw = int(np.sum(heldout_flags)), len(heldout_window_flags), int(np.sum(heldout_window_flags))
    ci = wilson_ci(k, n_held) if n_held else (0.0, 1.0)
    cal = ClipCalibration(tau=tau, fpr_target=fpr, source=source, n_calibration=n_cal, n_heldout=n_held, rank=rank,
                          clip_false_alarms=k, clip_false_alarm_rate=k / n_held if n_held else float("nan"),
                          clip_false_alarm_ci95=ci, n_heldout_windows=nw,
                          window_false_alarm_rate=kw / nw if nw else float("nan"),
                          window_false_alarm_ci95=wilson_ci(kw, nw) if nw else (0.0, 1.0),
                          certified=bool(n_held and ci[1] <= fpr), nulls_needed=nulls_needed(fpr),
                          guaranteed_fpr=rank / (n_cal + 1), n_solved=n_solved, tail=tail,
                          null_minima=[float(x) for x in srt], confidence=confidence, null_fpr=level,
                          searched_ratio=float(np.mean(searched)) if searched is not None and len(searched) else 1.0)
    if warn and not cal.certified:
        warnings.warn(f"{n_cal} calibration / {n_held} held-out null clips cannot certify a per-clip false-alarm rate of "
                      f"{fpr:g}: " + (f"τ is the {rank}{'st' if rank == 1 else 'th'} smallest of {n_cal} null minima "
                      f"(guarantee {cal.guaranteed_fpr:.2g})" if tail.startswith("empirical") else
                      f"τ = {tau:.3g} extrapolated from a normal fit of {n_cal} null minima (the smallest is {srt[0]:.3g})")
                      + f"; measured {k}/{n_held} held-out nulls reported, 95% CI up to "
                      f"{ci[1]:.2g}; need about {cal.nulls_needed} held-out nulls with none reported (--null DIR)",
                      FewNegativesWarning, stacklevel=3)
    return cal


@functools.lru_cache(maxsize=256)
def tolerance_factor(n: int, fpr: float, confidence: float) -> float:
    """One-sided normal tolerance factor: with probability ``confidence`` over n normal draws, mean − k·sd is
    below the ``fpr``-quantile (k = t'_γ(n − 1, z_{1−fpr}·√n)/√n; NIST/SEMATECH e-Handbook 7.2.6.3)."""
    from scipy.stats import nct, norm

    return float(nct.ppf(confidence, n - 1, norm.ppf(1 - fpr) * math.sqrt(n)) / math.sqrt(n))


def tolerance_tau(minima: np.ndarray, fpr: float, confidence: float) -> tuple[float, str]:
    """The lower tolerance bound of a normal fit of the null minima, capped by the smallest (module docstring),
    and which fit set it.

    Fitted on the finite minima: a null with no informative window (minimum +inf) is never reported, so
    leaving it out of the fit only lowers τ. A cost is ≥ 0, so a normal fit whose bound is ≤ 0 puts more
    than ``fpr`` of its mass where no cost can be; that model is rejected and the same bound is taken on
    the log of the minima (a log-normal fit; tolerance limits of a log-normal are those of the normal
    fitted to the logs, exponentiated: Meeker, Hahn & Escobar, *Statistical Intervals*, 2nd ed. 2017).
    Seen on the Wesnoth rotation (docs/protocol.md, "Memorization"): 36 leave-one-out minima from 0.15 to
    0.71 (mean 0.45, sd 0.15) gave mean − 2.98·sd < 0 and τ at the 1e-6 floor, where no altered copy counts."""
    m = np.asarray(minima, dtype=np.float64)
    m = m[np.isfinite(m)]
    if len(m) < 2:
        return (float(m.min()) if len(m) else 1e-6), "normal-tolerance"
    k = tolerance_factor(len(m), fpr, confidence)
    bound, tail = m.mean() - k * m.std(ddof=1), "normal-tolerance"
    if bound <= 0 and m.min() > 0:
        lm = np.log(m)
        bound, tail = math.exp(lm.mean() - k * lm.std(ddof=1)), "lognormal-tolerance"
    return float(min(m.min(), max(1e-6, bound))), tail


def extrapolated_tau(minima: np.ndarray, fpr: float) -> float:
    """The fpr-quantile of a robust normal fit of the null minima, capped by the smallest one (see module docstring)."""
    from statistics import NormalDist

    m = np.asarray(minima, dtype=np.float64)
    med = float(np.median(m))
    sigma = 1.4826 * float(np.median(np.abs(m - med)))
    return float(min(m.min(), max(1e-6, med + NormalDist().inv_cdf(fpr) * sigma)))


def split_nulls(ids: list[str], heldout: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of null clip ids into (calibration, held-out); at least 2 for calibration."""
    if len(ids) < 3:
        raise MemorizationError(f"only {len(ids)} null clips: need at least 3 (2 to calibrate τ, 1 held out); "
                                "give more --null clips or longer training clips")
    perm = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    n_held = min(len(ids) - 2, max(1, int(round(len(ids) * heldout))))
    return sorted(perm[n_held:]), sorted(perm[:n_held])


def fixed_clip_calibration(tau: float, fpr: float) -> ClipCalibration:
    """A user-given τ: nothing measured."""
    return ClipCalibration(float(tau), fpr, "given", 0, 0, 0, 0, float("nan"), (0.0, 1.0), 0, float("nan"), (0.0, 1.0),
                           False, nulls_needed(fpr), float("nan"), 0)

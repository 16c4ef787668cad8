"""KLD: KL divergence between a classifier's class distributions for generated clips and their references.

The paper passes each generated clip and its reference through a multi-label classifier and reports
the KL divergence between the two class distributions, averaged over pairs. Published numbers follow
different formulas, so the formula is a named *convention* (``KLD_CONVENTIONS``; CLI
``--kld-convention``), each reproducing its source exactly and naming itself in the result keys:

- ``musiclm`` (default; built from ``clip_distribution`` and ``kl_divergence`` below): a clip's
  distribution is the mean over its windows of the sigmoid probabilities (softmax for a softmax
  classifier), renormalized; eps on both distributions; KL(ref ‖ gen); ``kld_sym`` is the MEAN of
  the two directions.
- ``audiocraft`` (MusicGen's numbers): softmax per window, every window a pair, eps inside the log
  of the generated side; ``kld_both`` is the SUM of the two directions.
- ``stable-audio``: window logits pooled (mean or max), one softmax per clip, KL(gen ‖ ref) with eps
  on the reference side.

``KLD`` is the ``Metric`` (per-clip window logits in) and ``kld_metrics`` gives one per reported
number: the only way to a dataset-level KLD, so every entry point gets the same value and the same
interval (``metrics.intervals``). docs/protocol.md ("KL divergence") cites each source file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from metrics.audio import PairingError
from metrics.metric import PerClipOutputs
from metrics.result import MetricResult

Direction = Literal["ref||gen", "gen||ref"]
Mode = Literal["sigmoid", "softmax"]
DIRECTIONS: tuple[str, ...] = ("ref||gen", "gen||ref")


def _as_distributions(p: np.ndarray, eps: float, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if not np.isfinite(p).all():
        raise ValueError(f"{name}: contains NaN/Inf")
    if (p < 0).any():
        raise ValueError(f"{name}: contains negative probabilities")
    p = p + eps
    total = p.sum(axis=-1, keepdims=True)
    if (total <= 0).any():
        raise ValueError(f"{name}: a row sums to zero (use eps > 0 to smooth all-zero rows)")
    return p / total


def kl_divergence(p_ref: np.ndarray, p_gen: np.ndarray, direction: Direction = "ref||gen", eps: float = 1e-6) -> np.ndarray:
    """KL divergence per row between class distributions [..., classes] (natural log, nats).

    Both inputs are smoothed the same way — ``eps`` added to every class, then renormalized — so a
    zero probability never makes the value infinite and identical inputs give exactly 0. With
    ``eps=0`` the textbook value is returned (inf where the first argument has mass the second lacks).
    ``direction="ref||gen"`` is KL(p_ref ‖ p_gen) = Σ p_ref log(p_ref / p_gen).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, not {eps}")
    p = _as_distributions(p_ref, eps, "p_ref")
    q = _as_distributions(p_gen, eps, "p_gen")
    if p.shape != q.shape:
        raise ValueError(f"p_ref and p_gen shapes differ: {p.shape} vs {q.shape}")
    if direction == "gen||ref":
        p, q = q, p
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def clip_distribution(window_logits: np.ndarray, mode: Mode = "sigmoid") -> np.ndarray:
    """One clip's class distribution from its per-window logits [windows, classes] (see module doc)."""
    z = np.asarray(window_logits, dtype=np.float64)
    if z.ndim == 1:
        z = z[None, :]
    if mode == "sigmoid":
        probs = 1.0 / (1.0 + np.exp(-z))
    elif mode == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        probs = e / e.sum(axis=-1, keepdims=True)
    else:
        raise ValueError(f"mode must be 'sigmoid' or 'softmax', not {mode!r}")
    mean = probs.mean(axis=0)
    return mean / mean.sum()


# ----------------------------------------------------------------------------- named conventions
#
# Each convention is the formula of one published evaluation, from per-window classifier logits on
# (the windows themselves are the classifier's: docs/protocol.md, "KL divergence"):
#
# musiclm       this project's documented default (clip_distribution, kl_divergence): activation per window
#               (sigmoid for a multi-label classifier), mean over windows, renormalized; eps added
#               to both distributions, renormalized; KL(ref ‖ gen); ``sym`` = MEAN of both directions.
# audiocraft    audiocraft/metrics/kld.py (MusicGen's numbers): softmax over each window's logits,
#               every window a pair of its own (no pooling); kl_divergence(pred, target) =
#               kl_div(log(pred + eps), target).sum(-1) = KL(ref ‖ gen) with eps on gen only; the
#               reported ``kld`` = ``kld_pq`` (that), ``kld_qp`` = KL(gen ‖ ref) with eps on ref,
#               ``kld_both`` = their SUM; averages over window pairs.
# stable-audio  stable-audio-metrics src/passt_kld.py: logits pooled over windows (``collect``:
#               mean, or max), then ONE softmax per clip; kl_div((ref_p + 1e-6).log(), eval_p,
#               reduction="sum") = KL(gen ‖ ref) with eps on ref only; mean over clips; no
#               both-directions number.

KLD_CONVENTIONS: tuple[str, ...] = ("musiclm", "audiocraft", "stable-audio")
KLD_SOURCES = {
    "musiclm": "metrics/kld.py (this project; docs/protocol.md)",
    "audiocraft": "facebookresearch/audiocraft: audiocraft/metrics/kld.py",
    "stable-audio": "Stability-AI/stable-audio-metrics: src/passt_kld.py",
}
# convention → {number: (direction, what it is)}; the first number is the headline
KLD_NUMBERS: dict[str, dict[str, tuple[str, str]]] = {
    "musiclm": {"kld": ("ref||gen", "KL(ref‖gen)"), "kld_gen_ref": ("gen||ref", "KL(gen‖ref)"),
                "kld_sym": ("both", "mean of the two directions")},
    "audiocraft": {"kld": ("ref||gen", "kld_pq = KL(ref‖gen)"), "kld_qp": ("gen||ref", "KL(gen‖ref)"),
                   "kld_both": ("both", "kld_pq + kld_qp (sum)")},
    "stable-audio": {"kld": ("gen||ref", "KL(gen‖ref)")},
}
AUDIOCRAFT_EPS = STABLE_AUDIO_EPS = 1e-6  # both sources hard-code 1e-6


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _xlogy_kl(target: np.ndarray, pred: np.ndarray, eps: float) -> np.ndarray:
    """Σ target·(log target − log(pred + eps)) over the last axis, 0·log 0 = 0: torch's kl_div(log(pred+eps), target)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(target > 0, target * (np.log(np.where(target > 0, target, 1.0)) - np.log(pred + eps)), 0.0)
    return terms.sum(axis=-1)


def convention_key(convention: str, number: str) -> str:
    """The result key: ``kld_<convention>`` for the headline, ``kld_<convention>_<rest>`` otherwise."""
    tag = convention.replace("-", "_")
    return f"kld_{tag}" if number == "kld" else f"kld_{tag}_{number[len('kld_'):]}"


def per_clip_kld(ref_logits: np.ndarray, gen_logits: np.ndarray, convention: str, number: str = "kld",
                 activation: str = "sigmoid", eps: float = 1e-6, pooling: str = "mean") -> tuple[float, int]:
    """(sum of the per-pair values, number of pairs) for one clip under ``convention``.

    A pair is the clip for ``musiclm`` and ``stable-audio``, a window for ``audiocraft`` (so its
    dataset value is Σ over windows / number of windows, weighting clips by their windows).
    """
    if convention not in KLD_CONVENTIONS:
        raise ValueError(f"unknown KLD convention {convention!r}; expected one of {', '.join(KLD_CONVENTIONS)}")
    if number not in KLD_NUMBERS[convention]:
        raise ValueError(f"convention {convention!r} reports {', '.join(KLD_NUMBERS[convention])}, not {number!r}")
    r, g = np.atleast_2d(np.asarray(ref_logits, np.float64)), np.atleast_2d(np.asarray(gen_logits, np.float64))
    if convention == "musiclm":
        mode = "softmax" if activation == "softmax" else "sigmoid"
        p, q = clip_distribution(r, mode), clip_distribution(g, mode)
        ref_gen, gen_ref = float(kl_divergence(p, q, "ref||gen", eps)), float(kl_divergence(p, q, "gen||ref", eps))
        return {"kld": ref_gen, "kld_gen_ref": gen_ref, "kld_sym": 0.5 * (ref_gen + gen_ref)}[number], 1
    if convention == "audiocraft":
        if r.shape != g.shape:
            raise ValueError(f"audiocraft pairs windows one to one: reference has {r.shape[0]} window(s), "
                             f"generated {g.shape[0]} (audiocraft asserts equal shapes)")
        tgt, pred = _softmax(r), _softmax(g)
        pq, qp = _xlogy_kl(tgt, pred, eps), _xlogy_kl(pred, tgt, eps)
        per_window = {"kld": pq, "kld_qp": qp, "kld_both": pq + qp}[number]
        return float(per_window.sum()), len(per_window)
    if pooling not in ("mean", "max"):
        raise ValueError(f"stable-audio pooling (collect) is 'mean' or 'max', not {pooling!r}")
    pool = (lambda z: z.mean(axis=0)) if pooling == "mean" else (lambda z: z.max(axis=0))
    ref_p, eval_p = _softmax(pool(r)), _softmax(pool(g))
    return float(_xlogy_kl(eval_p, ref_p, eps)), 1


class KLD(PerClipOutputs):
    """One KLD number of one convention as a ``Metric`` over per-clip window logits [windows, classes].

    Both sides hold logits keyed by clip id (reference = the ground-truth clip with the same id).
    ``value_on`` averages the per-pair values over the generated ids given (ids may repeat), so the
    intervals of ``metrics.intervals`` resample pairs. ``compute`` names the convention in the
    result key (``convention_key``) and in ``extra``.
    """

    output = "class_logits"
    higher_is_better = False  # every convention's number is a divergence from the reference labels
    interval_method = "jackknife"  # a mean of per-clip values: the t interval and the paired t-test
    # Interval endpoints are clipped to the convention's range. The musiclm formula smooths both sides
    # alike, so its value is a true KL divergence (never negative); audiocraft's and stable-audio's add
    # eps inside one log only, so near-identical distributions legitimately give about -eps: no floor.
    bounds: tuple[float | None, float | None] = (0.0, None)

    def __init__(self, convention: str = "musiclm", number: str = "kld", activation: str | None = None,
                 eps: float | None = None, pooling: str = "mean", n_boot: int = 1000, seed: int = 0):
        if convention not in KLD_CONVENTIONS:
            raise ValueError(f"unknown KLD convention {convention!r}; expected one of {', '.join(KLD_CONVENTIONS)}")
        if number not in KLD_NUMBERS[convention]:
            raise ValueError(f"convention {convention!r} reports {', '.join(KLD_NUMBERS[convention])}, not {number!r}")
        self.convention, self.number, self.pooling = convention, number, pooling
        # musiclm follows the classifier's activation; audiocraft and stable-audio prescribe softmax
        self.activation = (activation or "sigmoid") if convention == "musiclm" else "softmax"
        self.eps = 1e-6 if eps is None else float(eps)
        self.name = convention_key(convention, number)
        if convention != "musiclm":
            self.bounds = (None, None)
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        pooling = {"musiclm": "mean of window probabilities", "audiocraft": "none (each window a pair)",
                   "stable-audio": f"{self.pooling} of window logits"}[self.convention]
        return {"convention": self.convention, "number": self.number, "direction": KLD_NUMBERS[self.convention][self.number][0],
                "eps": self.eps, "activation": self.activation, "pooling": pooling}

    def reset(self) -> None:
        super().reset()
        self._terms: dict[str, tuple[float, int]] | None = None

    def update(self, side: str, outputs) -> None:
        for cid, z in outputs.items():
            z = np.asarray(z)
            if z.ndim not in (1, 2) or not z.size or not np.isfinite(z).all():
                raise ValueError(f"{self.name}: clip {cid!r} ({side}): window logits must be a finite "
                                 f"[windows, classes] array, got shape {z.shape}"
                                 + ("" if np.isfinite(z).all() else " with NaN/Inf"))
        super().update(side, outputs)
        self._terms = None

    def terms(self) -> dict[str, tuple[float, int]]:
        """Generated id → (sum of per-pair values, pairs); every generated clip needs its reference."""
        if self._terms is None:
            ref, gen = self.outputs["reference"], self.outputs["generated"]
            lacking = sorted(set(gen) - set(ref))
            if lacking:
                raise PairingError(f"{self.name}: {len(lacking)} generated clip(s) have no reference clip with "
                                   f"the same id: {', '.join(lacking[:20])}{' …' if len(lacking) > 20 else ''}")
            out = {}
            for cid in sorted(gen):
                if np.atleast_2d(ref[cid]).shape[-1] != np.atleast_2d(gen[cid]).shape[-1]:
                    raise ValueError(f"{self.name}: clip {cid!r}: reference has {np.atleast_2d(ref[cid]).shape[-1]} "
                                     f"classes, generated {np.atleast_2d(gen[cid]).shape[-1]}")
                try:
                    out[cid] = per_clip_kld(ref[cid], gen[cid], self.convention, self.number, self.activation,
                                            self.eps, self.pooling)
                except ValueError as e:
                    raise ValueError(f"{self.name}: clip {cid!r}: {e}") from None
            self._terms = out
        return self._terms

    def value_on_counts(self, ref_counts: np.ndarray, gen_counts: np.ndarray) -> np.ndarray:
        t = self.terms()
        ids = self.ids("generated")
        sums = np.array([t[i][0] for i in ids])
        pairs = np.array([t[i][1] for i in ids], dtype=np.float64)
        w = np.asarray(gen_counts, dtype=np.float64)
        return (w @ sums) / (w @ pairs)

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float:
        t = self.terms()
        if not len(gen_ids):
            raise ValueError(f"{self.name}: no generated clips")
        return float(sum(t[i][0] for i in gen_ids) / sum(t[i][1] for i in gen_ids))

    def compute(self) -> MetricResult:
        t = self.terms()
        if not t:
            raise PairingError(f"{self.name}: no generated clip to score")
        ids = self.ids("generated")
        value = self.value_on(ids, ids)
        per = {i: s / n for i, (s, n) in t.items()}
        extra = {**self.config(), "source": KLD_SOURCES[self.convention],
                 "meaning": KLD_NUMBERS[self.convention][self.number][1], "n_pairs": len(ids),
                 "n_window_pairs": int(sum(n for _, n in t.values()))}
        return self.result(value, per, extra)


def kld_metrics(convention: str = "musiclm", n_boot: int = 1000, seed: int = 0,
                activation: str | None = None, eps: float | None = None, pooling: str = "mean") -> dict[str, KLD]:
    """Result key → a ``KLD`` metric, one per number the convention reports (headline first)."""
    if convention not in KLD_CONVENTIONS:
        raise ValueError(f"unknown KLD convention {convention!r}; expected one of {', '.join(KLD_CONVENTIONS)}")
    return {convention_key(convention, num): KLD(convention, num, activation, eps, pooling, n_boot=n_boot, seed=seed)
            for num in KLD_NUMBERS[convention]}

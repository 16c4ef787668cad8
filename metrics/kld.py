"""KLD: KL divergence between a classifier's class distributions for generated clips and their references.

The paper passes each generated clip and its reference through a multi-label LEAF classifier and
reports the KL divergence between the two class distributions, averaged over pairs. Two choices it
leaves open are explicit here (and in docs/protocol.md):

- Direction. audiocraft computes KL(ref ‖ gen); stable-audio-metrics computes KL(gen ‖ ref). The
  default here is ref‖gen; both directions and their mean (``kld_sym``) are always reported.
- Per-clip distribution from multi-label outputs. Sigmoid probabilities are not a distribution, so a
  clip's distribution is the mean over its 10 s windows of the sigmoid probabilities, renormalized
  to sum to 1 (``mode="sigmoid"``). ``mode="softmax"`` takes a softmax over the logits of each
  window instead, then averages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from metrics.audio import Clip, pair_ids
from metrics.result import MetricResult, bootstrap_ci

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


def class_distributions(clips: Sequence[Clip], classifier, mode: Mode = "sigmoid", device: str = "cpu") -> dict[str, np.ndarray]:
    """id → class distribution for each clip, with a ``LeafClassifier`` (or a LoadedClassifier)."""
    from metrics.audio import AudioError
    from metrics.classifier import window_logits

    model = getattr(classifier, "model", classifier)
    out = {}
    for c in clips:
        logits = window_logits(model, c.wave, c.sr, device)
        if not np.isfinite(logits).all():
            raise AudioError(c.path or c.id, "the classifier returned NaN/Inf logits for this clip")
        out[c.id] = clip_distribution(logits, mode)
    return out


def kld(
    ref: Mapping[str, np.ndarray],
    gen: Mapping[str, np.ndarray],
    direction: Direction = "ref||gen",
    eps: float = 1e-6,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, MetricResult]:
    """KLD over pairs matched by id: ``kld`` (the chosen direction), ``kld_ref_gen``, ``kld_gen_ref``, ``kld_sym``.

    Each value is the mean over pairs with a seeded percentile-bootstrap 95% CI; per-pair values are
    kept in ``per_item``. ``kld_sym`` is the mean of the two directions (same scale as either).
    """
    ids = pair_ids({"reference": ref.keys(), "generated": gen.keys()})
    p = np.stack([ref[i] for i in ids])
    q = np.stack([gen[i] for i in ids])
    values = {
        "kld_ref_gen": kl_divergence(p, q, "ref||gen", eps),
        "kld_gen_ref": kl_divergence(p, q, "gen||ref", eps),
    }
    values["kld_sym"] = 0.5 * (values["kld_ref_gen"] + values["kld_gen_ref"])
    values["kld"] = values["kld_ref_gen" if direction == "ref||gen" else "kld_gen_ref"]
    out = {}
    for name, v in values.items():
        out[name] = MetricResult(
            name,
            float(v.mean()),
            bootstrap_ci(v, n_boot=n_boot, seed=seed),
            dict(zip(ids, map(float, v))),
            {"direction": direction if name == "kld" else None, "eps": eps, "n_pairs": len(ids)},
        )
    return out

"""Simulated evaluation data for the interval-coverage benchmark, and the population values it is scored on.

Why a generator per output kind: FAD and KAD read frame embeddings, KLD window logits and MCC a caption
embedding beside window embeddings, so every condition (``Condition``: tails, within-clip correlation,
dimension, set sizes) is applied to all four kinds of per-clip output the pipeline hands the metrics.

- Frames and windows are ``structured`` noise: unit variance per coordinate, Gaussian or Student-t
  with 3 df (scaled to unit variance: infinite fourth moment, so covariances are heavy-tailed), and a
  share ``clip_share`` of that variance is a per-clip offset (every frame of a clip carries it: frames
  within a clip correlated, as real embeddings of one piece are).
- Captions are the sampling unit: the reference clip, its caption embedding and every system's clip of
  that caption share the caption's latent (its class pattern, its direction, its difficulty), so two
  systems of one run are clip-paired as in ``compare``.

Population values (``population_values``): FAD in closed form (the embedding generator's marginal frame mean and
covariance are (μ, Σ) by construction, whatever the tails and ``clip_share``, and FAD is a function of
them). KAD, KLD and MCC from a very large sample of the same generator: KAD is the unbiased MMD² of the
marginal frame distributions (one frame per clip, so no within-clip pair) at the population bandwidth
(the median pairwise distance of a large sample of generated frames), averaged over independent blocks;
KLD and MCC are the mean per-caption value over many captions. Each carries its Monte-Carlo standard
error, to set beside the intervals' widths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from metrics.fad import frechet_distance
from metrics.kad import kernel_audio_distance, median_pairwise_distance
from metrics.kld import KLD
from metrics.mcc import MCC

WINDOWS = 10  # frames (embeddings) or windows (logits, joint audio embeddings) per clip


@dataclass(frozen=True)
class Condition:
    """One simulated data set-up: ``dim`` is the embedding dimension, the classifier's classes and the joint
    model's dimension alike; ``n_ref`` reference clips (captions), ``n_gen`` generated clips per system
    (the first ``n_gen`` captions)."""

    name: str
    dim: int = 32
    n_ref: int = 30
    n_gen: int = 30
    tail: str = "gaussian"  # or "t3": Student-t with 3 df, scaled to unit variance
    clip_share: float = 0.0  # share of each coordinate's variance that is a per-clip offset

    def describe(self) -> dict:
        return {**asdict(self), "frames_per_clip": WINDOWS}


CONDITIONS = (
    Condition("gaussian"),
    Condition("heavy_tails_t3", tail="t3"),
    Condition("clip_effects", clip_share=0.5),
    Condition("unequal_40_vs_20", n_ref=40, n_gen=20),
    Condition("dim_64", dim=64),
    Condition("dim_128", dim=128),
)


def noise(rng: np.random.Generator, shape: tuple[int, ...], tail: str) -> np.ndarray:
    """Unit-variance iid noise: standard normal, or Student-t(3) / √3."""
    if tail == "gaussian":
        return rng.standard_normal(shape)
    if tail == "t3":
        return rng.standard_t(3, size=shape) / np.sqrt(3.0)
    raise ValueError(f"tail must be 'gaussian' or 't3', not {tail!r}")


def structured(rng: np.random.Generator, n: int, frames: int, dim: int, cond: Condition) -> np.ndarray:
    """[n, frames, dim] unit-variance noise whose share ``cond.clip_share`` is one offset per clip."""
    e = noise(rng, (n, frames, dim), cond.tail)
    if cond.clip_share:
        e = np.sqrt(1 - cond.clip_share) * e + np.sqrt(cond.clip_share) * noise(rng, (n, 1, dim), cond.tail)
    return e


class World:
    """The fixed populations of one condition: the two embedding distributions (reference μ₁, Σ₁ and
    generated μ₂, Σ₂, as ``benchmarks.interval_coverage.population``), and the systems' behaviour on logits
    and joint embeddings. ``captions(rng, n)`` draws captions; ``reference`` and ``system`` draw the
    per-clip outputs of the reference and of one system on them, by clip id."""

    def __init__(self, cond: Condition, seed: int = 2024):
        self.cond = cond
        rng = np.random.default_rng(seed)
        covs = []
        for _ in range(2):
            a = rng.normal(size=(cond.dim, cond.dim)) / np.sqrt(cond.dim)
            covs.append(a @ a.T + 0.5 * np.eye(cond.dim))
        self.mu = (np.zeros(cond.dim), rng.normal(size=cond.dim) * 0.15)
        self.cov = tuple(covs)
        self.chol = tuple(np.linalg.cholesky(c) for c in covs)

    def captions(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Each caption's latent: a class pattern (KLD), a unit direction and a difficulty (MCC)."""
        d = self.cond.dim
        u = rng.standard_normal((n, d))
        return {"pattern": 1.5 * rng.standard_normal((n, d)), "direction": u / np.linalg.norm(u, axis=1, keepdims=True),
                "strength": 0.5 * np.exp(0.4 * rng.standard_normal(n))}

    def frames(self, rng: np.random.Generator, side: int, n: int, per_clip: int = WINDOWS) -> np.ndarray:
        """[n, per_clip, dim] embeddings of population ``side`` (0 reference, 1 generated)."""
        return self.mu[side] + structured(rng, n, per_clip, self.cond.dim, self.cond) @ self.chol[side].T

    def reference(self, rng: np.random.Generator, caps: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        """The reference side of every metric, by output kind, for all captions."""
        n, ids = len(caps["pattern"]), clip_ids(len(caps["pattern"]))
        emb = self.frames(rng, 0, n)
        logits = -2.0 + caps["pattern"][:, None, :] + structured(rng, n, WINDOWS, self.cond.dim, self.cond)
        return {"embedding": dict(zip(ids, emb)), "class_logits": dict(zip(ids, logits)),
                "joint": dict(zip(ids, caps["direction"]))}

    def system(self, rng: np.random.Generator, caps: dict[str, np.ndarray], n: int) -> dict[str, dict[str, np.ndarray]]:
        """One system's clips of the first ``n`` captions (all systems of a condition are the same generator)."""
        ids, d = clip_ids(n), self.cond.dim
        emb = self.frames(rng, 1, n)
        logits = (-1.7 + 0.6 * caps["pattern"][:n, None, :]) + structured(rng, n, WINDOWS, d, self.cond)
        joint = (caps["strength"][:n, None, None] * caps["direction"][:n, None, :]
                 + structured(rng, n, WINDOWS, d, self.cond) / np.sqrt(d))
        return {"embedding": dict(zip(ids, emb)), "class_logits": dict(zip(ids, logits)), "joint": dict(zip(ids, joint))}


def clip_ids(n: int) -> list[str]:
    return [f"c{i:05d}" for i in range(n)]


def population_values(world: World, rng: np.random.Generator, kad_frames: int = 4000, kad_blocks: int = 4,
               pairs: int = 20000) -> dict[str, dict]:
    """Metric → {"value", "se", "how"}: the population value each interval should cover (module docstring)."""
    fad = frechet_distance(world.mu[0], world.cov[0], world.mu[1], world.cov[1])
    sigma = median_pairwise_distance(world.frames(rng, 1, kad_frames, 1)[:, 0])
    blocks = [kernel_audio_distance(world.frames(rng, 0, kad_frames, 1)[:, 0], world.frames(rng, 1, kad_frames, 1)[:, 0],
                                    bandwidth=sigma)[0] for _ in range(kad_blocks)]
    caps = world.captions(rng, pairs)
    ref, gen = world.reference(rng, caps), world.system(rng, caps, pairs)
    per_caption = {}
    for key, metric in (("kld", KLD("musiclm", "kld", n_boot=0)), ("mcc", MCC("sim", n_boot=0))):
        kind = metric.output
        metric.update("reference", ref[kind])
        metric.update("generated", gen[kind])
        per_caption[key] = np.array(list(metric.compute().per_item.values()))
    out = {"fad": {"value": float(fad), "se": 0.0,
                   "how": "closed form: Fréchet distance of the generator's marginal frame means and covariances"},
           "kad": {"value": float(np.mean(blocks)), "se": float(np.std(blocks, ddof=1) / np.sqrt(kad_blocks)),
                   "bandwidth": sigma,
                   "how": f"unbiased MMD² of the marginal frame distributions, mean of {kad_blocks} blocks of "
                          f"{kad_frames} frames a side (one frame per clip), at the median pairwise distance of "
                          f"{kad_frames} generated frames"}}
    for key, v in per_caption.items():
        out[key] = {"value": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(len(v))),
                    "how": f"mean per-caption value over {pairs} captions"}
    return out

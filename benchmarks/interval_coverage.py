"""Coverage of FAD's 95 % intervals by simulation: writes docs/figures/interval_coverage.json.

Gaussian frame embeddings with a known population Fréchet distance (closed form), 200 clips × 10
frames per side, d = 32 (issue 17's set-up). Each replication draws both sides afresh, runs the
pipeline's FAD metric (``metrics.fad_metric.FAD``; ``BatchedFAD`` only batches its resamples, same
values to rounding — tests/test_intervals.py checks) and records whether each interval contains the
population value: BCa / basic / percentile from ``metrics.intervals.bootstrap_interval`` (both sides
resampled) and the old ``bootstrap_fad_ci`` kept below as the baseline (generated clips only, percentile).
``tests/test_intervals.py`` asserts the BCa coverage on its own replications; this script is what
the figure in docs/protocol.md ("Intervals") comes from. Run: ``python -m benchmarks.interval_coverage``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from metrics.fad import EmbeddingStats, FADError, frechet_distance
from metrics.fad_metric import FAD
from metrics.intervals import bootstrap_ci, bootstrap_intervals, wilson_ci
from metrics.io import write_json


class BatchedFAD(FAD):
    """``FAD`` whose ``value_on_counts`` is vectorised over resamples: each row's mean and covariance are
    weighted sums of per-clip frame counts, sums and Gram matrices, and tr (Σ_r^½ Σ_g Σ_r^½)^½ comes
    from the eigenvalues of Lᵀ Σ_g L (Σ_r = L Lᵀ, one batched Cholesky + one batched eigvalsh).
    Needs every clip's Gram matrix in memory (n × d² floats) and Σ_r positive definite."""

    def _batched_moments(self, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cache = self.__dict__.setdefault("_batched", {})
        if side not in cache:
            x = [np.asarray(self.outputs[side][i], np.float64) for i in self.ids(side)]
            cache[side] = (np.array([len(a) for a in x], np.float64), np.stack([a.sum(0) for a in x]),
                           np.stack([a.T @ a for a in x]).reshape(len(x), -1))
        return cache[side]

    def _batched_stats(self, side: str, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, sums, grams = self._batched_moments(side)
        w = np.asarray(counts, np.float64)
        total = w @ n
        mu = (w @ sums) / total[:, None]
        d = sums.shape[1]
        second = (w @ grams).reshape(-1, d, d)
        return mu, (second - total[:, None, None] * mu[:, :, None] * mu[:, None, :]) / (total - 1)[:, None, None]

    def value_on_counts(self, ref_counts: np.ndarray, gen_counts: np.ndarray) -> np.ndarray:
        mu_r, c_r = self._batched_stats("reference", ref_counts)
        mu_g, c_g = self._batched_stats("generated", gen_counts)
        low = np.linalg.cholesky(c_r)
        eig = np.linalg.eigvalsh(np.swapaxes(low, -1, -2) @ c_g @ low)
        diff = mu_r - mu_g
        return ((diff * diff).sum(-1) + np.trace(c_r, axis1=-2, axis2=-1) + np.trace(c_g, axis1=-2, axis2=-1)
                - 2 * np.sqrt(np.clip(eig, 0, None)).sum(-1))


def bootstrap_fad_ci(ref: EmbeddingStats, gen_embs: dict[str, np.ndarray], n_boot: int = 200,
                     seed: int = 0) -> tuple[float, float]:
    """The old FAD interval, kept only as this benchmark's baseline (the pipeline never gives it): a
    percentile bootstrap over generated clips (resampled with replacement, their frames pooled) with
    the reference statistics held fixed. It covered the population value in none of the replications
    (docs/protocol.md, "Intervals"), which is why ``metrics.intervals`` resamples both sides with BCa."""
    arrays = [np.asarray(a, dtype=np.float64) for a in gen_embs.values()]
    if len(arrays) < 2:
        raise FADError("a bootstrap CI over clips needs at least 2 generated clips")
    mu_r, cov_r = ref.mean, ref.cov

    def stat(idx: np.ndarray) -> float:
        x = np.concatenate([arrays[int(i)] for i in idx])
        return frechet_distance(mu_r, cov_r, x.mean(axis=0), np.cov(x, rowvar=False, ddof=1))

    return bootstrap_ci(np.arange(len(arrays)), n_boot=n_boot, seed=seed, statistic=stat)


OUT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "interval_coverage.json"


def population(d: int, seed: int = 2024):
    rng = np.random.default_rng(seed)
    covs = []
    for _ in range(2):
        a = rng.normal(size=(d, d)) / np.sqrt(d)
        covs.append(a @ a.T + 0.5 * np.eye(d))
    mu1, mu2 = np.zeros(d), rng.normal(size=d) * 0.15
    return mu1, covs[0], mu2, covs[1]


def clips(rng, mu, cov, n, frames, prefix):
    x = mu + rng.normal(size=(n, frames, len(mu))) @ np.linalg.cholesky(cov).T
    return {f"{prefix}{i:04d}": x[i] for i in range(n)}


def simulate(reps: int, n_clips: int, frames: int, d: int, n_boot: int, old_boot: int, seed: int) -> dict:
    mu1, s1, mu2, s2 = population(d)
    true = frechet_distance(mu1, s1, mu2, s2)
    rng = np.random.default_rng(seed)
    hits = {"bca": 0, "basic": 0, "percentile": 0, "old_percentile_reference_fixed": 0}
    above = dict.fromkeys(hits, 0)
    estimates = []
    started = time.time()
    for r in range(reps):
        m = BatchedFAD(n_boot=0)
        m.update("reference", clips(rng, mu1, s1, n_clips, frames, "c"))
        m.update("generated", clips(rng, mu2, s2, n_clips, frames, "c"))
        estimates.append(m.compute().value)
        intervals = bootstrap_intervals(m, ("bca", "basic", "percentile"), n_boot=n_boot, seed=r)
        intervals["old_percentile_reference_fixed"] = bootstrap_fad_ci(
            EmbeddingStats.from_embeddings(m.outputs["reference"]), m.outputs["generated"], n_boot=old_boot, seed=r)
        for k, (lo, hi) in intervals.items():
            hits[k] += lo <= true <= hi
            above[k] += lo > true
    rows = {k: {"coverage": hits[k] / reps, "coverage_wilson95": list(wilson_ci(hits[k], reps)),
                "share_entirely_above": above[k] / reps} for k in hits}
    return {"what": "coverage of 95% FAD intervals of a known population Fréchet distance",
            "setup": {"replications": reps, "clips_per_side": n_clips, "frames_per_clip": frames, "dim": d,
                      "n_boot": n_boot, "old_n_boot": old_boot, "seed": seed,
                      "frames": "iid Gaussian, two fixed populations (benchmarks/interval_coverage.py)"},
            "population_fad": true, "mean_estimate": float(np.mean(estimates)),
            "sd_estimate": float(np.std(estimates, ddof=1)), "methods": rows,
            "elapsed_s": round(time.time() - started, 1), "written_by": "benchmarks/interval_coverage.py"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--old-boot", type=int, default=200, help="resamples of the old interval (its default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    doc = simulate(a.reps, 200, 10, 32, a.n_boot, a.old_boot, a.seed)
    write_json(a.out, doc)
    print(json.dumps(doc["methods"], indent=1))


if __name__ == "__main__":
    main()

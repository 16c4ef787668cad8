"""Coverage of FAD's 95 % intervals by simulation: writes docs/figures/interval_coverage.json.

Gaussian frame embeddings with a known population Fréchet distance (closed form), 200 clips × 10
frames per side, d = 32 (issue 17's set-up). Each replication draws both sides afresh, runs the
pipeline's FAD metric (``metrics.fad_metric.FAD``; ``BatchedFAD`` only batches its resamples, same
values to rounding — tests/test_intervals.py checks) and records whether each interval contains the
population value: BCa / basic / percentile from ``metrics.intervals.bootstrap_interval`` (both sides
resampled) and the old ``bootstrap_fad_ci`` kept below as the baseline (generated clips only, percentile).
``tests/test_intervals.py`` asserts the BCa coverage on its own replications; this script is what
the figure in docs/protocol.md ("Intervals") comes from. Run: ``python -m benchmarks.interval_coverage``.

``--conditions``: the same question where the data are unlike those Gaussian frames (issue 27): heavy-tailed
frames, clip effects, d = 64 / 128, unequal set sizes (``benchmarks.coverage_data``), for FAD, KAD, KLD and
MCC, with the false-positive rate of the clip-paired test of two systems from one generator. Every number
comes from ``metrics.run_statistics.statistics``, the function ``compare`` calls, so it measures what users get;
it writes ``docs/figures/interval_coverage_conditions.json`` (rendered by ``benchmarks/figures_coverage.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks import coverage_data
from benchmarks.coverage_data import CONDITIONS, Condition, World, population_values
from metrics.errors import InputError
from metrics.evaluate import GROUND_TRUTH
from metrics.fad import EmbeddingStats, FADError, frechet_distance
from metrics.fad_metric import FAD
from metrics.intervals import bootstrap_ci, bootstrap_intervals, wilson_ci
from metrics.io import write_json
from metrics.kad import KAD
from metrics.kld import KLD
from metrics.mcc import MCC
from metrics.run_statistics import SourceResult, statistics


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


def clips(rng, mu, cov, n, frames, prefix):
    x = mu + rng.normal(size=(n, frames, len(mu))) @ np.linalg.cholesky(cov).T
    return {f"{prefix}{i:04d}": x[i] for i in range(n)}


def simulate(reps: int, n_clips: int, frames: int, d: int, n_boot: int, old_boot: int, seed: int) -> dict:
    world = World(Condition("issue17", dim=d))  # the two fixed Gaussian populations (the same draws as ever)
    (mu1, mu2), (s1, s2) = world.mu, world.cov
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


METRICS = ("fad", "kad", "kld", "mcc")
CONDITIONS_OUT = OUT.with_name("interval_coverage_conditions.json")


def system_states(world: World, outputs: dict[str, dict[str, dict[str, np.ndarray]]], name: str,
                  keys: tuple[str, ...] = METRICS) -> SourceResult:
    """One system scored as ``metrics.evaluate`` scores a source: each metric's state filled by id and
    computed without an interval (the run's ``statistics`` adds them, with the pairs, from one plan)."""
    res = SourceResult(name, None, {})
    n_gen = world.cond.n_gen
    for key, metric in (("fad", FAD("sim", n_boot=0)), ("kad", KAD("sim", n_boot=0)),
                        ("kld", KLD("musiclm", "kld", n_boot=0)), ("mcc", MCC("sim", n_boot=0))):
        if key not in keys:
            continue
        ref = outputs["reference"][metric.output]
        # set-level metrics read the whole reference set; paired metrics each generated clip's partner
        metric.update("reference", ref if key in ("fad", "kad") else dict(list(ref.items())[:n_gen]))
        metric.update("generated", outputs[name][metric.output])
        res.metrics[key], res.states[key] = metric.compute(), metric
    return res


def tally(intervals: list[tuple[float, float]], truth: float) -> dict:
    """Coverage of ``truth`` by the intervals, with its Wilson 95 % interval and the misses on each side."""
    n = len(intervals)
    lo, hi = np.array([i[0] for i in intervals]), np.array([i[1] for i in intervals])
    hits = int(((lo <= truth) & (truth <= hi)).sum())
    return {"coverage": hits / n, "coverage_wilson95": list(wilson_ci(hits, n)), "share_entirely_above": float((lo > truth).mean()),
            "share_entirely_below": float((hi < truth).mean()), "mean_width": float((hi - lo).mean())}


def rejections(pvalues: list[float], alpha: float = 0.05) -> dict:
    """Share of paired tests rejecting at ``alpha`` (under a true null: the false-positive rate), with Wilson 95 %."""
    k = int(sum(p < alpha for p in pvalues))
    return {"false_positive_rate": k / len(pvalues), "fpr_wilson95": list(wilson_ci(k, len(pvalues))), "alpha": alpha}


def simulate_condition(cond: Condition, reps: int, n_boot: int, seed: int, truth: dict | None = None,
                       keys: tuple[str, ...] = METRICS) -> dict:
    """``reps`` runs of one condition: a reference set and two systems from one generator (a true null),
    every interval and the paired test of each metric from ``metrics.run_statistics.statistics`` (what ``compare``
    computes, one ``ResamplingPlan`` per run, seeded by the replication); system a's intervals are scored
    against the population values (``truth``: given, e.g. from smaller samples in a test, or computed)."""
    world = World(cond)
    rng = np.random.default_rng(seed)
    started = time.time()
    truth = truth or population_values(world, np.random.default_rng(seed + 10_000))
    intervals: dict[str, list] = {k: [] for k in keys}
    estimates: dict[str, list] = {k: [] for k in keys}
    pvalues: dict[str, list] = {k: [] for k in keys}
    for r in range(reps):
        caps = world.captions(rng, cond.n_ref)
        outputs = {"reference": world.reference(rng, caps), "a": world.system(rng, caps, cond.n_gen),
                   "b": world.system(rng, caps, cond.n_gen)}
        systems = {name: system_states(world, outputs, name, keys) for name in ("a", "b")}
        rows = statistics(SourceResult(GROUND_TRUTH, None, {}), systems, n_boot, seed + r)
        for key in keys:
            estimates[key].append(systems["a"].metrics[key].value)
            intervals[key].append(tuple(systems["a"].metrics[key].ci95))
        for row in rows:
            pvalues[row["metric"]].append(row["p_value"])
    metrics = {k: {"population": truth[k], "mean_estimate": float(np.mean(estimates[k])),
                   "sd_estimate": float(np.std(estimates[k], ddof=1)), **tally(intervals[k], truth[k]["value"]),
                   **rejections(pvalues[k])} for k in keys}
    return {"setup": cond.describe(), "metrics": metrics, "elapsed_s": round(time.time() - started, 1)}


def simulate_conditions(conditions: tuple[Condition, ...], reps: int, n_boot: int, seed: int,
                        out: Path | None = None, keys: tuple[str, ...] = METRICS) -> dict:
    """Every condition of ``conditions`` (the document ``docs/figures/interval_coverage_conditions.json``
    holds); written to ``out`` after each condition, with ``complete`` false until the last, so a long run
    that is stopped keeps what it measured. With ``keys`` a subset of the metrics and ``out`` an existing
    document of the same settings, only those metrics' rows are replaced (a metric re-measured after a fix,
    the others kept as measured); each condition's ``rerun`` says which rows were and their time."""
    if set(keys) != set(METRICS) and out is not None and out.exists():
        return _rerun_rows(conditions, reps, n_boot, seed, out, keys)
    doc = {"what": "coverage of 95 % intervals (each metric's interval_method, as compare computes them) of FAD, KAD, "
                   "KLD (musiclm) and MCC "
                   "of their population values, and the false-positive rate of the clip-paired test of two "
                   "systems from one generator, per simulated condition",
           "settings": {"replications": reps, "n_boot": n_boot, "seed": seed, "alpha": 0.05,
                        "interval": {k: m.interval_method for k, m in (("fad", FAD), ("kad", KAD), ("kld", KLD), ("mcc", MCC))},
                        "kad_bandwidth": "generated (the default)", "kld_convention": "musiclm",
                        "data": "benchmarks/coverage_data.py", "population_values": coverage_data.__doc__.split(
                            "Population values (``population_values``): ")[1].strip()},
           "conditions": {}, "complete": False, "written_by": "benchmarks/interval_coverage.py --conditions"}
    for k, cond in enumerate(conditions):
        doc["conditions"][cond.name] = simulate_condition(cond, reps, n_boot, seed, keys=keys)
        doc["complete"] = k == len(conditions) - 1
        if out is not None:
            write_json(out, doc)
    return doc


def _rerun_rows(conditions: tuple[Condition, ...], reps: int, n_boot: int, seed: int, out: Path,
                keys: tuple[str, ...]) -> dict:
    """``simulate_conditions`` for some metrics, merged into the document at ``out`` (same settings only)."""
    doc = json.loads(out.read_text())
    if (doc["settings"]["replications"], doc["settings"]["n_boot"], doc["settings"]["seed"]) != (reps, n_boot, seed):
        raise InputError(f"{out}: measured with replications {doc['settings']['replications']}, n_boot "
                         f"{doc['settings']['n_boot']}, seed {doc['settings']['seed']}; rerun rows with the same settings")
    doc["complete"] = False
    for k, cond in enumerate(conditions):
        new = simulate_condition(cond, reps, n_boot, seed, keys=keys)
        row = doc["conditions"].setdefault(cond.name, {"setup": new["setup"], "metrics": {}})
        row["metrics"].update(new["metrics"])
        row.setdefault("rerun", {}).update({key: {"elapsed_s": new["elapsed_s"], "with": ", ".join(keys)} for key in keys})
        doc["complete"] = k == len(conditions) - 1
        write_json(out, doc)
    return doc


def merge_conditions(paths: list[Path], out: Path) -> dict:
    """One document from runs of separate conditions (e.g. one process per condition, in parallel): the same
    settings required, conditions in ``CONDITIONS`` order, ``complete`` when every condition is present."""
    docs = [json.loads(p.read_text()) for p in paths]
    for p, d in zip(paths[1:], docs[1:]):
        if d["settings"] != docs[0]["settings"]:
            raise InputError(f"--merge: {p} was measured with other settings than {paths[0]}")
    found = {name: row for d in docs for name, row in d["conditions"].items()}
    doc = {**docs[0], "conditions": {c.name: found[c.name] for c in CONDITIONS if c.name in found},
           "complete": all(c.name in found for c in CONDITIONS), "merged_from": len(paths)}
    write_json(out, doc)
    return doc


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--old-boot", type=int, default=200, help="resamples of the old interval (its default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--conditions", nargs="*", metavar="NAME", default=None,
                   help="the data conditions instead (all when none named): writes " + str(CONDITIONS_OUT.name))
    p.add_argument("--metrics", nargs="+", choices=METRICS, default=list(METRICS),
                   help="with --conditions: measure only these metrics; an existing artifact of the same settings "
                        "keeps the other metrics' rows")
    p.add_argument("--merge", nargs="+", type=Path, metavar="JSON", default=None,
                   help="merge --conditions documents of single conditions (same settings) into " + str(CONDITIONS_OUT.name))
    a = p.parse_args(argv)
    if a.merge:
        doc = merge_conditions(a.merge, a.out if a.out != OUT else CONDITIONS_OUT)
        print(f"merged {len(doc['conditions'])} conditions; complete: {doc['complete']}")
        return
    if a.conditions is not None:
        known = {c.name: c for c in CONDITIONS}
        unknown = sorted(set(a.conditions) - set(known))
        if unknown:
            p.error(f"--conditions: unknown {', '.join(unknown)} (known: {', '.join(known)})")
        chosen = tuple(known[n] for n in a.conditions) or CONDITIONS
        doc = simulate_conditions(chosen, a.reps, a.n_boot, a.seed, a.out if a.out != OUT else CONDITIONS_OUT,
                                  tuple(a.metrics))
        print(json.dumps({c: {k: (v["coverage"], v["false_positive_rate"]) for k, v in r["metrics"].items()}
                          for c, r in doc["conditions"].items()}, indent=1))
        return
    doc = simulate(a.reps, 200, 10, 32, a.n_boot, a.old_boot, a.seed)
    write_json(a.out, doc)
    print(json.dumps(doc["methods"], indent=1))


if __name__ == "__main__":
    main()

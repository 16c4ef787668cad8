"""MAD against its peer and its own noise: ``python -m benchmarks.mad_check`` writes ``docs/figures/mad_check.json``.

Three measurements on seeded Gaussian clip embeddings (no model; what MAD sees after pooling):

- **parity**: |MAD − (−log ``mauve.compute_mauve``)| over a grid of set sizes, dimensions and drifts (the
  peer's own code, the same settings and seed);
- **quantizer vs sampling noise**: the spread of MAD over ``mauve_seed`` (k-means' start, which the
  intervals do not resample: docs/protocol.md, "MAD") against the bootstrap spread of one quantization;
- **cost**: the point value and ``n_boot`` resamples of ``value_on_counts`` (what ``compare --mad`` adds per
  system and embedder after the embeddings).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from metrics.io import write_json
from metrics.mad import MAD
from metrics.resampling import ResamplingPlan

OUT = Path("docs/figures/mad_check.json")


def _sets(seed: int, n: int, d: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) + shift * np.eye(d)[0], rng.standard_normal((n, d))


def _metric(p: np.ndarray, q: np.ndarray, **kw) -> MAD:
    m = MAD("gaussian", **kw)
    m.update("reference", {f"r{i:05d}": v[None] for i, v in enumerate(q)})
    m.update("generated", {f"g{i:05d}": v[None] for i, v in enumerate(p)})
    return m


def parity(seed: int) -> dict:
    import mauve

    rows = []
    for k, (n, d, shift) in enumerate([(n, d, s) for n in (30, 100, 300) for d in (8, 64) for s in (0.0, 0.5, 2.0)]):
        p, q = _sets(seed + k, n, d, shift)
        ours = _metric(p, q, n_boot=0).compute().value
        peer = float(-np.log(mauve.compute_mauve(p_features=p, q_features=q).mauve))
        rows.append({"n": n, "d": d, "shift": shift, "mad": ours, "peer": peer, "abs_diff": abs(ours - peer)})
    return {"cases": rows, "max_abs_diff": max(r["abs_diff"] for r in rows)}


def noise(seed: int, n_boot: int, seeds: int) -> list[dict]:
    out = []
    for n in (100, 300):
        for shift in (0.25, 0.75):
            p, q = _sets(seed, n, 32, shift)
            by_seed = [_metric(p, q, mauve_seed=s, n_boot=0).compute().value for s in range(seeds)]
            m = _metric(p, q, n_boot=0)
            ref, gen, _, _ = ResamplingPlan(n_boot, seed).interval(n, n)
            boot = m.value_on_counts(ref.counts, gen.counts)
            out.append({"n": n, "d": 32, "shift": shift, "mad_seed25": m.compute().value,
                        "seed_mean": float(np.mean(by_seed)), "seed_sd": float(np.std(by_seed, ddof=1)),
                        "bootstrap_sd": float(np.nanstd(boot, ddof=1)), "n_seeds": seeds, "n_boot": n_boot})
    return out


def cost(seed: int, n_boot: int) -> list[dict]:
    out = []
    for n in (100, 1000):
        p, q = _sets(seed, n, 128, 0.5)
        t0 = time.perf_counter()
        m = _metric(p, q, n_boot=0)
        m.compute()
        t1 = time.perf_counter()
        ref, gen, _, _ = ResamplingPlan(n_boot, seed).interval(n, n)
        m.value_on_counts(ref.counts, gen.counts)
        out.append({"clips_a_side": n, "d": 128, "point_value_s": round(t1 - t0, 3),
                    "resamples_s": round(time.perf_counter() - t1, 3), "n_boot": n_boot})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=1000, help="resamples for the bootstrap spread and the cost")
    ap.add_argument("--seeds", type=int, default=20, help="k-means seeds for the quantizer's spread")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    started = time.time()
    doc = {"command": f"python -m benchmarks.mad_check --seed {a.seed} --bootstrap {a.bootstrap} --seeds {a.seeds}",
           "loadavg_1min_at_start": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
           "parity": parity(a.seed), "noise": noise(a.seed, a.bootstrap, a.seeds), "cost": cost(a.seed, a.bootstrap)}
    doc["elapsed_s"] = round(time.time() - started, 1)
    write_json(a.out, doc)
    print(f"wrote {a.out} ({doc['elapsed_s']} s); parity max |diff| {doc['parity']['max_abs_diff']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

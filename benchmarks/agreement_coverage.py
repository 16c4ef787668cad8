"""Coverage of the metric–human agreement intervals by simulation: writes docs/figures/agreement_coverage.json.

Each replication draws a study afresh from ``human_eval.simulate`` (latent per-clip quality, a planted metric
with per-clip correlation ρ, rater biases and noise; the design below) and runs the function ``musiclm-eval
agreement`` calls (``human_eval.agreement.agreement_frame``), recording whether the two-way bootstrap interval
of the pair-level agreement contains the planted (population) agreement, and whether the caption sign-flip
test rejects at 5 % for the independent metric (its false-positive rate) and for the planted one (power).
The figure ``agreement-coverage`` in docs/protocol.md is rendered from the artifact by ``benchmarks.figures``.

    python -m benchmarks.agreement_coverage                # 200 replications per setting, 1000 resamples
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from human_eval.agreement import agreement_frame
from human_eval.agreement_plan import study_metrics
from human_eval.simulate import SimulationSpec, population_agreement, simulate_study
from metrics.intervals import wilson_ci
from metrics.io import write_json

OUT = Path("docs/figures/agreement_coverage.json")
SETTINGS = {  # name: the design and planted correlation
    "4 systems, 30 captions, 12 raters x 3 per trial, rho 0.6": SimulationSpec(),
    "4 systems, 12 captions, 6 raters x 2 per trial, rho 0.4": SimulationSpec(captions=12, raters=6,
                                                                              ratings_per_trial=2, rho=0.4),
    "6 systems, 20 captions, 20 raters x 1 per trial, rho 0.8, strong rater bias": SimulationSpec(
        systems=6, captions=20, raters=20, ratings_per_trial=1, rho=0.8, rater_bias_sd=0.8),
}


def replicate(spec: SimulationSpec, seed: int, n_boot: int) -> dict:
    """One study: the planted and independent metrics' agreement, interval and p."""
    st = simulate_study(spec, seed=seed)
    t = agreement_frame(st.ratings, st.systems, study_metrics(st), n_boot=n_boot, seed=seed,
                        system_level=False, points=False).table.set_index("metric")
    return {m: {"agreement": float(t.loc[m, "agreement"]), "ci95": list(t.loc[m, "agreement_ci95"]),
                "p": float(t.loc[m, "agreement_p"])} for m in ("planted", "independent")}


def run(reps: int = 200, n_boot: int = 1000, seed: int = 0, log=print) -> dict:
    rows = []
    for name, spec in SETTINGS.items():
        t0 = time.time()
        truth = population_agreement(spec)
        reps_out = [replicate(spec, seed * 100_003 + k, n_boot) for k in range(reps)]
        row = {"setting": name, "spec": asdict(spec), "planted_agreement": truth, "reps": reps}
        for m, target in (("planted", truth), ("independent", 0.5)):
            cover = sum(r[m]["ci95"][0] <= target <= r[m]["ci95"][1] for r in reps_out)
            reject = sum(r[m]["p"] < 0.05 for r in reps_out)
            est = np.array([r[m]["agreement"] for r in reps_out])
            row[m] = {"target": target, "coverage": cover / reps, "coverage_wilson95": list(wilson_ci(cover, reps)),
                      "mean_estimate": float(est.mean()), "bias": float(est.mean() - target),
                      "mean_ci_width": float(np.mean([r[m]["ci95"][1] - r[m]["ci95"][0] for r in reps_out])),
                      "rejection_rate_5pct": reject / reps, "rejection_wilson95": list(wilson_ci(reject, reps))}
        rows.append(row)
        log(f"{name}: planted {truth:.3f}; coverage planted {row['planted']['coverage']:.3f}, independent "
            f"{row['independent']['coverage']:.3f}; power {row['planted']['rejection_rate_5pct']:.3f}, false positives "
            f"{row['independent']['rejection_rate_5pct']:.3f} ({time.time() - t0:.0f} s)")
    return {"what": "coverage of the two-way (raters x captions) bootstrap 95% interval of pair-level metric-human "
                    "agreement, and the caption sign-flip test's rejection rate, on simulated studies "
                    "(human_eval.simulate)", "n_boot": n_boot, "seed": seed, "settings": rows,
            "command": f"python -m benchmarks.agreement_coverage --reps {reps} --bootstrap {n_boot} --seed {seed}"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    write_json(a.out, run(a.reps, a.bootstrap, a.seed))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

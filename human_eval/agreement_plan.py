"""``rate plan --agreement``: power and interval width of ``musiclm-eval agreement`` by simulating the study.

Kept apart from ``human_eval.planning`` (the pairwise plan, which ``analysis`` imports) so that the agreement
analysis it runs never imports back into the planner.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from human_eval.agreement import MetricValues, agreement_frame
from human_eval.planning import PlanError
from human_eval.simulate import SimulatedStudy, SimulationSpec, population_agreement, rho_for_agreement, simulate_study


def study_metrics(st: SimulatedStudy, names: tuple[str, ...] = ("planted", "independent")) -> list[MetricValues]:
    """A simulated study's metrics (higher is better) as ``human_eval.agreement`` reads them."""
    keys = list(zip(st.per_clip.system, st.per_clip.ytid, strict=True))
    return [MetricValues(n, True, {}, dict(zip(keys, st.per_clip[n].to_numpy(), strict=True))) for n in names]


def agreement_power(agreement: float, systems: int, captions: int, raters: int, ratings_per_trial: int = 1,
                    alpha: float = 0.05, rater_sd: float = 0.3, n_sim: int = 200, n_boot: int = 200,
                    seed: int = 0) -> dict:
    """Power of ``musiclm-eval agreement``'s caption sign-flip test to tell a metric whose pair-level agreement
    with listeners is ``agreement`` from chance (½), and the width of its interval, by simulating the study
    (``human_eval.simulate``: the planted per-clip correlation ρ is solved for so the population agreement
    equals ``agreement``) and running the analysis itself on every replication."""
    if captions < 2 or raters < 1 or not 1 <= ratings_per_trial <= raters:
        raise PlanError(f"--captions must be at least 2, --raters at least 1 and --ratings-per-trial in [1, raters] "
                        f"(got {captions}, {raters}, {ratings_per_trial})")
    spec = SimulationSpec(systems=systems, captions=captions, raters=raters, ratings_per_trial=ratings_per_trial,
                          rater_bias_sd=rater_sd)
    spec = replace(spec, rho=rho_for_agreement(agreement, spec))
    truth = population_agreement(spec)
    hits, widths, cover = 0, [], 0
    for k in range(n_sim):
        st = simulate_study(spec, seed=seed * 1_000_003 + k)
        row = agreement_frame(st.ratings, st.systems, study_metrics(st, ("planted",)), n_boot=n_boot, seed=k, system_level=False, points=False).table.iloc[0]
        hits += row.agreement_p < alpha
        lo, hi = row.agreement_ci95
        widths.append(hi - lo)
        cover += lo <= truth <= hi
    pw = hits / n_sim
    return {"agreement": agreement, "planted_agreement": truth, "rho": spec.rho, "systems": systems,
            "captions": captions, "raters": raters, "ratings_per_trial": ratings_per_trial,
            "ratings": captions * systems * (systems - 1) // 2 * ratings_per_trial, "alpha": alpha,
            "power": pw, "power_se": math.sqrt(pw * (1 - pw) / n_sim), "mean_ci95_width": float(np.mean(widths)),
            "ci95_coverage": cover / n_sim, "n_sim": n_sim, "n_boot": n_boot, "seed": seed,
            "test": "caption sign-flip permutation test against 0.5 (human_eval.agreement)",
            "simulation": "human_eval.simulate (latent clip quality, planted metric, rater bias sd "
                          f"{rater_sd}, every trial rated by {ratings_per_trial} of {raters} raters)"}

"""The demo's last step: a SIMULATED listening study on its generated pairs, and the agreement table.

``make run`` builds a real study database but has no listeners, so the metric–human loop would stop there.
This step copies the database (the real one stays clean for real raters), lets ``human_eval.simulate`` raters
rate every pair trial — preferences following each clip's MCC (z-scored) plus a latent part MCC does not see,
rater biases and noise, i.e. MCC's agreement is planted — and runs ``musiclm-eval agreement`` on it. Every
line it prints and the store it writes say SIMULATED: these are not listeners' judgements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np

from metrics.evaluate import GROUND_TRUTH

PLANTED_FROM = "mcc"  # the per-clip column the simulated raters' preferences follow
LATENT_SD = 0.7  # the share of quality MCC does not see (SD, in z units of MCC)
RENAME = {"reference": GROUND_TRUTH}  # the study's reference is the store's ground truth


def simulated_quality(per_clip, seed: int) -> dict[tuple[str, str], float]:
    """(study system, ytid) → latent quality: z-scored MCC plus N(0, LATENT_SD²); 0 + noise where MCC is absent."""
    to_study = {v: k for k, v in RENAME.items()}
    v = per_clip[PLANTED_FROM].to_numpy(dtype=np.float64) if PLANTED_FROM in per_clip else np.full(len(per_clip), np.nan)
    z = (v - np.nanmean(v)) / (np.nanstd(v) or 1.0)
    rng = np.random.default_rng(seed)
    z = np.where(np.isfinite(z), z, 0.0) + LATENT_SD * rng.standard_normal(len(z))
    return {(to_study.get(s, s), str(y)): float(q) for s, y, q in zip(per_clip.system, per_clip.ytid, z, strict=True)}


def simulated_agreement(out: Path, study_url: str, seed: int, log: Callable[[str], None], raters: int = 8,
                        ratings_per_trial: int = 4, n_boot: int = 1000) -> Path:
    """Copy the study, rate it with simulated raters, write ``out/agreement`` (kind "agreement"); returns it."""
    from human_eval import db
    from human_eval.agreement import agreement
    from human_eval.agreement_report import table_text, write_outputs
    from human_eval.simulate import write_simulated_ratings
    from metrics.store import read_store

    src = db.sqlite_path(study_url)
    sim = out / "study_simulated.db"
    sim.unlink(missing_ok=True)
    with sqlite3.connect(src) as a, sqlite3.connect(sim) as b:
        a.backup(b)
    sim_url = f"sqlite:///{sim.resolve()}"
    store = out / "results"
    quality = simulated_quality(read_store(store).per_clip, seed)
    n = write_simulated_ratings(sim_url, quality, raters=raters, ratings_per_trial=ratings_per_trial, seed=seed)
    r = agreement(store, sim_url, rename=RENAME, n_boot=n_boot, seed=seed)
    write_outputs(r, out / "agreement")
    log(f"  SIMULATED study ({n} ratings by {raters} simulated raters whose preferences follow per-clip "
        f"{PLANTED_FROM} + latent noise; NOT listeners) in {sim}; agreement of every metric with it:")
    for line in table_text(r).splitlines():
        log(f"  {line}")
    return out / "agreement"

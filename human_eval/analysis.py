"""The study's results from the database: wins table, per-pair tests, Bradley–Terry strengths, agreement.

Attention checks are applied first: a rater who failed more than ``max_failures`` gold trials
(failure = no preference or a preference for the clip made for another caption) is excluded from
every number below, and the exclusions are reported. The ``compare`` harness reads
``wins_by_system``; the dashboard reads ``analyze`` — neither runs SQL of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from human_eval import db
from human_eval.stats import (
    EXACT_MAX_N,
    bonferroni,
    bootstrap_bradley_terry,
    bradley_terry,
    holm,
    krippendorff_alpha_interval,
    sign_test,
    wilcoxon_signed_rank,
)

ZERO_RULE = ("Wilcoxon signed-rank on the signed scores (−2…+2) of each pair; zero handling: Wilcoxon's rule "
             "(no-preference answers dropped, zero_method='wilcox'), mid-ranks for tied |scores|; p exact "
             f"conditional on the tied ranks for n ≤ {EXACT_MAX_N}, tie-corrected normal above; sign test: exact "
             "binomial on wins vs losses (ties dropped); Bonferroni and Holm over the pairs.")


@dataclass
class StudyAnalysis:
    systems: list[str]
    ratings: pd.DataFrame
    raters: pd.DataFrame
    wins: pd.DataFrame
    wins_matrix: pd.DataFrame
    pairs: pd.DataFrame
    strengths: pd.DataFrame
    agreement: dict = field(default_factory=dict)
    exclusions: dict = field(default_factory=dict)
    progress: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        def records(df: pd.DataFrame) -> list[dict]:
            return json.loads(df.to_json(orient="records"))

        return {"schema_version": 1, "systems": self.systems, "rules": ZERO_RULE, "progress": self.progress,
                "exclusions": self.exclusions, "wins": records(self.wins), "pairs": records(self.pairs),
                "bradley_terry": records(self.strengths), "agreement": self.agreement,
                "raters": records(self.raters)}


def load_ratings(engine) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """(system names in study order, one row per rating with system names, one row per rater)."""
    SA, SB = aliased(db.System), aliased(db.System)
    CA, CB = aliased(db.Clip), aliased(db.Clip)
    with db.sessions(engine)() as s:
        study = db.the_study(s)
        systems = [x.name for x in study.systems]
        rows = s.execute(
            select(db.Rating.id, db.Rating.rater_id, db.Rating.trial_id, db.Trial.kind, db.Trial.item_id,
                   SA.name, SB.name, db.Rating.answer, db.Rating.score,
                   (db.Rating.left_clip_id == db.Trial.clip_a_id), db.Rating.seconds_spent, db.Rating.submitted_at)
            .join(db.Trial, db.Trial.id == db.Rating.trial_id)
            .join(CA, CA.id == db.Trial.clip_a_id).join(CB, CB.id == db.Trial.clip_b_id)
            .join(SA, SA.id == CA.system_id).join(SB, SB.id == CB.system_id)
            .order_by(db.Rating.id)
        ).all()
        raters = s.execute(select(db.Rater.id, db.Rater.label, db.Rater.prolific_pid, db.Rater.completed_at)
                           .order_by(db.Rater.id)).all()
    ratings = pd.DataFrame(rows, columns=["rating_id", "rater_id", "trial_id", "kind", "item_id", "system_a", "system_b",
                                          "answer", "score", "a_on_left", "seconds_spent", "submitted_at"])
    ratings["submitted_at"] = ratings["submitted_at"].astype(str)
    rater_df = pd.DataFrame(raters, columns=["rater_id", "label", "prolific_pid", "completed_at"])
    rater_df["completed_at"] = rater_df["completed_at"].astype(str).replace({"None": "", "NaT": ""})
    return systems, ratings, rater_df


def analyze(url: str, max_failures: int = 0, n_boot: int = 1000, seed: int = 0) -> StudyAnalysis:
    engine = db.open_db(url)
    try:
        systems, ratings, raters = load_ratings(engine)
        progress = progress_tables(engine)
    finally:
        engine.dispose()
    return analyze_frame(systems, ratings, raters, max_failures, n_boot, seed, progress)


def analyze_frame(systems: list[str], ratings: pd.DataFrame, raters: pd.DataFrame, max_failures: int = 0,
                  n_boot: int = 1000, seed: int = 0, progress: dict | None = None) -> StudyAnalysis:
    att = ratings[ratings.kind == "attention"]
    failed = att[att.score <= 0].groupby("rater_id").size()
    passed = att[att.score > 0].groupby("rater_id").size()
    raters = raters.copy()
    raters["attention_passed"] = raters.rater_id.map(passed).fillna(0).astype(int)
    raters["attention_failed"] = raters.rater_id.map(failed).fillna(0).astype(int)
    raters["excluded"] = raters.attention_failed > max_failures
    pair = ratings[ratings.kind == "pair"]
    raters["n_ratings"] = raters.rater_id.map(pair.groupby("rater_id").size()).fillna(0).astype(int)
    raters["median_seconds"] = raters.rater_id.map(pair.groupby("rater_id").seconds_spent.median())
    excluded_ids = set(raters.rater_id[raters.excluded])
    kept = pair[~pair.rater_id.isin(excluded_ids)]
    exclusions = {
        "rule": f"rater excluded when attention-check failures > {max_failures} (failure = no preference or "
                "a preference for the clip made for another caption)",
        "excluded_raters": [int(r) for r in sorted(excluded_ids)],
        "excluded_ratings": int(pair.rater_id.isin(excluded_ids).sum()),
        "kept_ratings": len(kept),
    }

    idx = {n: i for i, n in enumerate(systems)}
    S = len(systems)
    win_m = np.zeros((S, S), dtype=np.int64)
    tie_m = np.zeros((S, S), dtype=np.int64)
    for (a, b), g in kept.groupby(["system_a", "system_b"]):
        win_m[idx[a], idx[b]] += int((g.score > 0).sum())
        win_m[idx[b], idx[a]] += int((g.score < 0).sum())
        tie_m[idx[a], idx[b]] += int((g.score == 0).sum())
        tie_m[idx[b], idx[a]] += int((g.score == 0).sum())

    wins = pd.DataFrame({"system": systems, "wins": win_m.sum(axis=1), "losses": win_m.sum(axis=0),
                         "ties": tie_m.sum(axis=1)})
    wins["comparisons"] = wins.wins + wins.losses + wins.ties
    wins_matrix = pd.DataFrame(win_m, index=systems, columns=systems)
    wins_matrix.index.name = "winner \\ loser"

    rows = []
    for (a, b), g in kept.groupby(["system_a", "system_b"], sort=False):
        w = wilcoxon_signed_rank(g.score.to_numpy())
        n_w, n_l = int((g.score > 0).sum()), int((g.score < 0).sum())
        rows.append({"system_a": a, "system_b": b, "n": len(g), "wins_a": n_w, "ties": len(g) - n_w - n_l,
                     "wins_b": n_l, "mean_score": float(g.score.mean()), "sign_p": sign_test(n_w, n_l),
                     "wilcoxon_n": w.n, "wilcoxon_w_plus": w.w_plus, "wilcoxon_w_minus": w.w_minus,
                     "wilcoxon_statistic": w.statistic, "wilcoxon_z": w.z, "wilcoxon_p": w.p,
                     "wilcoxon_p_normal": w.p_normal})
    pairs = pd.DataFrame(rows, columns=["system_a", "system_b", "n", "wins_a", "ties", "wins_b", "mean_score", "sign_p",
                                        "wilcoxon_n", "wilcoxon_w_plus", "wilcoxon_w_minus", "wilcoxon_statistic",
                                        "wilcoxon_z", "wilcoxon_p", "wilcoxon_p_normal"])
    if len(pairs):
        for col in ("wilcoxon_p", "sign_p"):
            pairs[f"{col}_bonferroni"] = bonferroni(pairs[col])
            pairs[f"{col}_holm"] = holm(pairs[col])

    strengths = _strengths(systems, kept, n_boot, seed)
    agreement = _agreement(kept, raters)
    return StudyAnalysis(systems, ratings, raters, wins, wins_matrix, pairs, strengths, agreement, exclusions,
                         progress or {})


def _strengths(systems: list[str], kept: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Bradley–Terry log-strengths (ties left out, as in the sign test) with rater-bootstrap 95% CIs."""
    idx = {n: i for i, n in enumerate(systems)}
    decided = kept[kept.score != 0]
    rater_ids = sorted(decided.rater_id.unique())
    per_rater = np.zeros((len(rater_ids), len(systems), len(systems)))
    rpos = {r: k for k, r in enumerate(rater_ids)}
    for row in decided.itertuples():
        i, j = idx[row.system_a], idx[row.system_b]
        winner, loser = (i, j) if row.score > 0 else (j, i)
        per_rater[rpos[row.rater_id], winner, loser] += 1
    cols = ["system", "log_strength", "ci_low", "ci_high", "strength", "n_raters"]
    if not rater_ids:
        return pd.DataFrame(columns=cols)
    beta = bradley_terry(per_rater.sum(axis=0))
    if n_boot > 0 and len(rater_ids) > 1:
        lo, hi = bootstrap_bradley_terry(per_rater, n_boot=n_boot, seed=seed)
    else:  # no CI asked for (or one rater: nothing to resample)
        lo = hi = np.full(len(systems), np.nan)
    return pd.DataFrame({"system": systems, "log_strength": beta, "ci_low": lo, "ci_high": hi,
                         "strength": np.exp(beta), "n_raters": len(rater_ids)}, columns=cols)


def _agreement(kept: pd.DataFrame, raters: pd.DataFrame) -> dict:
    """Krippendorff's α (interval, on scores) and pairwise direction agreement on trials rated more than once."""
    multi = kept[kept.groupby("trial_id").trial_id.transform("size") >= 2]  # skip the (many) singly rated trials
    units = [g.score.to_numpy() for _, g in multi.groupby("trial_id")]
    per_rater: dict[int, list[float]] = {}
    same = total = 0
    for _, g in multi.groupby("trial_id"):
        signs = np.sign(g.score.to_numpy())
        ids = g.rater_id.to_numpy()
        for x in range(len(g)):
            for y in range(x + 1, len(g)):
                ok = float(signs[x] == signs[y])
                same += ok
                total += 1
                per_rater.setdefault(int(ids[x]), []).append(ok)
                per_rater.setdefault(int(ids[y]), []).append(ok)
    raters["agreement_with_others"] = raters.rater_id.map({r: float(np.mean(v)) for r, v in per_rater.items()})
    return {"trials_rated_more_than_once": len(units),
            "krippendorff_alpha_interval": krippendorff_alpha_interval(units) if units else None,
            "pairwise_direction_agreement": same / total if total else None}


def wins_by_system(url: str, max_failures: int = 0) -> dict[str, int]:
    """Each system's total wins over all its pairs (the paper's Table 1 'wins' column), exclusions applied."""
    a = analyze(url, max_failures=max_failures, n_boot=0)
    return {r.system: int(r.wins) for r in a.wins.itertuples()}


def progress_tables(engine) -> dict:
    """Ratings collected vs wanted per pair, and per rater; what the admin page and the dashboard show."""
    SA, SB = aliased(db.System), aliased(db.System)
    CA, CB = aliased(db.Clip), aliased(db.Clip)
    with db.sessions(engine)() as s:
        trials = s.execute(select(db.Trial.id, db.Trial.kind, db.Trial.required, SA.name, SB.name)
                           .join(CA, CA.id == db.Trial.clip_a_id).join(CB, CB.id == db.Trial.clip_b_id)
                           .join(SA, SA.id == CA.system_id).join(SB, SB.id == CB.system_id)).all()
        rated = dict(s.execute(select(db.Rating.trial_id, func.count()).group_by(db.Rating.trial_id)).all())
        n_raters = s.query(db.Rater).count()
        n_done = s.query(db.Rater).filter(db.Rater.completed_at.is_not(None)).count()
    by_pair: dict[str, dict] = {}
    for t in trials:
        if t.kind != "pair":
            continue
        d = by_pair.setdefault(f"{t[3]} vs {t[4]}", {"wanted": 0, "collected": 0})
        d["wanted"] += t.required
        d["collected"] += min(rated.get(t.id, 0), t.required)
    wanted = sum(d["wanted"] for d in by_pair.values())
    collected = sum(d["collected"] for d in by_pair.values())
    return {"ratings_wanted": wanted, "ratings_collected": collected, "raters": n_raters,
            "raters_completed": n_done, "by_pair": by_pair}


def write_outputs(a: StudyAnalysis, out: str | Path) -> dict[str, Path]:
    """analysis.json, wins.csv, wins_matrix.csv, pairs.csv, bradley_terry.csv, raters.csv, ratings.csv and two PNGs."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "analysis.json"}
    paths["json"].write_text(json.dumps(a.to_json(), indent=2, default=str))
    for name, df, index in (("wins", a.wins, False), ("wins_matrix", a.wins_matrix, True), ("pairs", a.pairs, False),
                            ("bradley_terry", a.strengths, False), ("raters", a.raters, False),
                            ("ratings", a.ratings, False)):
        paths[name] = out / f"{name}.csv"
        df.to_csv(paths[name], index=index)
    paths.update(_plots(a, out))
    return paths


def _plots(a: StudyAnalysis, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(a.wins.system, a.wins.wins, color="tab:blue")
    ax.set_ylabel("wins (strong or weak preference)")
    ax.set_title("Pairwise wins")
    fig.tight_layout()
    fig.savefig(out / "wins.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    st = a.strengths
    if len(st):
        y = np.arange(len(st))
        ax.errorbar(st.log_strength, y, xerr=[st.log_strength - st.ci_low, st.ci_high - st.log_strength], fmt="o", capsize=4)
        ax.set_yticks(y, st.system)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("Bradley–Terry log-strength (95% CI, raters resampled)")
    fig.tight_layout()
    fig.savefig(out / "bradley_terry.png", dpi=120)
    plt.close(fig)
    return {"wins_png": out / "wins.png", "bradley_terry_png": out / "bradley_terry.png"}


def export_ratings_csv(url: str) -> str:
    """Every rating with its systems, rater and timing, as CSV text (the admin download)."""
    engine = db.open_db(url)
    try:
        _, ratings, _ = load_ratings(engine)
    finally:
        engine.dispose()
    return ratings.to_csv(index=False)

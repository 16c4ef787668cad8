"""The study's results from the database: wins table, per-pair tests, Bradley–Terry strengths, agreement.

Exclusions are applied first: a rater who failed more than ``max_failures`` gold trials (failure = no
preference or a preference for the clip made for another caption), or — when ``screening='exclude'`` —
failed the headphone check, is excluded from every number below, and the exclusions are reported.

Each pair gets the pooled tests (Wilcoxon, sign test: every rating an independent unit, as in the
MusicLM paper) and beside them the rater-aware ones (rater sign-flip p, rater-cluster bootstrap CIs of the
mean score and win rate), so a few raters with strong leanings cannot pass for many independent votes;
``primary`` names the one a report should quote. Sequential looks (``looks``, O'Brien–Fleming-type alpha
spending, ``human_eval.planning``) say whether a pair is already decided, and the power at a planned
``effect`` is reported for the ratings collected and for the ratings planned. The ``compare`` harness reads
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

from human_eval import db, planning
from human_eval.stats import (
    EXACT_MAX_N,
    bonferroni,
    bootstrap_bradley_terry,
    bradley_terry,
    cluster_bootstrap,
    krippendorff_alpha_interval,
    rater_sign_flip_p,
    sign_test,
    wilcoxon_signed_rank,
)
from metrics.intervals import holm
from metrics.io import write_json

ZERO_RULE = ("Wilcoxon signed-rank on the signed scores (−2…+2) of each pair; zero handling: Wilcoxon's rule "
             "(no-preference answers dropped, zero_method='wilcox'), mid-ranks for tied |scores|; p exact "
             f"conditional on the tied ranks for n ≤ {EXACT_MAX_N}, tie-corrected normal above; sign test: exact "
             "binomial on wins vs losses (ties dropped); Bonferroni and Holm over the pairs. Rater-aware: rater_p = "
             "two-sided sign-flip permutation of the total score with each rater's scores flipped together (exact "
             "over all 2^R patterns for R <= 16 raters, 10,000 seeded patterns above); CIs of mean score and win "
             "rate (wins / decided) by percentile bootstrap over raters.")
PRIMARY = {
    "wilcoxon": ("wilcoxon_p_bonferroni", "Wilcoxon signed-rank on pooled ratings, Bonferroni over pairs: the test "
                 "the MusicLM paper (Agostinelli et al. 2023) reports"),
    "rater": ("rater_p_bonferroni", "rater sign-flip permutation test, Bonferroni over pairs: raters, not ratings, "
              "as the independent units"),
}


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
    inference: dict = field(default_factory=dict)  # primary test, sequential rule, power settings

    def to_json(self) -> dict:
        def records(df: pd.DataFrame) -> list[dict]:
            return json.loads(df.to_json(orient="records"))

        return {"schema_version": 2, "systems": self.systems, "rules": ZERO_RULE, "progress": self.progress,
                "primary_test": self.inference.get("primary_test"), "inference": self.inference,
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
            select(db.Rating.id, db.Rating.assignment_id, db.Rating.rater_id, db.Rating.trial_id, db.Trial.kind,
                   db.Trial.item_id,
                   SA.name, SB.name, db.Rating.answer, db.Rating.score,
                   (db.Rating.left_clip_id == db.Trial.clip_a_id), db.Rating.seconds_spent, db.Rating.submitted_at)
            .join(db.Trial, db.Trial.id == db.Rating.trial_id)
            .join(CA, CA.id == db.Trial.clip_a_id).join(CB, CB.id == db.Trial.clip_b_id)
            .join(SA, SA.id == CA.system_id).join(SB, SB.id == CB.system_id)
            .order_by(db.Rating.id)
        ).all()
        raters = s.execute(select(db.Rater.id, db.Rater.label, db.Rater.prolific_pid, db.Rater.completed_at,
                                  db.Rater.device, db.Rater.audio_sample_rate, db.Rater.user_agent,
                                  db.Screening.passed, db.Screening.n_correct)
                           .outerjoin(db.Screening, db.Screening.rater_id == db.Rater.id).order_by(db.Rater.id)).all()
        plays = s.execute(select(db.PlayEvent.assignment_id, db.PlayEvent.side, func.max(db.PlayEvent.fraction),
                                 func.max(db.PlayEvent.plays))
                          .group_by(db.PlayEvent.assignment_id, db.PlayEvent.side)).all()
    ratings = pd.DataFrame(rows, columns=["rating_id", "assignment_id", "rater_id", "trial_id", "kind", "item_id",
                                          "system_a", "system_b", "answer", "score", "a_on_left", "seconds_spent",
                                          "submitted_at"])
    ratings["submitted_at"] = ratings["submitted_at"].astype(str)
    for side, name in (("A", "left"), ("B", "right")):  # what the rater heard before answering (NaN: not logged)
        heard = {a: (f, n) for a, sd, f, n in plays if sd == side}
        ratings[f"heard_{name}"] = ratings.assignment_id.map(lambda a, h=heard: h[a][0] if a in h else np.nan)
        ratings[f"plays_{name}"] = ratings.assignment_id.map(lambda a, h=heard: h[a][1] if a in h else np.nan)
    rater_df = pd.DataFrame(raters, columns=["rater_id", "label", "prolific_pid", "completed_at", "device",
                                             "audio_sample_rate", "user_agent", "headphone_passed",
                                             "headphone_correct"])
    rater_df["completed_at"] = rater_df["completed_at"].astype(str).replace({"None": "", "NaT": ""})
    return systems, ratings, rater_df


def analyze(url: str, max_failures: int = 0, n_boot: int = 1000, seed: int = 0, screening: str = "exclude",
            primary: str = "wilcoxon", effect: float = 0.6, looks: int = 4, alpha: float = 0.05) -> StudyAnalysis:
    engine = db.open_db(url)
    try:
        systems, ratings, raters = load_ratings(engine)
        progress = progress_tables(engine)
    finally:
        engine.dispose()
    return analyze_frame(systems, ratings, raters, max_failures, n_boot, seed, progress, screening=screening,
                         primary=primary, effect=effect, looks=looks, alpha=alpha)


def analyze_frame(systems: list[str], ratings: pd.DataFrame, raters: pd.DataFrame, max_failures: int = 0,
                  n_boot: int = 1000, seed: int = 0, progress: dict | None = None, screening: str = "exclude",
                  primary: str = "wilcoxon", effect: float = 0.6, looks: int = 4,
                  alpha: float = 0.05) -> StudyAnalysis:
    if primary not in PRIMARY:
        raise ValueError(f"primary must be one of {', '.join(PRIMARY)}, not {primary!r}")
    if screening not in ("exclude", "report"):
        raise ValueError(f"screening must be 'exclude' or 'report', not {screening!r}")
    raters, kept, exclusions = apply_exclusions(ratings, raters, max_failures, screening)

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
        cb = cluster_bootstrap(g.score.to_numpy(), g.rater_id.to_numpy(), n_boot=n_boot, seed=seed)
        nan2 = (np.nan, np.nan)
        rows.append({"system_a": a, "system_b": b, "n": len(g), "wins_a": n_w, "ties": len(g) - n_w - n_l,
                     "wins_b": n_l, "mean_score": float(g.score.mean()), "sign_p": sign_test(n_w, n_l),
                     "wilcoxon_n": w.n, "wilcoxon_w_plus": w.w_plus, "wilcoxon_w_minus": w.w_minus,
                     "wilcoxon_statistic": w.statistic, "wilcoxon_z": w.z, "wilcoxon_p": w.p,
                     "wilcoxon_p_normal": w.p_normal, "n_raters": cb.n_raters,
                     "rater_p": float(rater_sign_flip_p(_rater_sums(g), seed=seed)),
                     "mean_score_ci_low": cb.mean_score_ci[0], "mean_score_ci_high": cb.mean_score_ci[1],
                     "win_rate": np.nan if cb.win_rate is None else cb.win_rate,
                     "win_rate_ci_low": (cb.win_rate_ci or nan2)[0], "win_rate_ci_high": (cb.win_rate_ci or nan2)[1]})
    pairs = pd.DataFrame(rows, columns=["system_a", "system_b", "n", "wins_a", "ties", "wins_b", "mean_score", "sign_p",
                                        "wilcoxon_n", "wilcoxon_w_plus", "wilcoxon_w_minus", "wilcoxon_statistic",
                                        "wilcoxon_z", "wilcoxon_p", "wilcoxon_p_normal", "n_raters", "rater_p",
                                        "mean_score_ci_low", "mean_score_ci_high", "win_rate", "win_rate_ci_low",
                                        "win_rate_ci_high"])
    if len(pairs):
        for col in ("wilcoxon_p", "sign_p", "rater_p"):
            pairs[f"{col}_bonferroni"] = bonferroni(pairs[col])
            pairs[f"{col}_holm"] = np.array(holm(pairs[col].tolist()), dtype=np.float64)  # None (no test) -> NaN
    inference = _sequential_and_power(pairs, kept, progress or {}, primary, effect, looks, alpha, seed)

    strengths = _strengths(systems, kept, n_boot, seed)
    agreement = _agreement(kept, raters)
    return StudyAnalysis(systems, ratings, raters, wins, wins_matrix, pairs, strengths, agreement, exclusions,
                         progress or {}, inference)


def apply_exclusions(ratings: pd.DataFrame, raters: pd.DataFrame, max_failures: int = 0,
                     screening: str = "exclude") -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(raters with their attention/exclusion columns, the kept pair ratings, the exclusions record): the one
    exclusion rule every reader of the ratings applies (``analyze_frame``, ``human_eval.agreement``)."""
    att = ratings[ratings.kind == "attention"]
    failed = att[att.score <= 0].groupby("rater_id").size()
    passed = att[att.score > 0].groupby("rater_id").size()
    raters = raters.copy()
    raters["attention_passed"] = raters.rater_id.map(passed).fillna(0).astype(int)
    raters["attention_failed"] = raters.rater_id.map(failed).fillna(0).astype(int)
    failed_check = raters.get("headphone_passed", pd.Series(None, index=raters.index)).map(lambda v: v is False or v == 0)
    failed_check &= raters.get("headphone_passed", pd.Series(None, index=raters.index)).notna()
    raters["excluded"] = (raters.attention_failed > max_failures) | (failed_check if screening == "exclude" else False)
    pair = ratings[ratings.kind == "pair"]
    raters["n_ratings"] = raters.rater_id.map(pair.groupby("rater_id").size()).fillna(0).astype(int)
    raters["median_seconds"] = raters.rater_id.map(pair.groupby("rater_id").seconds_spent.median())
    excluded_ids = set(raters.rater_id[raters.excluded])
    kept = pair[~pair.rater_id.isin(excluded_ids)]
    exclusions = {
        "rule": f"rater excluded when attention-check failures > {max_failures} (failure = no preference or "
                "a preference for the clip made for another caption)"
                + ("; or when the headphone check was failed" if screening == "exclude" else
                   "; headphone-check failures reported, not excluded"),
        "excluded_raters": [int(r) for r in sorted(excluded_ids)],
        "failed_headphone_check": [int(r) for r in sorted(raters.rater_id[failed_check])],
        "excluded_ratings": int(pair.rater_id.isin(excluded_ids).sum()),
        "kept_ratings": len(kept),
    }
    return raters, kept, exclusions


def _rater_sums(g: pd.DataFrame) -> np.ndarray:
    return g.groupby("rater_id").score.sum().to_numpy(dtype=np.float64)


def _primary_p(g: pd.DataFrame, primary: str, seed: int) -> float:
    if primary == "rater":
        return float(rater_sign_flip_p(_rater_sums(g), seed=seed))
    return wilcoxon_signed_rank(g.score.to_numpy()).p


def _sequential_and_power(pairs: pd.DataFrame, kept: pd.DataFrame, progress: dict, primary: str, effect: float,
                          looks: int, alpha: float, seed: int) -> dict:
    """Per pair (columns added in place): planned n, looks done, decided or not, power at ``effect``.

    The planned n is the ratings the study wants for the pair; look k uses the first ceil(k/K · planned) kept
    ratings in submission order, so every look is reproducible from the database at any later time.
    """
    m = max(1, len(pairs))
    a = alpha / m
    ties = float((kept.score == 0).mean()) if len(kept) else 0.2
    strong = float((kept.score.abs() == 2).sum() / max(1, (kept.score != 0).sum())) if len(kept) else 0.5
    by_pair = progress.get("by_pair", {})
    cols: dict[str, list] = {k: [] for k in ("planned_n", "information_fraction", "looks_done", "decided",
                                             "decided_at_look", "boundary_z_next", "power_at_effect_collected",
                                             "power_at_effect_planned")}
    c = planning.boundaries(looks, a)
    for row in pairs.itertuples():
        g = kept[(kept.system_a == row.system_a) & (kept.system_b == row.system_b)].sort_values("rating_id")
        planned = int(by_pair.get(f"{row.system_a} vs {row.system_b}", {}).get("wanted", 0)) or len(g)
        sizes = [int(np.ceil(k * planned / looks)) for k in range(1, looks + 1)]
        done = [n for n in sizes if n <= len(g)]
        dec = planning.sequential_decision([_primary_p(g.iloc[:n], primary, seed) for n in done], a, looks)
        r = int(g.rater_id.nunique()) if primary == "rater" else None
        power_kw = {"ties": ties, "strong": strong, "looks": looks, "n_sim": 300, "seed": seed,
                    "raters": r if r and r >= 2 else None}
        cols["planned_n"].append(planned)
        cols["information_fraction"].append(len(g) / planned if planned else np.nan)
        cols["looks_done"].append(len(done))
        cols["decided"].append(dec["decided"])
        cols["decided_at_look"].append(dec["decided_at_look"])
        cols["boundary_z_next"].append(float(c[len(done)]) if len(done) < looks else np.nan)
        cols["power_at_effect_collected"].append(planning.power(len(g), effect, a, **power_kw) if len(g) else 0.0)
        cols["power_at_effect_planned"].append(planning.power(planned, effect, a, **power_kw))
    for k, v in cols.items():
        pairs[k] = v
    column, why = PRIMARY[primary]
    return {"primary_test": primary, "primary_column": column, "primary_description": why,
            "also_reported": [k for k in PRIMARY if k != primary],
            "sequential": {"rule": planning.SPENDING, "looks": looks, "alpha": alpha, "alpha_per_pair": a,
                           "boundary_z": [float(v) for v in c], "statistic": f"z = Phi^-1(1 - p/2) of the {primary} p"},
            "power": {"effect": effect, "ties": ties, "strong": strong, "analysis": primary, "n_sim": 300,
                      "note": "simulated under the study's analysis at the planned effect (win rate among decided "
                              "ratings), not at the observed one (post-hoc 'observed power' says nothing new)"}}


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


def store_systems(a: StudyAnalysis) -> dict[str, dict]:
    """Each system's study numbers as results-store metrics: wins/losses/ties/comparisons (counts) and the
    Bradley–Terry log-strength with its rater-resampled 95% CI."""
    bt = {r.system: r for r in a.strengths.itertuples()}
    out: dict[str, dict] = {}
    for r in a.wins.itertuples():
        m = {k: {"value": int(getattr(r, k)), "ci95": None} for k in ("wins", "losses", "ties", "comparisons")}
        if r.system in bt:
            b = bt[r.system]
            m["bt_log_strength"] = {"value": float(b.log_strength), "ci95": [float(b.ci_low), float(b.ci_high)],
                                    "n_raters": int(b.n_raters)}
        out[str(r.system)] = {"metrics": m}
    return out


def write_outputs(a: StudyAnalysis, out: str | Path) -> dict[str, Path]:
    """analysis.json, wins.csv, wins_matrix.csv, pairs.csv, bradley_terry.csv, raters.csv, ratings.csv, two PNGs,
    and the project's one results store (results.json + pairwise.csv, ``kind: "rate-analyze"``) that the
    dashboard and every other reader open like any other command's."""
    from metrics.store import write_store

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "analysis.json"}
    write_json(paths["json"], a.to_json())  # standard JSON: NaN (e.g. alpha with no overlap) -> null + reason
    for name, df, index in (("wins", a.wins, False), ("wins_matrix", a.wins_matrix, True), ("pairs", a.pairs, False),
                            ("bradley_terry", a.strengths, False), ("raters", a.raters, False),
                            ("ratings", a.ratings, False)):
        paths[name] = out / f"{name}.csv"
        df.to_csv(paths[name], index=index)
    paths.update(_plots(a, out))
    if len(a.wins):
        write_store(out, "rate-analyze", store_systems(a), pairwise=a.pairs,
                    metadata={"inference": a.inference, "exclusions": a.exclusions, "agreement": a.agreement})
        paths["results"] = out / "results.json"
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

"""Does an automatic metric agree with the listeners? Pair- and system-level agreement of every metric in a
results store with the ratings of a study database (issue #30; the rules are in docs/protocol.md).

Pair level. Over the study's kept pair ratings (exclusions as ``rate analyze``), a rating *agrees* when the
metric's per-clip difference between its two clips (same caption) points to the clip the rater preferred,
the direction taken from the store's ``higher_is_better``. Strong and weak preferences count alike;
"no preference" ratings are left out (as in the sign test) and counted; a metric tie (equal per-clip values)
counts as half an agreement. Each rating weighs the same.

Uncertainty. Ratings are crossed with raters and captions, so neither alone is the independent unit. The
intervals come from the two-way ("pigeonhole") bootstrap of Owen (2007, Ann. Appl. Stat. 1:386–411): raters
and captions are resampled independently with replacement and a rating weighs (its rater's count) × (its
caption's count); percentile 95 % intervals. Owen shows it is mildly conservative for crossed designs (no
exact bootstrap exists for them, McCullagh 2000). The permutation p against ½ flips, per caption, the
metric's whole ordering of that caption's clips (sign-flip of the per-caption sums of agreement − ½; exact
over all 2^C patterns up to 16 captions, 10,000 seeded patterns above): under "the metric says nothing about
which clip listeners prefer" a caption's reversed ordering is as likely as its own.

System level. Kendall τ-b and Spearman ρ between the metric's system scores (oriented so larger = better)
and the Bradley–Terry log-strengths of the study (``human_eval.stats.bradley_terry``, ties left out, as in
``rate analyze``), over the systems present in both. With per-clip values the system score is the mean
per-clip value over the study's rated captions, recomputed on every bootstrap draw; without them it is the
store's system value, held fixed (its own sampling error is in the store's ci95, not here). The BT
strengths are refitted on every draw of the same two-way bootstrap. Few systems make τ coarse (4 systems:
7 possible values) and the interval wide; the output says so below ``FEW_SYSTEMS``.

Set-level metrics (FAD, KAD, …) have no per-clip value of their own: where the store holds a per-clip
column for them (each clip against the reference statistics) that column is used and the output says so;
otherwise the metric gets the system level only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from human_eval.simulate import SIM_LABEL
from human_eval.stats import bradley_terry, rater_sign_flip_p
from metrics.errors import InputError
from metrics.resampling import multinomial_counts

FEW_SYSTEMS = 5  # below this many systems the system level is flagged as coarse
HUMAN_KEYS = ("wins", "losses", "ties", "comparisons", "bt_log_strength")  # the study's own numbers in a store
SET_LEVEL = ("fad", "kad", "mad")  # name prefixes of metrics defined on a set, not a clip (for the note only)
PAIR_RULE = ("a rating agrees when the metric's per-clip difference (same caption, direction from the store's "
             "higher_is_better) points to the clip the rater preferred; strong and weak alike; no-preference "
             "ratings left out and counted; a metric tie counts 1/2; every kept rating weighs the same")
BOOTSTRAP_SCHEME = ("two-way (pigeonhole) bootstrap, Owen (2007): raters and captions resampled independently "
                    "with replacement, a rating weighted by rater count x caption count; percentile 95% intervals")
PERMUTATION = ("caption sign-flip: each caption's metric ordering reversed or not (per-caption sums of agreement "
               "- 1/2 flipped together); exact over 2^C patterns for C <= 16 captions, 10,000 seeded above; "
               "two-sided")


class AgreementError(InputError):
    """Inputs that cannot be joined: no per-clip values, ids of the study that match nothing in the store."""


@dataclass
class MetricValues:
    """One metric as agreement reads it: direction, system values and per-clip values keyed by the STUDY's names."""

    name: str
    higher_is_better: bool
    system_values: dict[str, float]
    per_clip: dict[tuple[str, str], float] | None = None  # (system, item_id) → value; None: no per-clip column


@dataclass
class AgreementResult:
    table: pd.DataFrame  # one row per metric
    strengths: pd.DataFrame  # system, bt_log_strength
    points: pd.DataFrame  # metric, item_id, system_a, system_b, metric_diff, mean_score, n (the plot's data)
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        import json

        def records(df: pd.DataFrame) -> list[dict]:
            return json.loads(df.to_json(orient="records"))

        return {"kind": "agreement", "settings": self.settings, "notes": self.notes, "metrics": records(self.table),
                "bradley_terry": records(self.strengths)}


def metric_values(results, rename: dict[str, str] | None = None, metrics: list[str] | None = None) -> list[MetricValues]:
    """Every numeric metric of a read store (``metrics.store.Results``) with its per-clip column when there is one.

    ``rename`` maps a study system name to the store's name for it (e.g. ``reference`` → ``ground truth``).
    The human study's own numbers (``compare --ratings`` adds ``wins``) are not metrics to agree with: left out.
    """
    to_study = {v: k for k, v in (rename or {}).items()}
    names = sorted(str(c) for c in results.table().columns if str(c) not in HUMAN_KEYS)
    if metrics:
        unknown = [m for m in metrics if m not in names]
        if unknown:
            raise AgreementError(f"{results.path}: no metric {', '.join(map(repr, unknown))} in the store "
                                 f"(it has {', '.join(names) or 'none'})")
        names = list(metrics)
    pc = results.per_clip
    out = []
    for name in names:
        sv = {}
        for s in results.systems:
            v = (results.metric(s, name) or {}).get("value")
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                sv[to_study.get(s, s)] = float(v)
        per_clip = None
        if pc is not None and name in pc.columns:
            col = pd.to_numeric(pc[name], errors="coerce")
            ok = col.notna().to_numpy()
            per_clip = {(to_study.get(s, s), str(y)): float(v) for s, y, v in
                        zip(pc.system[ok], pc.ytid[ok], col[ok], strict=True)}
        if sv or per_clip:
            out.append(MetricValues(name, results.higher_is_better(name), sv, per_clip or None))
    return out


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall τ-b of each row of ``x`` with the same row of ``y`` ([n_rows, n]); NaN where a row is all tied."""
    i, j = np.triu_indices(x.shape[1], 1)
    sx, sy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    den = np.sqrt((sx**2).sum(axis=1) * (sy**2).sum(axis=1))
    return np.divide((sx * sy).sum(axis=1), den, out=np.full(len(x), np.nan), where=den > 0)


def spearman_rho(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ (Pearson on mid-ranks) row by row; NaN where a row is all tied."""
    rx, ry = sps.rankdata(x, axis=1), sps.rankdata(y, axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    return np.divide((rx * ry).sum(axis=1), den, out=np.full(len(x), np.nan), where=den > 0)


def _ci(draws: np.ndarray, alpha: float) -> list[float] | None:
    d = draws[np.isfinite(draws)]
    return None if len(d) < 2 else [float(v) for v in np.quantile(d, [alpha / 2, 1 - alpha / 2])]


@dataclass
class _Design:
    """The kept ratings as integer codes, with the bootstrap draws' rating weights."""

    ratings: pd.DataFrame
    systems: list[str]
    rater: np.ndarray
    caption: np.ndarray
    captions: list[str]
    weights: np.ndarray  # [n_boot, K] rater count × caption count
    caption_counts: np.ndarray  # [n_boot, C]
    bt: np.ndarray  # [S] point BT log-strengths
    bt_draws: np.ndarray  # [n_boot, S]


def _design(ratings: pd.DataFrame, systems: list[str], n_boot: int, seed: int, system_level: bool) -> _Design:
    rater_ids, rater = np.unique(ratings.rater_id.to_numpy(), return_inverse=True)
    captions, caption = np.unique(ratings.item_id.astype(str).to_numpy(), return_inverse=True)
    rng = np.random.default_rng(seed)
    wr = multinomial_counts(rng, n_boot, len(rater_ids)).astype(np.float64)
    wc = multinomial_counts(rng, n_boot, len(captions)).astype(np.float64)
    weights = wr[:, rater] * wc[:, caption]
    idx = {n: i for i, n in enumerate(systems)}
    S = len(systems)
    a = ratings.system_a.map(idx).to_numpy()
    b = ratings.system_b.map(idx).to_numpy()
    score = ratings.score.to_numpy()
    dec = score != 0
    cell = np.where(score > 0, a * S + b, b * S + a)[dec]  # winner * S + loser
    onehot = np.zeros((int(dec.sum()), S * S))
    onehot[np.arange(len(cell)), cell] = 1
    bt = bradley_terry(onehot.sum(axis=0).reshape(S, S))
    bt_draws = np.full((n_boot, S), np.nan)
    if system_level:
        wins = weights[:, dec] @ onehot
        for k in range(n_boot):
            bt_draws[k] = bradley_terry(wins[k].reshape(S, S))
    return _Design(ratings, systems, rater, caption, list(captions), weights, wc, bt, bt_draws)


def _pair_level(d: _Design, m: MetricValues, alpha: float, seed: int, points: bool) -> tuple[dict, pd.DataFrame]:
    r = d.ratings
    items = r.item_id.astype(str).to_numpy()
    va = np.array([m.per_clip.get((s, i), np.nan) for s, i in zip(r.system_a, items, strict=True)])
    vb = np.array([m.per_clip.get((s, i), np.nan) for s, i in zip(r.system_b, items, strict=True)])
    diff = (va - vb) * (1 if m.higher_is_better else -1)  # > 0: the metric prefers clip a
    score = r.score.to_numpy()
    valid = np.isfinite(diff)
    used = valid & (score != 0)
    agree = np.where(diff == 0, 0.5, (np.sign(diff) == np.sign(score)).astype(np.float64))
    row = {"pair_basis": "per-clip values", "n_ratings_matched": int(valid.sum()),
           "n_no_preference": int((valid & (score == 0)).sum()), "n_ratings_used": int(used.sum()),
           "n_metric_ties": int((used & (diff == 0)).sum()),
           "n_captions": int(len(np.unique(d.caption[used]))), "n_raters": int(len(np.unique(d.rater[used])))}
    if not used.any():
        return {**row, "agreement": None, "agreement_ci95": None, "agreement_p": None}, pd.DataFrame()
    w = d.weights[:, used]
    tot = w.sum(axis=1)
    draws = np.divide(w @ agree[used], tot, out=np.full(len(tot), np.nan), where=tot > 0)
    sums = np.bincount(d.caption[used], weights=agree[used] - 0.5, minlength=len(d.captions))
    p = float(rater_sign_flip_p(sums[np.bincount(d.caption[used], minlength=len(d.captions)) > 0], seed=seed))
    row.update(agreement=float(agree[used].mean()), agreement_ci95=_ci(draws, alpha) if len(tot) else None,
               agreement_p=p)
    if not points:
        return row, pd.DataFrame()
    pts = pd.DataFrame({"item_id": items[valid], "system_a": r.system_a.to_numpy()[valid],
                        "system_b": r.system_b.to_numpy()[valid], "metric_diff": diff[valid], "score": score[valid]})
    pts = pts.groupby(["item_id", "system_a", "system_b"], as_index=False).agg(
        metric_diff=("metric_diff", "first"), mean_score=("score", "mean"), n=("score", "size"))
    return row, pts.assign(metric=m.name)


def _system_level(d: _Design, m: MetricValues, alpha: float) -> dict:
    orient = 1.0 if m.higher_is_better else -1.0
    with_clips = np.array([i for i, s in enumerate(d.systems)
                           if m.per_clip and any((s, c) in m.per_clip for c in d.captions)], dtype=np.int64)
    if len(with_clips) >= 3:
        keep = with_clips
        v = np.array([[m.per_clip.get((d.systems[i], c), np.nan) for c in d.captions] for i in keep])  # [S', C]
        have = np.isfinite(v)
        v0 = np.where(have, v, 0.0)
        score = v0.sum(axis=1) / have.sum(axis=1)
        num, den = d.caption_counts @ v0.T, d.caption_counts @ have.T.astype(np.float64)
        score_draws = np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)
        basis = "mean per-clip value over the study's captions (resampled with them)"
    else:
        keep = np.array([i for i, s in enumerate(d.systems) if s in m.system_values], dtype=np.int64)
        score = np.array([m.system_values[d.systems[i]] for i in keep])
        score_draws = np.tile(score, (len(d.bt_draws), 1))
        basis = "store's system value (held fixed in the bootstrap)"
    row = {"system_basis": basis, "n_systems": int(len(keep)), "systems": ", ".join(d.systems[i] for i in keep)}
    if len(keep) < 3:
        return {**row, "kendall_tau": None, "kendall_tau_ci95": None, "spearman_rho": None, "spearman_rho_ci95": None}
    x = orient * score[None, :] if score.ndim == 1 else orient * score
    bt = d.bt[keep][None, :]
    xd, btd = orient * score_draws, d.bt_draws[:, keep]
    row.update(kendall_tau=float(kendall_tau_b(x, bt)[0]), spearman_rho=float(spearman_rho(x, bt)[0]),
               kendall_tau_ci95=_ci(kendall_tau_b(xd, btd), alpha) if np.isfinite(btd).all() else None,
               spearman_rho_ci95=_ci(spearman_rho(xd, btd), alpha) if np.isfinite(btd).all() else None)
    return row


def agreement_frame(ratings: pd.DataFrame, systems: list[str], metrics: list[MetricValues], n_boot: int = 1000,
                    seed: int = 0, alpha: float = 0.05, system_level: bool = True, points: bool = True) -> AgreementResult:
    """Agreement of each metric with kept pair ratings (columns rater_id, item_id, system_a, system_b, score);
    ``points=False`` skips the plot data (simulations)."""
    if not len(ratings):
        raise AgreementError("the study has no kept pair ratings: nothing to agree with")
    d = _design(ratings, systems, max(1, n_boot) if n_boot else 0, seed, system_level)
    rows, pts = [], []
    notes = [f"pair level: {PAIR_RULE}", f"intervals: {BOOTSTRAP_SCHEME}", f"p against 0.5: {PERMUTATION}"]
    for m in metrics:
        row: dict = {"metric": m.name, "higher_is_better": m.higher_is_better}
        if m.per_clip:
            pair, p = _pair_level(d, m, alpha, seed, points)
            row.update(pair)
            pts.append(p)
            if m.name.lower().startswith(SET_LEVEL):
                row["pair_basis"] = "per-clip values of a set-level metric (each clip against the reference statistics)"
        else:
            row.update(pair_basis="system level only (no per-clip values in the store)", agreement=None,
                       agreement_ci95=None, agreement_p=None)
        if system_level:
            row.update(_system_level(d, m, alpha))
        rows.append(row)
    table = pd.DataFrame(rows)
    if system_level and len(table) and table.n_systems.min() < FEW_SYSTEMS:
        n = int(table.n_systems.min())
        notes.append(f"only {n} systems at the system level (fewest of any metric): Kendall tau can take at most "
                     f"{n * (n - 1) // 2 + 1} values and its interval is wide; read the system level as descriptive")
    points = pd.concat(pts, ignore_index=True) if pts else pd.DataFrame(
        columns=["item_id", "system_a", "system_b", "metric_diff", "mean_score", "n", "metric"])
    strengths = pd.DataFrame({"system": systems, "bt_log_strength": d.bt})
    settings = {"n_boot": n_boot, "seed": seed, "alpha": alpha, "bootstrap": BOOTSTRAP_SCHEME, "pair_rule": PAIR_RULE,
                "permutation": PERMUTATION, "n_ratings": len(ratings), "n_raters": int(len(np.unique(d.rater))),
                "n_captions": len(d.captions), "systems": systems}
    return AgreementResult(table, strengths, points, notes, settings)


def agreement(store: str | Path, db_url: str, rename: dict[str, str] | None = None, metrics: list[str] | None = None,
              max_failures: int = 0, screening: str = "exclude", n_boot: int = 1000, seed: int = 0,
              alpha: float = 0.05) -> AgreementResult:
    """Every metric of the results store ``store`` against the study in ``db_url`` (see the module docstring)."""
    from human_eval import db
    from human_eval.analysis import apply_exclusions, load_ratings
    from metrics.store import PER_CLIP_FILE, read_store

    res = read_store(store)
    if res.per_clip is None:
        raise AgreementError(f"{Path(store) / PER_CLIP_FILE}: the store has no usable per-clip table "
                             f"({'; '.join(res.problems) or 'missing'}); agreement needs per-clip metric values")
    engine = db.open_db(db_url)
    try:
        systems, ratings, raters = load_ratings(engine)
    finally:
        engine.dispose()
    _, kept, exclusions = apply_exclusions(ratings, raters, max_failures, screening)
    if not len(kept):
        raise AgreementError(f"{db.redact(db_url)}: no kept pair ratings ({len(ratings)} ratings in all, "
                             f"{len(exclusions['excluded_raters'])} rater(s) excluded): nothing to agree with")
    values = metric_values(res, rename, metrics)
    study_clips = {(s, str(i)) for s, i in zip(pd.concat([kept.system_a, kept.system_b]),
                                                 pd.concat([kept.item_id, kept.item_id]), strict=True)}
    matched = study_clips & {k for m in values for k in (m.per_clip or {})}
    if not matched:
        store_systems = sorted(set(res.per_clip.system.astype(str)))
        raise AgreementError(f"{Path(store) / PER_CLIP_FILE}: none of the {len(study_clips)} rated clips of "
                             f"{db.redact(db_url)} (systems {', '.join(systems)}) is in the store (systems "
                             f"{', '.join(store_systems)}; ytids e.g. {', '.join(res.per_clip.ytid.astype(str)[:3])}); "
                             "map names with --rename STUDY=STORE")
    out = agreement_frame(kept, systems, values, n_boot=n_boot, seed=seed, alpha=alpha)
    out.settings.update(store=str(Path(store)), db=db.redact(db_url), rename=dict(rename or {}),
                        exclusions=exclusions, clips_matched=len(matched), clips_rated=len(study_clips))
    simulated = raters.label.astype(str).str.startswith(SIM_LABEL).any()
    if simulated:
        out.notes.insert(0, "SIMULATED raters in this study database: these numbers are not listeners' judgements")
    return out

"""The Leaderboard page's tables: metric values and CIs per (run, system), paired comparisons, skipped
clips, run metadata, and whether the runs are comparable at all."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from dashboards.formatting import fmt_ci
from dashboards.runs import Run, higher_is_better
from metrics.io import as_float


def outside_interval(long: pd.DataFrame) -> bool:
    """Whether a row of ``metric_long`` has its value outside its own CI (a bias-corrected interval, FAD at small n)."""
    return bool(((long["value"] < long["lo"]) | (long["value"] > long["hi"])).any())


def metric_long(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, system, metric) with value and CI bounds: the source of table and plots."""
    rows = []
    for run in runs:
        for system, sysd in run.data.get("systems", {}).items():
            if not isinstance(sysd, dict) or not isinstance(sysd.get("metrics"), dict):
                continue
            for metric, m in sysd["metrics"].items():
                if not isinstance(m, dict):
                    continue
                ci = m.get("ci95")
                ok = isinstance(ci, list) and len(ci) == 2
                rows.append({
                    "run": run.name, "system": str(system), "metric": str(metric),
                    "value": as_float(m.get("value")),
                    "lo": as_float(ci[0]) if ok else None, "hi": as_float(ci[1]) if ok else None,
                })
    df = pd.DataFrame(rows, columns=["run", "system", "metric", "value", "lo", "hi"])
    return df.astype({"value": float, "lo": float, "hi": float})


def leaderboard(runs: list[Run], sort_by: str | None = None, best_first: bool = True,
                published: bool = False) -> pd.DataFrame:
    """The Table-1 view: a row per (run, system), a numeric column per metric and its 95% CI as text.

    Sorted by ``sort_by``: a metric column best first (or worst first) in the direction the stores record
    for it (``runs.higher_is_better``); any other column ascending (descending with ``best_first=False``).

    Runs of different protocols (``metadata.protocol_name``; ``custom`` when none) never share a column:
    each metric column is split per protocol (``fad_vggish [musicgen]``), so no sort ranks them together
    (``protocol_refusal`` says why). ``published`` adds, for each protocol of the runs, the rows of the
    table it reproduces (docs/published_tables.json), named by paper and protocol.
    """
    from metrics.protocols import PROTOCOLS, published_rows

    long = metric_long(runs)
    base = []
    protocols = run_protocols(runs)
    extra: list[dict] = []
    if published:
        for p in dict.fromkeys(v for v in protocols.values() if v in PROTOCOLS):
            for row in published_rows(p):
                protocols[row["run"]] = p
                base.append({"run": row["run"], "system": row["system"], "n_clips": np.nan, "missing": np.nan,
                             "skipped": np.nan})
                extra += [{"run": row["run"], "system": row["system"], "metric": k, "value": v, "lo": np.nan,
                           "hi": np.nan} for k, v in row.items() if k not in ("run", "system") and v is not None]
    if extra:
        long = pd.concat([long, pd.DataFrame(extra).astype({"value": float, "lo": float, "hi": float})],
                         ignore_index=True)
    if len(set(protocols.values())) > 1:
        long = long.assign(metric=[f"{m} [{protocols.get(r, 'custom')}]" for r, m in zip(long["run"], long["metric"])])
    for run in runs:
        for system, sysd in run.data.get("systems", {}).items():
            sysd = sysd if isinstance(sysd, dict) else {}
            base.append({"run": run.name, "system": str(system), "n_clips": as_float(sysd.get("n_clips")),
                         "missing": _count(sysd.get("missing_ids")), "skipped": _count(sysd.get("skipped"))})
    table = pd.DataFrame(base, columns=["run", "system", "n_clips", "missing", "skipped"])
    metrics = list(dict.fromkeys(long["metric"]))
    for metric in metrics:
        sub = long[long["metric"] == metric].set_index(["run", "system"])
        keys = list(zip(table["run"], table["system"]))
        table[metric] = [sub["value"].get(k, np.nan) for k in keys]
        table[f"{metric} 95% CI"] = [
            fmt_ci([sub["lo"].get(k), sub["hi"].get(k)]) if k in sub.index and not pd.isna(sub["lo"].get(k)) else "—"
            for k in keys
        ]
    if sort_by and sort_by in table.columns:
        # a protocol-split column ("fad_vggish [musicgen]") has the direction of its metric
        higher = sort_by in metrics and higher_is_better(runs, sort_by.split(" [", 1)[0])
        table = table.sort_values(sort_by, ascending=best_first != higher, na_position="last", kind="stable")
    return table.reset_index(drop=True)


PAIRWISE_COLUMNS = ["run", "metric", "system_a", "system_b", "diff", "diff 95% CI", "p", "p (Holm)", "significant", "n_pairs"]


def pairwise(runs: list[Run], alpha: float = 0.05) -> pd.DataFrame:
    """The runs' clip-paired comparisons (``metadata.pairwise`` of the store; metrics.intervals): one row per
    (run, metric, pair) with A − B, its 95% CI, the p-value and the Holm-corrected one."""
    rows = []
    for run in runs:
        for r in run.metadata.get("pairwise") or []:
            if not isinstance(r, dict):
                continue
            p_holm = as_float(r.get("p_holm"))
            rows.append({"run": run.name, "metric": str(r.get("metric")), "system_a": str(r.get("system_a")),
                         "system_b": str(r.get("system_b")), "diff": as_float(r.get("diff")),
                         "diff 95% CI": fmt_ci(r.get("ci95")) if r.get("ci95") else "—",
                         "p": as_float(r.get("p_value")), "p (Holm)": p_holm,
                         "significant": bool(p_holm is not None and not math.isnan(p_holm) and p_holm < alpha),
                         "n_pairs": as_float(r.get("n_pairs"))})
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)


def _count(v: object) -> float:
    return float(len(v)) if isinstance(v, list) else np.nan


def skipped_files(runs: list[Run]) -> pd.DataFrame:
    """Every clip a run left out (``missing_ids``, ``skipped``) with the reason the run recorded."""
    rows = []
    for run in runs:
        for system, sysd in run.data.get("systems", {}).items():
            if not isinstance(sysd, dict):
                continue
            for y in sysd.get("missing_ids") or []:
                rows.append({"run": run.name, "system": str(system), "item": str(y), "reason": "missing id"})
            for sk in sysd.get("skipped") or []:
                item = sk.get("path", "") if isinstance(sk, dict) else str(sk)
                reason = sk.get("reason", "") if isinstance(sk, dict) else ""
                rows.append({"run": run.name, "system": str(system), "item": str(item), "reason": str(reason)})
    return pd.DataFrame(rows, columns=["run", "system", "item", "reason"])


def flatten(d: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts → {"a.b.c": value}, so two metadata blocks can be diffed key by key."""
    if not isinstance(d, dict):
        return {prefix: d} if prefix else {}
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def run_protocols(runs: list[Run]) -> dict[str, str]:
    """Each run's published protocol (``metadata.protocol_name``; ``custom`` for runs that name none)."""
    from metrics.protocols import run_protocol

    return {r.name: run_protocol(r.metadata) for r in runs}


def protocol_refusal(runs: list[Run]) -> str | None:
    """Why these runs are not ranked in one column (None when they share a protocol)."""
    from metrics.protocols import comparable

    why = comparable(run_protocols(runs))
    return None if why is None else f"{why}. The leaderboard shows one column per protocol."


def comparability_facts(run: Run) -> dict[str, object]:
    """What must agree for two runs' numbers to be comparable: embedders, reference set, protocol."""
    md = run.metadata
    return {
        **flatten(md.get("embedders", {}), "embedders"),
        **flatten(run.data.get("reference", {}), "reference"),
        **flatten(md.get("protocol", {}), "protocol"),
    }


def comparability_warnings(runs: list[Run]) -> list[str]:
    """One sentence per run that differs from the first run in embedders, reference set or protocol
    (first, when their published protocols differ: the leaderboard then keeps their columns apart)."""
    runs = [r for r in runs if r.results is not None]
    if len(runs) < 2:
        return []
    refusal = protocol_refusal(runs)
    out = [refusal] if refusal else []
    first = runs[0]
    base = comparability_facts(first)
    for run in runs[1:]:
        facts = comparability_facts(run)
        if not facts or not base:
            lacking = run.name if not facts else first.name
            out.append(f"Runs {first.name!r} and {run.name!r} may not be comparable: {lacking!r} records no "
                       "embedders, reference set or protocol settings.")
            continue
        diffs = [f"{k}: {base.get(k, '(absent)')!r} vs {facts.get(k, '(absent)')!r}"
                 for k in sorted(set(base) | set(facts)) if base.get(k, "(absent)") != facts.get(k, "(absent)")]
        if diffs:
            groups = sorted({d.split(".", 1)[0] for d in diffs})
            what = {"embedders": "different embedders", "reference": "different reference sets",
                    "protocol": "different protocol settings"}
            out.append(f"Runs {first.name!r} and {run.name!r} are not comparable ("
                       + ", ".join(what[g] for g in groups) + "): " + "; ".join(diffs))
    return out


def metadata_table(runs: list[Run]) -> pd.DataFrame:
    """Flattened metadata (versions, checkpoints, embedders, protocol, …), a column per run, as text."""
    cols: dict[str, dict[str, object]] = {}
    for run in runs:
        if run.results is None:
            continue
        flat = flatten(run.metadata, "")
        flat.update(flatten(run.data.get("reference", {}), "reference"))
        for key in ("kind", "created", "schema_version"):
            if key in run.data:
                flat[key] = run.data[key]
        cols[run.name] = {k: json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else str(v))
                          for k, v in flat.items()}
    df = pd.DataFrame(cols)
    if df.empty:
        return df
    df.index.name = "key"
    df = df.sort_index().astype(object).fillna("(absent)")
    df["differs"] = df.nunique(axis=1) > 1 if len(cols) > 1 else False
    return df.reset_index()

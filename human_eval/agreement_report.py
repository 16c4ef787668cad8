"""What ``musiclm-eval agreement`` shows and keeps: the table, one plot per metric, the results store.

The store (``kind: "agreement"``) has one row per *metric* where other stores have systems — the thing
compared here is a metric — each with ``pair_agreement`` (p against ½ beside it), ``kendall_tau`` and
``spearman_rho`` (all higher-is-better, 95 % two-way bootstrap intervals); ``agreement.csv`` is the full
table, ``agreement_points.csv`` the plot data (one point per rated caption × system pair: the metric's
oriented difference and the raters' mean score), ``bradley_terry.csv`` the study's strengths and
``plots/agreement_<metric>.png`` the plots. The dashboard's human-study page reads it.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd

from human_eval.agreement import AgreementResult
from metrics.io import format_ci, format_value

STORE_KIND = "agreement"
COLUMNS = (("pair_agreement", "agreement", "agreement_ci95"), ("kendall_tau", "kendall_tau", "kendall_tau_ci95"),
           ("spearman_rho", "spearman_rho", "spearman_rho_ci95"))


def plot_name(metric: str) -> str:
    return f"plots/agreement_{re.sub(r'[^A-Za-z0-9_.-]+', '_', metric)}.png"


def table_text(r: AgreementResult) -> str:
    """The agreement table as the CLI and the demo print it, with the notes under it."""
    lines = [f"{'metric':<34} {'pair agreement [95% CI]':<26} {'p vs 0.5':>9} {'n':>5}  {'Kendall tau [95% CI]':<24} "
             f"{'Spearman rho [95% CI]':<24} systems"]
    for row in r.table.to_dict("records"):
        agree = (f"{format_value(row.get('agreement'), 3, 'f')} {format_ci(row.get('agreement_ci95'), 3, 'f')}"
                 if row.get("agreement") is not None and pd.notna(row.get("agreement")) else "system level only")
        p = row.get("agreement_p")
        lines.append(f"{row['metric'][:34]:<34} {agree:<26} {format_value(p, 3, 'g') if p is not None else '-':>9} "
                     f"{int(row.get('n_ratings_used') or 0):>5}  "
                     f"{format_value(row.get('kendall_tau'), 2, 'f')} {format_ci(row.get('kendall_tau_ci95'), 2, 'f'):<18} "
                     f"{format_value(row.get('spearman_rho'), 2, 'f')} {format_ci(row.get('spearman_rho_ci95'), 2, 'f'):<18} "
                     f"{row.get('n_systems', '')}")
    return "\n".join(lines + [f"  {n}" for n in r.notes])


def plot_png(r: AgreementResult, metric: str) -> bytes:
    """Metric difference (oriented: > 0 = the metric prefers the first clip) against the raters' mean score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = r.points[r.points.metric == metric]
    row = r.table.set_index("metric").loc[metric]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    if len(pts):
        ax.scatter(pts.metric_diff, pts.mean_score, s=12 + 4 * pts.n, alpha=0.6)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"{metric} difference, oriented (> 0: metric prefers clip A)")
    ax.set_ylabel("raters' mean score for A (−2…+2)")
    a = row.get("agreement")
    ax.set_title(f"{metric}: pair agreement {format_value(a, 3, 'f') if a is not None and pd.notna(a) else 'n/a'}",
                 fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def store_rows(r: AgreementResult) -> dict[str, dict]:
    """{metric: {"metrics": {pair_agreement, kendall_tau, spearman_rho}}} for ``write_store``."""
    out = {}
    for row in r.table.to_dict("records"):
        entries = {}
        for key, col, ci in COLUMNS:
            v = row.get(col)
            ok = v is not None and pd.notna(v)
            entries[key] = {"value": float(v) if ok else None, "ci95": row.get(ci) if ok else None,
                            "higher_is_better": True,
                            **({} if ok else {"reason": row.get("pair_basis") if key == "pair_agreement"
                                              else "fewer than 3 systems with a value"})}
        entries["pair_agreement"].update(p=row.get("agreement_p"), n=int(row.get("n_ratings_used") or 0),
                                         basis=row.get("pair_basis"))
        for key in ("kendall_tau", "spearman_rho"):
            entries[key].update(n_systems=row.get("n_systems"), basis=row.get("system_basis"))
        out[str(row["metric"])] = {"metrics": entries}
    return out


def write_outputs(r: AgreementResult, out: str | Path) -> dict:
    """The results store (``kind: "agreement"``) with the tables and one plot per metric; returns the document."""
    from metrics.store import write_store

    extra: dict[str, object] = {"agreement.csv": r.table, "agreement_points.csv": r.points,
                                "bradley_terry.csv": r.strengths, "agreement.json": r.to_json()}
    for m in r.table.metric:
        extra[plot_name(m)] = plot_png(r, m)
    return write_store(out, STORE_KIND, store_rows(r), metadata={"agreement": r.settings, "notes": r.notes},
                       extra_files=extra)


def read_agreement(store: str | Path) -> tuple[pd.DataFrame, list[str], dict[str, Path]]:
    """(table, notes, {metric: plot path}) from an agreement store, for the dashboard."""
    from metrics.io import read_csv_table
    from metrics.store import ResultsError, read_store

    res = read_store(store)
    if res.kind != STORE_KIND:
        raise ResultsError(f"{store}: a {res.kind!r} store, not an agreement store")
    table = read_csv_table(Path(store) / "agreement.csv", ResultsError)
    plots = {m: Path(store) / plot_name(m) for m in table.metric.astype(str)}
    return table, list(res.data.get("metadata", {}).get("notes", [])), {m: p for m, p in plots.items() if p.is_file()}

"""Turn a results document into the paper's Table 1 (Markdown + CSV) and PNG plots."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from metrics.store import atomic_write_text

# Column order of the paper's Table 1, then this project's extra columns.
TABLE_COLUMNS = [
    ("fad_trill", "FAD_TRILL ↓"),
    ("fad_vggish", "FAD_VGGish ↓"),
    ("fad_mel", "FAD_mel ↓"),
    ("kld", "KLD ↓"),
    ("mcc", "MCC ↑"),
    ("wins", "Wins ↑"),
]


def _fmt(m: dict | None, digits: int = 3) -> str:
    if not m or m.get("value") is None or (isinstance(m["value"], float) and math.isnan(m["value"])):
        return "—"
    if isinstance(m["value"], int):
        return str(m["value"])
    ci = m.get("ci95")
    s = f"{m['value']:.{digits}f}"
    return f"{s} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else s


def table_frame(data: dict) -> pd.DataFrame:
    """Systems × Table-1 columns as formatted strings; only columns some system has."""
    systems = data["systems"]
    present = [(k, label) for k, label in TABLE_COLUMNS if any(k in s["metrics"] for s in systems.values())]
    rows = []
    for name, s in systems.items():
        rows.append({"System": name, **{label: _fmt(s["metrics"].get(k)) for k, label in present}})
    return pd.DataFrame(rows)


def write_table(data: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    df = table_frame(data)
    header = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    md = "\n".join([header, sep, *body]) + "\n"
    values = pd.DataFrame(
        [
            {"system": n, **{k: (s["metrics"].get(k) or {}).get("value") for k, _ in TABLE_COLUMNS}}
            for n, s in data["systems"].items()
        ]
    )
    return atomic_write_text(out_dir / "table.md", md), atomic_write_text(out_dir / "table.csv", values.to_csv(index=False))


def write_plots(data: dict, per_clip: pd.DataFrame | None, out_dir: str | Path) -> list[Path]:
    """One bar chart per metric with 95% CIs, and the per-clip MCC distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, label in TABLE_COLUMNS:
        rows = [(n, s["metrics"][key]) for n, s in data["systems"].items() if key in s["metrics"]]
        rows = [(n, m) for n, m in rows if isinstance(m.get("value"), (int, float))]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.2))
        names = [n for n, _ in rows]
        vals = [m["value"] for _, m in rows]
        err = [[max(0.0, m["value"] - m["ci95"][0]) if m.get("ci95") else 0 for _, m in rows],
               [max(0.0, m["ci95"][1] - m["value"]) if m.get("ci95") else 0 for _, m in rows]]  # fmt: skip
        ax.bar(names, vals, yerr=err, capsize=4, color="#4c72b0")
        ax.set_title(f"{label} (95% CI)")
        ax.tick_params(axis="x", rotation=20)
        fig.tight_layout()
        path = out / f"{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if per_clip is not None and "mcc" in per_clip.columns and per_clip["mcc"].notna().any():
        fig, ax = plt.subplots(figsize=(6, 3.2))
        groups = [(n, g["mcc"].dropna().to_numpy()) for n, g in per_clip.groupby("system", sort=False)]
        groups = [(n, v) for n, v in groups if len(v)]
        ax.boxplot([v for _, v in groups], tick_labels=[n for n, _ in groups])
        ax.set_title("Per-clip MCC")
        ax.tick_params(axis="x", rotation=20)
        fig.tight_layout()
        path = out / "mcc_per_clip.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written

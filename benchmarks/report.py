"""Turn a results store into the paper's Table 1 (Markdown + CSV) and PNG plots.

``write_report(store_dir)`` is what every command that writes a store calls afterwards; it reads the
store back (``metrics.store.read_store``), so a report never shows numbers the store does not hold.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metrics.control import CONTROL_METRICS
from metrics.intervals import VALUE_OUTSIDE_INTERVAL_NOTE
from metrics.io import MISSING, atomic_write_text, format_ci, format_value
from metrics.store import arrow, higher_is_better, read_store

# Column order of the paper's Table 1, then this project's extra columns. "kld" stands for the KLD
# convention's headline key (``kld_musiclm``, ``kld_audiocraft``, …; metrics/kld.py). Each label gets the
# arrow of the direction the store records for its key (``arrow``), never one typed here.
TABLE_COLUMNS = [
    ("fad_trill", "FAD_TRILL"),
    ("fad_vggish", "FAD_VGGish"),
    ("fad_mel", "FAD_mel"),
    ("fad_musicnn-mtt", "FAD_musicnn"),
    ("fad_openl3", "FD_openl3"),
    ("fad_clap", "FAD_clap"),
    ("kad_musicnn-mtt", "KAD_musicnn"),
    ("mad_mel", "MAD_mel"),
    ("mad_musicnn-mtt", "MAD_musicnn"),
    ("mad_mert-v1-330m", "MAD_MERT"),
    ("kld", "KLD"),
    ("kld+musicnn_mtt", "KLD_musicnn"),
    ("mcc", "MCC"),
    ("melody_rca", "Melody RCA"),
    ("chroma_cosine", "Chroma cosine"),
    *((name, name) for name in CONTROL_METRICS),  # melody_accuracy, key_accuracy, chord_*, dynamics_*, beat_f, tempo_*
    ("wins", "Wins"),
]
BETTER_MARK = "†"
BETTER_NOTE = (f"{BETTER_MARK} significantly better than the next row (clip-paired test over shared clip ids: the "
               "jackknife t-test for FAD, KAD, KLD and MCC, the BCa bootstrap otherwise; Holm-corrected p < 0.05 "
               "across the pairs of that metric)")


def value_outside_interval(data: dict) -> bool:
    """Whether any system's value lies outside its own ci95 (a bias-corrected interval below a biased value)."""
    for s in data["systems"].values():
        for m in s["metrics"].values():
            ci, v = (m or {}).get("ci95"), (m or {}).get("value")
            if ci and isinstance(v, (int, float)) and None not in ci and not ci[0] <= v <= ci[1]:
                return True
    return False


def kld_key(data: dict) -> str:
    """The headline KLD key of a store: the ``kld_<convention>`` entry whose ``number`` is ``kld`` (old stores: ``kld``)."""
    for s in data["systems"].values():
        for k, m in s["metrics"].items():
            if k.startswith("kld_") and isinstance(m, dict) and m.get("number") == "kld":
                return k
    return "kld"


def columns(data: dict) -> list[tuple[str, str]]:
    """(store key, label) of the Table-1 columns this store has; each label ends with its stored direction's arrow."""
    kld = kld_key(data)
    conv = kld[len("kld_"):].replace("_", "-") if kld != "kld" else None
    # "kld" = the headline KLD key; "kld+<classifier>" = the same convention with another classifier (compare's
    # comma-listed --classifier suffixes its keys with _<classifier>)
    cols = [(kld if k == "kld" else f"{kld}_{k.split('+', 1)[1]}" if k.startswith("kld+") else k,
             f"KLD ({conv})" if k == "kld" and conv else label) for k, label in TABLE_COLUMNS]
    cols += adherence_columns(data)
    return [(k, f"{label} {arrow(higher_is_better(data, k))}") for k, label in cols
            if any(k in s["metrics"] for s in data["systems"].values())]


def adherence_columns(data: dict) -> list[tuple[str, str]]:
    """(store key, label) of the per-aspect caption adherence keys (``adherence_<aspect>_<tagger>``,
    ``metrics.adherence``) the store has, in the lexicon's aspect order, after the Table-1 columns."""
    from metrics.adherence_lexicon import ASPECTS

    keys = {k for s in data["systems"].values() for k in s["metrics"] if k.startswith("adherence_")}
    parts = {k: k[len("adherence_"):].rsplit("_", 1) for k in keys}
    order = {a: i for i, a in enumerate(ASPECTS)}
    return [(k, f"{parts[k][0]} adherence ({parts[k][-1]})")
            for k in sorted(keys, key=lambda k: (order.get(parts[k][0], len(order)), k))]


def better_than_next(data: dict, key: str) -> set[str]:
    """Systems significantly better on ``key`` than the system in the next row (store's paired tests), in the
    direction the store records for ``key``."""
    higher = higher_is_better(data, key)
    rows = data.get("metadata", {}).get("pairwise") or data.get("pairwise") or []
    names = list(data["systems"])
    out = set()
    for a, b in zip(names, names[1:]):
        for r in rows:
            if r.get("metric") != key or {r.get("system_a"), r.get("system_b")} != {a, b}:
                continue
            p, diff = r.get("p_holm"), r.get("diff")
            if p is None or diff is None or p >= 0.05:
                continue
            a_minus_b = diff if r["system_a"] == a else -diff
            if a_minus_b != 0 and (a_minus_b > 0) == higher:
                out.add(a)
    return out


def _fmt(m: dict | None, digits: int = 3) -> str:
    """A Table-1 cell: the value with ``digits`` decimals and its 95% CI; counts (wins) exactly."""
    if not m:
        return MISSING
    value = format_value(m.get("value"), digits, "f")
    ci = format_ci(m.get("ci95"), digits, "f")
    if value == MISSING or ci == MISSING or isinstance(m.get("value"), int):
        return value
    return f"{value} {ci}"


def table_frame(data: dict) -> pd.DataFrame:
    """Systems × Table-1 columns as formatted strings; only columns some system has; ``†`` marks a system
    significantly better than the next row."""
    systems = data["systems"]
    present = columns(data)
    marks = {k: better_than_next(data, k) for k, _ in present}
    rows = []
    for name, s in systems.items():
        rows.append({"System": name, **{label: _fmt(s["metrics"].get(k)) + (f" {BETTER_MARK}" if name in marks[k] else "")
                                        for k, label in present}})
    return pd.DataFrame(rows)


def write_table(data: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    df = table_frame(data)
    header = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    md = "\n".join([header, sep, *body]) + "\n"
    if any(BETTER_MARK in str(v) for row in df.itertuples(index=False) for v in row):
        md += f"\n{BETTER_NOTE}\n"
    if value_outside_interval(data):
        md += f"\n{VALUE_OUTSIDE_INTERVAL_NOTE}\n"
    values = pd.DataFrame(
        [
            {"system": n, **{k: (s["metrics"].get(k) or {}).get("value") for k, _ in columns(data)}}
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
    for key, label in columns(data):
        rows = [(n, s["metrics"][key]) for n, s in data["systems"].items() if key in s["metrics"]]
        rows = [(n, m) for n, m in rows if isinstance(m.get("value"), (int, float))]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.2))
        names = [n for n, _ in rows]
        vals = [m["value"] for _, m in rows]
        ax.bar(names, vals, color="#4c72b0")
        # the interval as computed, not as bars around the value: a bias-corrected (jackknife) interval of
        # FAD lies below the plug-in value at small sizes (metrics/intervals.py)
        cis = [(k, m["ci95"]) for k, (_, m) in enumerate(rows) if m.get("ci95")]
        if cis:
            ax.errorbar([k for k, _ in cis], [(lo + hi) / 2 for _, (lo, hi) in cis],
                        yerr=[(hi - lo) / 2 for _, (lo, hi) in cis], fmt="none", capsize=4, color="black")
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


def write_report(store_dir: str | Path) -> list[Path]:
    """Table 1 (``table.md``/``table.csv``) and ``plots/*.png`` of a results store, from the store itself."""
    res = read_store(store_dir, strict=True)  # every entry feeds a cell or a plot: refuse a malformed one
    return [*write_table(res.data, res.path), *write_plots(res.data, res.per_clip, res.path)]

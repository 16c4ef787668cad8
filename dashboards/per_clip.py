"""The per-clip table (per_clip.csv) as the dashboard uses it: its metric columns, MusicCaps aspects,
filters, worst clips, summaries and histograms. Pure pandas, no run or Streamlit: tests check it directly."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.store import PER_CLIP_FILE

# per_clip.csv columns that describe a clip rather than score it.
CLIP_COLUMNS = ("system", "ytid", "caption", "audio_path", "reference_path", "aspect_list", "_aspects")
# Column added at load time: each clip's aspects as a frozenset (never written back).
ASPECTS_COLUMN = "_aspects"


def clean_per_clip(df: pd.DataFrame | None, path: Path, problems: list[str]) -> pd.DataFrame | None:
    """Make per_clip.csv safe to show: metric columns numeric (read_store already refused one without
    its ``system``/``ytid`` columns)."""
    if df is None:
        return None
    src = path / PER_CLIP_FILE
    df = df.copy()
    df["system"] = df["system"].astype(str)
    df["ytid"] = df["ytid"].astype(str)
    for col in metric_columns(df, numeric_only=False):
        if not pd.api.types.is_numeric_dtype(df[col]):
            coerced = pd.to_numeric(df[col], errors="coerce")
            bad = int(coerced.isna().sum() - df[col].isna().sum())
            if bad:
                problems.append(f"{src}: column {col!r} has {bad} non-numeric value(s), shown as blank")
            df[col] = coerced
    if "caption" not in df.columns:
        problems.append(f"{src}: no 'caption' column (clips are listed by ytid)")
        df["caption"] = ""
    df["caption"] = df["caption"].fillna("").astype(str)
    # Parsed once here (and cached with the run): filtering 5,000 clips must not re-parse every rerun.
    if "aspect_list" in df.columns:
        parsed = {v: frozenset(parse_aspects(v)) for v in df["aspect_list"].dropna().unique()}
        df[ASPECTS_COLUMN] = df["aspect_list"].map(lambda v: parsed.get(v, frozenset()))
    return df


def metric_columns(df: pd.DataFrame | None, numeric_only: bool = True) -> list[str]:
    """Per-clip metric columns: mcc, kld*, fad_* first, then any other numeric column."""
    if df is None:
        return []
    known = [c for c in df.columns if str(c).lower() in ("mcc", "kld") or str(c).lower().startswith(("fad_", "kld_"))]
    if numeric_only:
        known = [c for c in known if pd.api.types.is_numeric_dtype(df[c])]
    other = [c for c in df.columns if c not in known and c not in CLIP_COLUMNS
             and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    return [str(c) for c in known + other]


def parse_aspects(value: object) -> list[str]:
    """MusicCaps ``aspect_list`` ("['pop', 'mellow piano']") → ["pop", "mellow piano"]; junk → []."""
    if isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, str) and value.strip():
        try:
            items = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            items = [s for s in value.strip("[]").split(",")]
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, (list, tuple)):
            return []
    else:
        return []
    return [s.strip().strip("'\"").strip() for s in map(str, items) if s.strip().strip("'\"").strip()]


def _aspect_sets(df: pd.DataFrame) -> pd.Series:
    if ASPECTS_COLUMN in df.columns:
        return df[ASPECTS_COLUMN]
    return df["aspect_list"].map(lambda v: frozenset(parse_aspects(v)))


def aspect_counts(df: pd.DataFrame | None) -> pd.Series:
    """How many distinct clips carry each aspect, most frequent first (the filter's option order)."""
    if df is None or "aspect_list" not in df.columns:
        return pd.Series(dtype=int)
    per_clip = _aspect_sets(df.drop_duplicates("ytid"))
    counts = pd.Series([a for s in per_clip for a in s], dtype=object).value_counts()
    return counts.sort_index().sort_values(ascending=False, kind="stable")


def filter_clips(df: pd.DataFrame, aspects: list[str] | None = None, text: str = "") -> pd.DataFrame:
    """Rows whose clip has *all* chosen aspects and whose caption or ytid contains ``text`` (any case)."""
    out = df
    if aspects and "aspect_list" in df.columns:
        want = frozenset(aspects)
        out = out[_aspect_sets(out).map(want.issubset)]
    elif aspects:
        out = out.iloc[0:0]
    if text:
        hit = out["caption"].str.contains(text, case=False, regex=False) | out["ytid"].str.contains(text, case=False, regex=False)
        out = out[hit]
    return out


def clip_choices(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(ytid, caption) per distinct clip, in first-seen order: the caption picker's options."""
    first = df.drop_duplicates("ytid")
    return list(zip(first["ytid"], first["caption"]))


def resolve_audio(run_path: Path, value: object) -> Path | None:
    """An ``audio_path``/``reference_path`` cell → an existing file (absolute or relative to the run)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return None
    p = Path(str(value))
    if not p.is_absolute():
        p = Path(run_path) / p
    return p if p.is_file() else None


def worst_clips(df: pd.DataFrame, system: str, metric: str, n: int = 10, *, higher_is_better: bool) -> pd.DataFrame:
    """A system's ``n`` worst clips on ``metric``: the lowest values where higher is better (MCC, melody RCA), the
    highest where lower is (FAD, KLD). The direction comes from the store (``runs.higher_is_better``)."""
    sub = df[(df["system"] == system) & df[metric].notna()]
    sub = sub.sort_values(metric, ascending=higher_is_better, kind="stable").head(n)
    cols = [c for c in ("ytid", "caption", metric) if c in sub.columns]
    return sub[cols].reset_index(drop=True)


def per_clip_summary(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per system: n, mean, median, std, min, max of a per-clip metric (NaNs left out)."""
    g = df[df[metric].notna()].groupby("system", sort=True)[metric]
    out = g.agg(["count", "mean", "median", "std", "min", "max"]).reset_index()
    return out.rename(columns={"count": "n"})


def per_clip_histogram(df: pd.DataFrame, metric: str, bins: int = 30) -> pd.DataFrame:
    """Shared-bin histograms per system, precomputed so 5,000-clip runs chart as ~30 bars each."""
    x = df[df[metric].notna()]
    if x.empty:
        return pd.DataFrame(columns=["system", "lo", "hi", "count"])
    edges = np.histogram_bin_edges(x[metric].to_numpy(dtype=float), bins=bins)
    rows = []
    for system, sub in x.groupby("system", sort=True):
        counts, _ = np.histogram(sub[metric].to_numpy(dtype=float), bins=edges)
        rows += [{"system": system, "lo": float(lo), "hi": float(hi), "count": int(c)}
                 for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    return pd.DataFrame(rows)

"""One caption's clips side by side: the reference, each system's audio and its per-clip scores."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dashboards.formatting import fmt
from dashboards.per_clip import metric_columns, parse_aspects, resolve_audio
from dashboards.runs import Run, higher_is_better
from metrics.io import as_float
from metrics.store import arrow


@dataclass
class ClipView:
    """One caption's reference and per-system clips, with their per-clip scores."""

    ytid: str
    caption: str
    aspects: list[str]
    reference: Path | None
    reference_raw: str | None
    systems: list[dict]  # {"system", "audio": Path|None, "audio_raw": str|None, "scores": {metric: float}}


def clip_view(run: Run, ytid: str) -> ClipView | None:
    """The caption's reference and every system's clip of ``run``; None when the run has no such clip."""
    df = run.per_clip
    if df is None:
        return None
    rows = df[df["ytid"] == str(ytid)]
    if rows.empty:
        return None
    metrics = metric_columns(df)
    ref_raw = next((str(v) for v in rows.get("reference_path", pd.Series(dtype=object)) if isinstance(v, str) and v), None)
    systems = []
    for _, r in rows.iterrows():
        raw = r.get("audio_path")
        systems.append({
            "system": r["system"],
            "audio": resolve_audio(run.path, raw),
            "audio_raw": None if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw),
            "scores": {m: as_float(r[m]) for m in metrics},
        })
    first = rows.iloc[0]
    return ClipView(
        ytid=str(ytid), caption=str(first.get("caption", "")),
        aspects=parse_aspects(first.get("aspect_list")) if "aspect_list" in rows.columns else [],
        reference=resolve_audio(run.path, ref_raw) if ref_raw else None, reference_raw=ref_raw, systems=systems,
    )


def scores_table(run: Run, view: ClipView) -> pd.DataFrame:
    """The clip's scores as one table: a row per metric (with its stored direction's arrow), a column per
    system, values as ``fmt`` prints them. One table the page's full width, so every value is on screen."""
    metrics = list(dict.fromkeys(m for s in view.systems for m in s["scores"]))
    table = pd.DataFrame({"metric": metrics, "better": [arrow(higher_is_better([run], m)) for m in metrics]})
    for s in view.systems:
        table[str(s["system"])] = [fmt(s["scores"].get(m)) for m in metrics]
    return table

"""An audit's or sweep's outputs on the dashboard: read by the library's reader
(``metrics.memorization.io.read_outputs``), turned into the tables and curves the Memorization page shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dashboards.per_clip import resolve_audio
from metrics.io import as_float
from metrics.memorization.io import SUMMARY_FILE, MemorizationOutputs, has_outputs, read_outputs

MEMO_DIR = "memorization"


@dataclass
class Memorization:
    """A run's memorization outputs (``metrics.memorization.io.read_outputs``) and the sweep's match-rate
    curve as a table (``rows``; None for an audit, which has no prompt lengths)."""

    outputs: MemorizationOutputs
    rows: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.outputs.path

    @property
    def data(self) -> dict:
        """memorization.json as written ({} when absent or unreadable)."""
        return self.outputs.summary

    @property
    def matches(self) -> pd.DataFrame | None:
        return self.outputs.matches


def memorization_dir(path: str | Path) -> Path:
    """Where a run keeps its memorization outputs: ``<run>/memorization/``, or the directory itself."""
    path = Path(path)
    return path / MEMO_DIR if (path / MEMO_DIR).is_dir() else path


def load_memorization(path: str | Path) -> Memorization | None:
    """``<run>/memorization/`` (or a memorization output dir itself); None when it holds no outputs."""
    base = memorization_dir(path)
    if not has_outputs(base):
        return None
    outputs = read_outputs(base)
    memo = Memorization(outputs, problems=list(outputs.problems))
    if outputs.summary and not outputs.matchers:  # a prompt-length sweep: its rows are the page's curve
        memo.rows = _sweep_rows(outputs, memo.problems)
    return memo


def memo_false_alarms(memo: Memorization) -> pd.DataFrame | None:
    """One row per matcher of an audit: τ, the measured per-clip false-alarm rate on held-out nulls (Wilson 95 %),
    how many nulls calibrated / measured it, whether they certify the target. None for a sweep (no nulls)."""
    rows = []
    for name, m in memo.outputs.matchers.items():
        if "clip_false_alarm_rate" not in m:
            continue
        cal = m.get("calibration") or {}
        lo, hi = (list(m.get("clip_false_alarm_ci95") or [None, None]) + [None, None])[:2]
        rows.append({"matcher": name, "tau": m.get("tau"), "fpr_target": m.get("fpr_target"),
                     "clip_false_alarm_rate": m.get("clip_false_alarm_rate"), "ci95_lo": lo, "ci95_hi": hi,
                     "false_alarms": cal.get("clip_false_alarms"), "n_null_calibration": m.get("n_null_calibration"),
                     "n_null_heldout": m.get("n_null_heldout"), "certified": m.get("certified"),
                     "nulls_needed": cal.get("nulls_needed"), "null_source": cal.get("source"),
                     "window_false_alarm_rate": m.get("window_false_alarm_rate"),
                     "exact_rate": m.get("exact_rate"), "approx_rate": m.get("approx_rate")})
    return pd.DataFrame(rows) if rows else None


def memo_detection(memo: Memorization) -> pd.DataFrame | None:
    """The measured detection table, long form: matcher, alteration, detected / n, rate and its Wilson 95 % CI."""
    rows = []
    for name, table in memo.outputs.detection.items():
        for alt, t in table.items():
            if isinstance(t, dict):
                lo, hi = (list(t.get("ci95") or [None, None]) + [None, None])[:2]
                rows.append({"matcher": name, "alteration": alt, "detected": t.get("detected"), "n": t.get("n"),
                             "rate": t.get("rate"), "ci95_lo": lo, "ci95_hi": hi, "reported": t.get("reported")})
    return pd.DataFrame(rows) if rows else None


def _sweep_rows(outputs: MemorizationOutputs, problems: list[str]) -> pd.DataFrame | None:
    """The sweep's rows as the curve's table: prompt length (semantic tokens), each rate and its 95% CI."""
    src = outputs.path / SUMMARY_FILE
    rows = outputs.rows
    if rows is None:
        problems.append(f"{src}: no 'rows' (match rate vs prompt length unavailable)")
        return None
    out = []
    for i, r in enumerate(rows):
        length = as_float(r.get("prompt_tokens")) if isinstance(r, dict) else None
        if length is None:
            problems.append(f"{src}: rows[{i}] has no numeric prompt_tokens")
            continue
        rec = {"prompt_length": length}
        for kind in ("exact", "approx"):
            rec[f"{kind}_rate"] = as_float(r.get(f"{kind}_rate"))
            ci = r.get(f"{kind}_ci95")
            ok = isinstance(ci, (list, tuple)) and len(ci) == 2
            rec[f"{kind}_lo"] = as_float(ci[0]) if ok else None
            rec[f"{kind}_hi"] = as_float(ci[1]) if ok else None
        out.append(rec)
    if not out:
        return None
    return pd.DataFrame(out).sort_values("prompt_length", ignore_index=True)


def match_audio(memo: Memorization, row: pd.Series) -> tuple[Path | None, Path | None]:
    """Playable files of a match: ``generated_path``/``train_path`` relative to the memorization dir or its run."""
    out = []
    for col in ("generated_path", "train_path"):
        p = None
        for base in (memo.path, memo.path.parent):
            p = resolve_audio(base, row.get(col))
            if p is not None:
                break
        out.append(p)
    return out[0], out[1]

"""Files out: ``memorization.json`` (standard JSON: non-finite numbers become null), ``matches.csv``, the PNGs;
and back in: ``read_outputs``, the one reader of those files (the dashboard and reports use it)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from metrics.errors import InputError
from metrics.io import JSONFormatError, atomic_write_text, loads_json, read_csv_table, write_json

MATCH_COLUMNS = ["generated_id", "train_id", "gen_offset_s", "train_offset_s", "cost", "exact"]
SUMMARY_FILE = "memorization.json"
MATCHES_FILE = "matches.csv"
# Keys every memorization.json has: the sweep's, and the audit's first matcher's (its top level).
SUMMARY_KEYS = ("tau", "fpr", "exact_rate", "approx_rate")


def write_outputs(out_dir: str | Path, summary: dict, matches: Sequence[dict], plot: Callable[[Path], None]) -> dict[str, Path]:
    """``memorization.json``, ``matches.csv`` and the PNG, written to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / SUMMARY_FILE, "csv": out / MATCHES_FILE}
    write_json(paths["json"], summary)
    extra_cols = sorted({k for m in matches for k in m} - set(MATCH_COLUMNS))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=MATCH_COLUMNS + extra_cols)
    w.writeheader()
    for m in matches:
        w.writerow(m)
    atomic_write_text(paths["csv"], buf.getvalue())
    paths["png"] = plot(out)
    return paths



@dataclass
class MemorizationOutputs:
    """What ``write_outputs`` wrote, read back; each part that is missing or unreadable is a sentence in
    ``problems`` (readers show them instead of a traceback)."""

    path: Path
    summary: dict = field(default_factory=dict)  # memorization.json as written ({} when absent or unreadable)
    matches: pd.DataFrame | None = None  # matches.csv (ids as text)
    problems: list[str] = field(default_factory=list)

    @property
    def matchers(self) -> dict[str, dict]:
        """An audit's summary per matcher (``audit_audio``'s ``matchers``); empty for a prompt-length sweep."""
        per = self.summary.get("matchers")
        return {str(k): v for k, v in per.items() if isinstance(v, dict)} if isinstance(per, dict) else {}

    @property
    def detection(self) -> dict[str, dict]:
        """An audit's detection table per matcher: alteration → {n, detected, rate, ci95, reported}."""
        det = self.summary.get("detection")
        return {str(k): v for k, v in det.items() if isinstance(v, dict)} if isinstance(det, dict) else {}

    @property
    def rows(self) -> list | None:
        """A sweep's rows (``prompt_tokens``, ``exact_rate``, ``exact_ci95``, …); None for an audit."""
        return self.summary.get("rows")


def has_outputs(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds a memorization.json or a matches.csv."""
    return (Path(out_dir) / SUMMARY_FILE).is_file() or (Path(out_dir) / MATCHES_FILE).is_file()


def read_outputs(out_dir: str | Path) -> MemorizationOutputs:
    """``memorization.json`` and ``matches.csv`` of ``out_dir``; never raises for missing or bad content."""
    base = Path(out_dir)
    out = MemorizationOutputs(base)
    jf, mf = base / SUMMARY_FILE, base / MATCHES_FILE
    if jf.is_file():
        try:
            data = loads_json(jf.read_text(encoding="utf-8"), jf, allow_nonstandard=True)
        except (OSError, UnicodeDecodeError, JSONFormatError) as e:
            out.problems.append(f"{jf}: unreadable ({e})")
            data = {}
        if not isinstance(data, dict):
            out.problems.append(f"{jf}: top level must be an object")
            data = {}
        out.summary = data
        out.problems += [f"{jf}: no {key!r}" for key in SUMMARY_KEYS if data and key not in data]
        if data and "rows" in data and not isinstance(data["rows"], list):
            out.problems.append(f"{jf}: 'rows' must be a list")
            data.pop("rows")
    else:
        out.problems.append(f"{base}: no {SUMMARY_FILE} (match-rate curve, τ and FPR unavailable)")
    if mf.is_file():
        try:
            m = read_csv_table(mf, InputError, dtype={"generated_id": str, "train_id": str})
        except InputError as e:
            out.problems.append(str(e))
        else:
            missing = [c for c in ("generated_id", "train_id") if c not in m.columns]
            if missing:
                out.problems.append(f"{mf}: no {', '.join(repr(c) for c in missing)} column")
            else:
                out.matches = m
    elif jf.is_file():
        out.problems.append(f"{base}: no {MATCHES_FILE} (list of matches unavailable)")
    return out

"""Files out: ``memorization.json`` (standard JSON: non-finite numbers become null), ``matches.csv``, the PNGs."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path

from metrics.io import atomic_write_text, write_json

MATCH_COLUMNS = ["generated_id", "train_id", "gen_offset_s", "train_offset_s", "cost", "exact"]


def write_outputs(out_dir: str | Path, summary: dict, matches: Sequence[dict], plot: Callable[[Path], None]) -> dict[str, Path]:
    """``memorization.json``, ``matches.csv`` and the PNG, written to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "memorization.json", "csv": out / "matches.csv"}
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


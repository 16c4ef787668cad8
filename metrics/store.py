"""The results store: one directory per run, read back by reports, dashboards and comparisons.

Layout (written by ``musiclm-eval compare`` / ``demo``)::

    RESULTS_DIR/
      results.json        # schema below; the source of truth
      per_clip.csv        # one row per (system, ytid): per-clip metric values
      per_clip.parquet    # the same table, typed
      table.md, table.csv # the paper's Table-1 layout
      plots/*.png
      memorization/memorization.json, matches.csv, match_rate.png   (when a sweep/audit ran)

``results.json``::

    {"schema_version": 1, "kind": "compare", "created": ISO-8601,
     "metadata": {"versions": {...}, "git_commit": str|None, "config": {...}, "seeds": {...},
                  "embedders": {name: id}, "checkpoints": {name: sha256}, "protocol": {...}},
     "reference": {"dir": str, "n_clips": int},
     "systems": {NAME: {"dir": str, "n_clips": int, "missing_ids": [...], "skipped": [{"path", "reason"}],
                        "metrics": {METRIC: {"value": float, "ci95": [lo, hi] | null, ...}}}}}

This module lives in ``metrics/`` (the foundation) so that dashboards and other tools can read a
results directory without importing the harness.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
PER_CLIP_FILE = "per_clip.csv"


class ResultsError(ValueError):
    """A results directory that is missing, partial or malformed; the message says what and where."""


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write via a temp file + rename, so a crash never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def validate_results(data: object, source: str = "results.json") -> list[str]:
    """Return a list of problems (empty when valid). Readers show them instead of a traceback."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return [f"{source}: top level must be an object"]
    version = data.get("schema_version")
    if version is None:
        problems.append(f"{source}: no schema_version (written by an older version?)")
    elif version > SCHEMA_VERSION:
        problems.append(f"{source}: schema_version {version} is newer than this reader ({SCHEMA_VERSION})")
    systems = data.get("systems")
    if not isinstance(systems, dict) or not systems:
        problems.append(f"{source}: no systems")
        return problems
    for name, sysd in systems.items():
        if not isinstance(sysd, dict):
            problems.append(f"{source}: systems.{name} must be an object")
            continue
        metrics = sysd.get("metrics")
        if not isinstance(metrics, dict):
            problems.append(f"{source}: systems.{name}.metrics missing")
            continue
        for metric, m in metrics.items():
            if not isinstance(m, dict) or "value" not in m:
                problems.append(f"{source}: systems.{name}.metrics.{metric} has no value")
                continue
            ci = m.get("ci95")
            if ci is not None and (not isinstance(ci, list) or len(ci) != 2):
                problems.append(f"{source}: systems.{name}.metrics.{metric}.ci95 must be [low, high]")
    if not isinstance(data.get("metadata", {}), dict):
        problems.append(f"{source}: metadata must be an object")
    return problems


@dataclass
class Results:
    """A results directory read back, with whatever parts it has and a list of what it lacks."""

    path: Path
    data: dict
    per_clip: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def systems(self) -> list[str]:
        return list(self.data.get("systems", {}))

    def metric(self, system: str, name: str) -> dict | None:
        return self.data.get("systems", {}).get(system, {}).get("metrics", {}).get(name)

    def table(self) -> pd.DataFrame:
        """Systems × metrics values (NaN where absent)."""
        rows = {
            s: {k: v.get("value") for k, v in d.get("metrics", {}).items() if isinstance(v, dict)}
            for s, d in self.data.get("systems", {}).items()
        }
        return pd.DataFrame.from_dict(rows, orient="index")


def write_results(out_dir: str | Path, data: dict, per_clip: pd.DataFrame | None = None) -> Path:
    """Validate and write ``results.json`` (+ ``per_clip.csv``/``.parquet``) atomically."""
    out_dir = Path(out_dir)
    data = {"schema_version": SCHEMA_VERSION, **data}
    problems = validate_results(data)
    if problems:
        raise ResultsError("refusing to write invalid results: " + "; ".join(problems))
    if per_clip is not None:
        atomic_write_text(out_dir / PER_CLIP_FILE, per_clip.to_csv(index=False))
        try:
            per_clip.to_parquet(out_dir / "per_clip.parquet", index=False)
        except ImportError:  # pyarrow is a core dependency, but keep CSV as the portable copy
            pass
    return atomic_write_text(out_dir / RESULTS_FILE, json.dumps(data, indent=2, sort_keys=False, default=_jsonable))


def read_results(path: str | Path) -> Results:
    """Read a results directory; raise ResultsError only when nothing usable is there."""
    path = Path(path)
    if not path.is_dir():
        raise ResultsError(f"{path}: results directory not found")
    f = path / RESULTS_FILE
    if not f.is_file():
        raise ResultsError(f"{path}: no {RESULTS_FILE} (not a results directory, or the run did not finish)")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ResultsError(f"{f}: not valid JSON ({e})") from None
    problems = validate_results(data, str(f))
    if not isinstance(data, dict) or not data.get("systems"):
        raise ResultsError("; ".join(problems) or f"{f}: no systems")
    per_clip = None
    pc = path / PER_CLIP_FILE
    if pc.is_file():
        try:
            per_clip = pd.read_csv(pc, dtype={"ytid": str})
        except Exception as e:
            problems.append(f"{pc}: unreadable ({type(e).__name__}: {e})")
    else:
        problems.append(f"{path}: no {PER_CLIP_FILE} (per-clip views unavailable)")
    return Results(path, data, per_clip, problems)


def _jsonable(o: object):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")

"""Loading results directories for the dashboard: a ``Run`` is whatever parts a directory has, and a
sentence in ``Run.problems`` for each part it lacks; loading never raises on a partial, older or malformed
run. Results are read through ``metrics.store.read_store`` (the one reader of the format; it resolves the
store's audio paths, so a run opens from any working directory), memorization outputs through
``metrics.memorization.io.read_outputs``; ``degradation.json`` is read here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dashboards.memorization import MEMO_DIR, Memorization, load_memorization
from dashboards.per_clip import clean_per_clip
from metrics.io import as_float
from metrics.memorization.io import MATCHES_FILE, SUMMARY_FILE
from metrics.store import PER_CLIP_FILE, RESULTS_FILE, Results, ResultsError, read_store
from metrics.store import higher_is_better as store_higher_is_better

ENV_RESULTS = "MUSICLM_EVAL_RESULTS"
DEGRADATION_FILE = "degradation.json"
# Directory names that say nothing about the run (``make run`` writes its store to results/demo/results):
# a run is named after the nearest directory above them instead.
GENERIC_DIR_NAMES = ("results", "store", "out", "output")


@dataclass
class Run:
    """One results directory as the dashboard sees it: whatever parts it has, and what it lacks."""

    path: Path
    name: str
    results: Results | None = None
    memorization: Memorization | None = None
    degradation: pd.DataFrame | None = None
    degradation_embedder: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def data(self) -> dict:
        return self.results.data if self.results is not None else {}

    @property
    def metadata(self) -> dict:
        md = self.data.get("metadata")
        return md if isinstance(md, dict) else {}

    @property
    def per_clip(self) -> pd.DataFrame | None:
        return self.results.per_clip if self.results is not None else None

    @property
    def systems(self) -> list[str]:
        return self.results.systems if self.results is not None else []


def higher_is_better(runs: list[Run], metric: str) -> bool:
    """Whether a larger ``metric`` is better, as the runs' stores record it (``metrics.store.higher_is_better``:
    stores written without the field fall back by name there, nowhere else)."""
    systems = {f"{i}/{s}": d for i, r in enumerate(runs) for s, d in r.data.get("systems", {}).items()}
    return store_higher_is_better({"systems": systems}, metric)


def results_dirs_from_env(env: dict[str, str] | None = None) -> list[Path]:
    """The results directories the CLI hands the app (``os.pathsep``-joined, empty parts ignored)."""
    raw = (env if env is not None else os.environ).get(ENV_RESULTS, "")
    return [Path(p) for p in raw.split(os.pathsep) if p.strip()]


def cache_key(path: str | Path) -> tuple:
    """(name, mtime_ns, size) of every file a run is read from: a rewritten run reloads, others stay cached."""
    path = Path(path)
    files = [RESULTS_FILE, PER_CLIP_FILE, DEGRADATION_FILE, f"{MEMO_DIR}/{SUMMARY_FILE}", f"{MEMO_DIR}/{MATCHES_FILE}",
             SUMMARY_FILE, MATCHES_FILE]
    key = []
    for name in files:
        try:
            st = (path / name).stat()
            key.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            key.append((name, None, None))
    return tuple(key)


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read every part of a results directory that is there; never raises for bad content."""
    path = Path(path)
    run = Run(path=path, name=name or run_names([path])[0])
    try:
        run.results = read_store(path)
        run.problems.extend(run.results.problems)
    except ResultsError as e:
        run.problems.append(str(e))
    except OSError as e:  # unreadable file (permissions, a directory named results.json, …)
        run.problems.append(f"{path}: cannot read results ({e})")
    if run.results is not None:
        run.results.per_clip = clean_per_clip(run.results.per_clip, path, run.problems)
        _check_metric_values(run)
    if path.is_dir():
        run.memorization = load_memorization(path)
        if run.memorization is not None:
            run.problems.extend(run.memorization.problems)
        run.degradation, run.degradation_embedder = load_degradation(path, run.problems)
    return run


def _named_dir(path: Path) -> Path:
    """The directory a run is named after: ``path``, or the nearest one above it whose name is not generic."""
    while path.name.lower() in GENERIC_DIR_NAMES and path.parent.name:
        path = path.parent
    return path


def run_names(paths: list[str | Path]) -> list[str]:
    """Unique display names: the run's meaningful directory name (``results/demo/results`` → ``demo``), or
    parent/name (then the full path) when two clash."""
    paths = [Path(p) for p in paths]
    named = [_named_dir(p) for p in paths]
    names = [q.name or str(p) for p, q in zip(paths, named)]
    names = [f"{q.parent.name}/{n}" if names.count(n) > 1 and q.parent.name else n for q, n in zip(named, names)]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Load several runs, each under its ``run_names`` display name."""
    return [load_run(p, name=n) for p, n in zip(paths, run_names(paths))]


def _check_metric_values(run: Run) -> None:
    for system, sysd in run.data.get("systems", {}).items():
        metrics = sysd.get("metrics") if isinstance(sysd, dict) else None
        for metric, m in (metrics.items() if isinstance(metrics, dict) else ()):
            if isinstance(m, dict) and "value" in m and as_float(m["value"]) is None and m["value"] is not None:
                run.problems.append(f"{run.path / RESULTS_FILE}: systems.{system}.metrics.{metric}.value "
                                    f"{m['value']!r} is not a number (shown as blank)")


def load_degradation(path: Path, problems: list[str]) -> tuple[pd.DataFrame | None, str | None]:
    """``degradation.json`` → long table (kind, severity, fad); absent file is not a problem."""
    f = Path(path) / DEGRADATION_FILE
    if not f.is_file():
        return None, None
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        problems.append(f"{f}: unreadable ({e}); FAD-vs-degradation curve not shown")
        return None, None
    curves = doc.get("curves") if isinstance(doc, dict) else None
    if not isinstance(curves, dict):
        problems.append(f"{f}: no 'curves' object; FAD-vs-degradation curve not shown")
        return None, None
    rows = []
    for kind, points in curves.items():
        if not isinstance(points, list):
            problems.append(f"{f}: curves.{kind} must be a list of {{severity, fad}} points")
            continue
        for i, p in enumerate(points):
            sev = as_float(p.get("severity")) if isinstance(p, dict) else None
            val = as_float(p.get("fad")) if isinstance(p, dict) else None
            if sev is None or val is None:
                problems.append(f"{f}: curves.{kind}[{i}] needs numeric 'severity' and 'fad'")
                continue
            rows.append({"kind": str(kind), "severity": sev, "fad": val})
    if not rows:
        return None, None
    embedder = doc.get("embedder")
    return pd.DataFrame(rows).sort_values(["kind", "severity"], ignore_index=True), (str(embedder) if embedder else None)

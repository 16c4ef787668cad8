"""The results store: one directory per run that every command writes and every reader opens.

``fad``, ``score``, ``compare``, ``demo``, ``memorization`` and ``rate analyze`` all write it through
``write_store``; reports (``benchmarks/report.py``), the dashboard and comparisons read it through
``read_store``. It lives in ``metrics/`` (the foundation) so any tool can read a store without the harness.

Layout::

    STORE/
      results.json        # the document below; written last, so its presence means the run finished
      per_clip.csv        # one row per (system, ytid): clip facts + per-clip metric values
      per_clip.parquet    # the same table, typed
      pairwise.csv        # optional: one row per pair of systems (paired tests, human-study wins)
      …                   # optional extra files (table.md, plots/, memorization/…), listed in "files"

``results.json`` (``schema_version`` 2; version 1 stores are still read)::

    {"schema_version": 2, "kind": "compare" | "fad" | "score" | "memorization" | "rate-analyze" | …,
     "created": ISO-8601 UTC, "paths_relative_to": "store",
     "metadata": {"versions": {...}, "git_commit": str|None, "config": {...}, "seeds": {...},
                  "embedders": {name: id}, "checkpoints": {name: sha256}, "protocol": {...}, ...},
     "reference": {"dir": PATH, "n_clips": int, ...},                        # optional
     "systems": {NAME: {"dir": PATH, "n_clips": int, "missing_ids": [...],   # all but "metrics" optional
                        "skipped": [{"path": PATH, "reason": str}],
                        "metrics": {KEY: {"value": number | null, "reason": str,   # reason iff value is null
                                          "ci95": [lo, hi] | null, "n": int,
                                          "higher_is_better": bool,   # the Metric's declared direction
                                          ...extra}}}},
     "files": ["per_clip.csv", "per_clip.parquet", ...]}

Conventions:

- **Standard JSON only** (``metrics.io.dumps_json``): an undefined metric is ``"value": null`` with a
  ``"reason"``; a non-finite CI bound makes ``"ci95": null`` with ``"ci95_reason"``.
- **Paths are relative to the store directory** (POSIX separators), or absolute where no relative path
  exists (another drive). Writers take ordinary paths (absolute, or relative to the current working
  directory) and convert them: ``dir``, ``skipped[].path`` and every per-clip / pairwise / extra-CSV
  column named ``path`` or ``*_path``. ``read_store`` resolves them against the store, so a store opens
  from any working directory. Version 1 stores recorded paths relative to the writer's working
  directory: the reader tries the store first, then the current directory.

The API every command uses::

    write_store(out_dir, kind, systems={name: {metric_key: MetricResult | dict | float}},
                per_clip=DataFrame | None, reference={"dir": ..., "n_clips": ...} | None,
                metadata={...} | None, pairwise=DataFrame | None,
                extra_files={"memorization/matches.csv": DataFrame | bytes | str | dict | list} | None)
        -> dict   # the document exactly as written to results.json

A system may also be given in full form ``{"dir":, "n_clips":, "missing_ids":, "skipped":,
"metrics": {...}}``. A ``MetricResult``'s per-clip values (``per_item``) become a ``KEY`` column of
per_clip (rows added for clips the table lacks); columns the caller's ``per_clip`` already has win.

    read_store(path) -> Results   # .data, .per_clip (paths resolved), .problems, .resolve(value),
                                  # .higher_is_better(key) (older stores without the field: by name)
    add_metrics(path, {system: {metric_key: result}}, metadata=None) -> dict   # e.g. human-study wins
    store_lock(path)              # held by every command with --out for its whole run (metrics.store.lock):
                                  # STORE/.run.lock names pid/host/start; a second run refuses (StoreBusyError)

Do not feed a document read back from a store to ``write_store`` again: its paths are store-relative
and would be taken as relative to the cwd. Use ``add_metrics`` to extend a store in place.
"""

from metrics.store.direction import DIRECTION_KEY, LEGACY_HIGHER_IS_BETTER, arrow, higher_is_better
from metrics.store.lock import LOCK_FILE, StaleLockWarning, StoreBusyError, store_lock
from metrics.store.paths import is_path_column, resolve_in_store, store_relative
from metrics.store.read import Results, read_store
from metrics.store.schema import (
    PAIRWISE_FILE,
    PER_CLIP_FILE,
    PER_CLIP_PARQUET,
    RESULTS_FILE,
    SCHEMA_VERSION,
    ResultsError,
    validate_results,
)
from metrics.store.write import add_metrics, write_store

__all__ = [
    "DIRECTION_KEY", "LEGACY_HIGHER_IS_BETTER", "LOCK_FILE", "PAIRWISE_FILE", "PER_CLIP_FILE", "PER_CLIP_PARQUET", "RESULTS_FILE", "SCHEMA_VERSION", "Results", "ResultsError",
    "StaleLockWarning", "StoreBusyError",
    "add_metrics", "arrow", "higher_is_better", "is_path_column", "read_store", "resolve_in_store", "store_lock",
    "store_relative", "validate_results", "write_store",
]

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
                                          "ci95": [lo, hi] | null, "n": int, ...extra}}}},
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

    read_store(path) -> Results   # .data, .per_clip (paths resolved), .problems, .resolve(value)
    add_metrics(path, {system: {metric_key: result}}, metadata=None) -> dict   # e.g. human-study wins

Do not feed a document read back from a store to ``write_store`` again: its paths are store-relative
and would be taken as relative to the cwd. Use ``add_metrics`` to extend a store in place.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from metrics.io import (
    JSONFormatError,
    atomic_write_bytes,
    atomic_write_text,
    dumps_json,
    find_nonstandard_tokens,
    loads_json,
    nonfinite_reason,
    to_jsonable,
)

SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"
PER_CLIP_FILE = "per_clip.csv"
PER_CLIP_PARQUET = "per_clip.parquet"
PAIRWISE_FILE = "pairwise.csv"
RESERVED_FILES = (RESULTS_FILE, PER_CLIP_FILE, PER_CLIP_PARQUET, PAIRWISE_FILE)
PATHS_RELATIVE_TO = "store"
NO_VALUE_REASON = "no value recorded"


class ResultsError(ValueError):
    """A results directory that is missing, partial or malformed; the message says what and where."""


# ---------------------------------------------------------------------------------------------
# validation (used on write and on read)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_results(data: object, source: str = RESULTS_FILE) -> list[str]:
    """Return a list of problems (empty when valid). Readers show them instead of a traceback."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return [f"{source}: top level must be an object"]
    version = data.get("schema_version")
    if version is None:
        problems.append(f"{source}: no schema_version (written by an older version?)")
    elif not isinstance(version, int) or isinstance(version, bool):
        problems.append(f"{source}: schema_version must be an integer, got {version!r}")
        version = None
    elif version > SCHEMA_VERSION:
        problems.append(f"{source}: schema_version {version} is newer than this reader ({SCHEMA_VERSION})")
    current = isinstance(version, int) and version >= 2
    if current and not (isinstance(data.get("kind"), str) and data["kind"]):
        problems.append(f"{source}: 'kind' must name the command that wrote the store")
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
            where = f"{source}: systems.{name}.metrics.{metric}"
            if not isinstance(m, dict) or "value" not in m:
                problems.append(f"{where} has no value")
                continue
            if current and m["value"] is None and not m.get("reason"):
                problems.append(f"{where}.value is null without a 'reason'")
            elif current and m["value"] is not None and not _is_number(m["value"]):
                problems.append(f"{where}.value must be a number or null, got {m['value']!r}")
            ci = m.get("ci95")
            if ci is not None and (not isinstance(ci, list) or len(ci) != 2):
                problems.append(f"{where}.ci95 must be [low, high]")
    for key in ("metadata", "reference"):
        if key in data and not isinstance(data[key], dict):
            problems.append(f"{source}: {key} must be an object")
    if "files" in data and not (isinstance(data["files"], list) and all(isinstance(f, str) for f in data["files"])):
        problems.append(f"{source}: files must be a list of file names")
    return problems


# ---------------------------------------------------------------------------------------------
# paths


def is_path_column(name: object) -> bool:
    """Table columns that hold file paths (converted on write, resolved on read)."""
    return isinstance(name, str) and (name == "path" or name.endswith("_path"))


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


class _Relativizer:
    """Ordinary paths → store paths, resolving each directory once (a 5,000-clip table has a handful)."""

    def __init__(self, store: str | Path):
        self.root = os.path.realpath(store)
        self.dirs: dict[str, str] = {}

    def __call__(self, path: object) -> object:
        if _empty(path):
            return path
        parent, name = os.path.split(os.path.abspath(os.fspath(path)))  # type: ignore[arg-type]
        if parent not in self.dirs:
            real = os.path.realpath(parent)
            try:
                self.dirs[parent] = PurePosixPath(Path(os.path.relpath(real, self.root))).as_posix()
            except ValueError:  # Windows: another drive, no relative path exists
                self.dirs[parent] = real
        d = self.dirs[parent]
        return os.path.join(d, name) if os.path.isabs(d) else (f"{d}/{name}" if d != "." else name)


def store_relative(path: object, store: str | Path) -> object:
    """An ordinary path (absolute, or relative to the cwd) as the store records it.

    Relative to the store directory with POSIX separators; absolute where no relative path exists
    (another drive). Empty cells (None, NaN, "") stay as they are. Directories are resolved (symlinks
    followed) on both sides so that ``..`` steps mean the same to the OS; the file name is kept.
    """
    return _Relativizer(store)(path)


class _Resolver:
    """Store paths → absolute paths; the store directory is resolved once."""

    def __init__(self, store: str | Path, version: int | None = SCHEMA_VERSION):
        self.root = os.path.realpath(store)
        self.legacy = (version or 1) < 2

    def __call__(self, value: object) -> str | None:
        if _empty(value):
            return None
        v = str(value)
        if os.path.isabs(v):
            return v
        # the store's own path is resolved, so collapsing the leading ".." steps cannot cross a symlink
        in_store = os.path.normpath(os.path.join(self.root, v))
        if self.legacy and not os.path.exists(in_store) and os.path.exists(v):
            return os.path.abspath(v)
        return in_store


def resolve_in_store(value: object, store: str | Path, version: int | None = SCHEMA_VERSION) -> Path | None:
    """A path recorded in a store → an absolute path (not checked for existence); None for an empty cell.

    Version 1 stores recorded paths relative to the writer's cwd: when the store-relative file does not
    exist but the cwd-relative one does, that one is returned.
    """
    p = _Resolver(store, version)(value)
    return None if p is None else Path(p)


def _relativize_frame(df: pd.DataFrame, store: Path) -> pd.DataFrame:
    cols = [c for c in df.columns if is_path_column(c)]
    if not cols:
        return df
    df = df.copy()
    rel = _Relativizer(store)
    for c in cols:
        df[c] = df[c].map(rel)
    return df


# ---------------------------------------------------------------------------------------------
# writing


def _metric_entry(key: str, value: object, where: str) -> tuple[dict, dict[str, float]]:
    """One metric → its results.json object and its per-clip values."""
    per_item: dict[str, float] = {}
    if hasattr(value, "per_item") and hasattr(value, "value"):  # MetricResult
        entry = {"value": value.value, "ci95": value.ci95, **{k: v for k, v in (value.extra or {}).items()
                                                              if k not in ("value", "ci95")}}
        per_item = dict(value.per_item or {})
        if per_item and "n" not in entry:
            entry["n"] = len(per_item)
    elif isinstance(value, Mapping):
        if "value" not in value:
            raise ResultsError(f"{where}: metric {key!r} has no 'value'")
        entry = dict(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        entry = {"value": value, "ci95": None}
    else:
        raise ResultsError(f"{where}: metric {key!r} must be a MetricResult, a dict with 'value' or a number, "
                           f"got {type(value).__name__}")
    entry.setdefault("ci95", None)
    ci = entry["ci95"]
    if ci is not None:
        try:
            lo, hi = (float(b) for b in ci)
        except (TypeError, ValueError):
            raise ResultsError(f"{where}: metric {key!r} ci95 must be (low, high), got {ci!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            entry["ci95"] = None
            entry.setdefault("ci95_reason", nonfinite_reason(lo if not math.isfinite(lo) else hi))
        else:
            entry["ci95"] = [lo, hi]
    try:
        entry = to_jsonable(entry)
    except TypeError as e:
        raise ResultsError(f"{where}: metric {key!r}: {e}") from None
    if entry["value"] is None and not entry.get("reason"):
        entry["reason"] = NO_VALUE_REASON
    return entry, per_item


def _system_entry(name: str, spec: object, store: Path) -> tuple[dict, dict[str, dict[str, float]]]:
    where = f"system {name!r}"
    if not isinstance(spec, Mapping):
        raise ResultsError(f"{where}: expected {{metric_key: result}} or {{'metrics': {{...}}, ...}}, "
                           f"got {type(spec).__name__}")
    full = isinstance(spec.get("metrics"), Mapping)
    entry = {k: v for k, v in spec.items() if k != "metrics"} if full else {}
    metrics = spec["metrics"] if full else spec
    per_item: dict[str, dict[str, float]] = {}
    entry["metrics"] = {}
    for key, value in metrics.items():
        entry["metrics"][str(key)], items = _metric_entry(str(key), value, where)
        if items:
            per_item[str(key)] = items
    if "dir" in entry:
        entry["dir"] = store_relative(entry["dir"], store)
    if "skipped" in entry:
        entry["skipped"] = [_skipped_entry(s, store) for s in entry["skipped"]]
    return entry, per_item


def _skipped_entry(s: object, store: Path) -> object:
    """A skipped file (``metrics.audio.Skipped`` or ``{"path", "reason"}``) with its path store-relative."""
    d = dict(vars(s)) if not isinstance(s, Mapping) and hasattr(s, "__dict__") else s
    if isinstance(d, Mapping) and "path" in d:
        return {**d, "path": store_relative(d["path"], store)}
    return d


def _merge_per_item(per_clip: pd.DataFrame | None, per_item: dict[tuple[str, str], dict[str, float]]) -> pd.DataFrame | None:
    if not per_item:
        return per_clip
    rows = [{"system": s, "ytid": y, **v} for (s, y), v in per_item.items()]
    items = pd.DataFrame(rows)
    if per_clip is None:
        return items
    new_cols = [c for c in items.columns if c not in per_clip.columns]
    if not new_cols:
        return per_clip
    base = per_clip.astype({"system": str, "ytid": str})
    return base.merge(items[["system", "ytid", *new_cols]], on=["system", "ytid"], how="outer", sort=False)


def _write_extra(store: Path, name: str, content: object) -> Path:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or str(rel) in RESERVED_FILES:
        raise ResultsError(f"{store}: extra file name {name!r} must be a relative path inside the store "
                           f"and not one of {', '.join(RESERVED_FILES)}")
    path = store / rel
    if isinstance(content, pd.DataFrame):
        return atomic_write_text(path, _relativize_frame(content, store).to_csv(index=False))
    if isinstance(content, bytes):
        return atomic_write_bytes(path, content)
    if isinstance(content, str):
        return atomic_write_text(path, content)
    if isinstance(content, (Mapping, list)):
        return atomic_write_text(path, dumps_json(content))
    raise ResultsError(f"{path}: extra file content must be a DataFrame, bytes, str, dict or list, "
                       f"got {type(content).__name__}")


def write_store(
    out_dir: str | Path,
    kind: str,
    systems: Mapping[str, Mapping],
    *,
    per_clip: pd.DataFrame | None = None,
    reference: Mapping | None = None,
    metadata: Mapping | None = None,
    pairwise: pd.DataFrame | None = None,
    extra_files: Mapping[str, object] | None = None,
    created: str | None = None,
) -> dict:
    """Write a results store (module docstring) and return the document written to results.json.

    Validates before writing anything; data files go first and results.json last, each atomically.
    A per_clip/pairwise file left from an earlier run in ``out_dir`` that this run does not write is
    removed, so a store never mixes runs.
    """
    store = Path(out_dir)
    if not isinstance(kind, str) or not kind:
        raise ResultsError(f"{store}: kind must name the command that wrote the store, got {kind!r}")
    if not systems:
        raise ResultsError(f"{store}: no systems to write")
    entries, per_item = {}, {}
    for name, spec in systems.items():
        entries[str(name)], items = _system_entry(str(name), spec, store)
        for key, values in items.items():
            for cid, v in values.items():
                per_item.setdefault((str(name), str(cid)), {})[key] = v
    doc: dict = {"schema_version": SCHEMA_VERSION, "kind": kind,
                 "created": created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "paths_relative_to": PATHS_RELATIVE_TO, "metadata": to_jsonable(dict(metadata or {}))}
    if reference is not None:
        ref = to_jsonable(dict(reference))
        if "dir" in ref:
            ref["dir"] = store_relative(ref["dir"], store)
        doc["reference"] = ref
    doc["systems"] = entries
    per_clip = _merge_per_item(per_clip, per_item)
    if per_clip is not None:
        missing = [c for c in ("system", "ytid") if c not in per_clip.columns]
        if missing:
            raise ResultsError(f"{store / PER_CLIP_FILE}: per_clip needs the column(s) {', '.join(missing)}")
    files = ([PER_CLIP_FILE, PER_CLIP_PARQUET] if per_clip is not None else []) + \
            ([PAIRWISE_FILE] if pairwise is not None else []) + sorted(extra_files or {})
    doc["files"] = files
    problems = validate_results(doc, str(store / RESULTS_FILE))
    if problems:
        raise ResultsError("refusing to write invalid results: " + "; ".join(problems))
    doc = to_jsonable(doc)

    store.mkdir(parents=True, exist_ok=True)
    for name in (PER_CLIP_FILE, PER_CLIP_PARQUET, PAIRWISE_FILE):
        if name not in files:
            (store / name).unlink(missing_ok=True)
    if per_clip is not None:
        table = _relativize_frame(per_clip.astype({"system": str, "ytid": str}), store)
        atomic_write_text(store / PER_CLIP_FILE, table.to_csv(index=False))
        _write_parquet(table, store / PER_CLIP_PARQUET)
    if pairwise is not None:
        atomic_write_text(store / PAIRWISE_FILE, _relativize_frame(pairwise, store).to_csv(index=False))
    for name, content in (extra_files or {}).items():
        _write_extra(store, name, content)
    atomic_write_text(store / RESULTS_FILE, dumps_json(doc))
    return doc


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    from io import BytesIO

    buf = BytesIO()
    # object columns mixing str and NaN (an empty path cell) are strings to parquet
    obj = {c: "string" for c in table.columns if table[c].dtype == object}
    table.astype(obj).to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def add_metrics(store_dir: str | Path, metrics: Mapping[str, Mapping[str, object]],
                metadata: Mapping | None = None) -> dict:
    """Add (or replace) metrics of systems already in a store, e.g. human-study wins into a compare store.

    ``metrics`` is ``{system: {metric_key: MetricResult | dict | number}}``; ``metadata`` entries are
    merged into the document's metadata. Per-clip values of MetricResults replace that column of
    per_clip. Only what changes is rewritten (atomically); paths already in the store are left as
    they are. Returns the new document.
    """
    store = Path(store_dir)
    res = read_store(store)
    f = store / RESULTS_FILE
    if res.version != SCHEMA_VERSION:
        raise ResultsError(f"{f}: schema_version {res.version}; rewrite the store with write_store first")
    doc = json.loads(json.dumps(res.data))  # a deep copy of plain JSON
    per_item: dict[tuple[str, str], dict[str, float]] = {}
    for system, ms in metrics.items():
        if system not in doc["systems"]:
            raise ResultsError(f"{f}: no system {system!r} to add metrics to (systems: {', '.join(doc['systems'])})")
        for key, value in ms.items():
            entry, items = _metric_entry(str(key), value, f"system {system!r}")
            doc["systems"][system]["metrics"][str(key)] = entry
            for cid, v in items.items():
                per_item.setdefault((str(system), str(cid)), {})[str(key)] = v
    if metadata:
        doc["metadata"] = {**doc.get("metadata", {}), **to_jsonable(dict(metadata))}
    problems = validate_results(doc, str(f))
    if problems:
        raise ResultsError("refusing to write invalid results: " + "; ".join(problems))
    if per_item:
        keys = {k for v in per_item.values() for k in v}
        base = res.per_clip.drop(columns=[c for c in keys if c in res.per_clip.columns]) if res.per_clip is not None else None
        table = _relativize_frame(_merge_per_item(base, per_item).astype({"system": str, "ytid": str}), store)
        atomic_write_text(store / PER_CLIP_FILE, table.to_csv(index=False))
        _write_parquet(table, store / PER_CLIP_PARQUET)
        doc["files"] = sorted(set(doc.get("files", [])) | {PER_CLIP_FILE, PER_CLIP_PARQUET})
    atomic_write_text(f, dumps_json(doc))
    return doc


def write_results(out_dir: str | Path, data: dict, per_clip: pd.DataFrame | None = None) -> Path:
    """The older entry point: a whole document (``kind``, ``systems``, …) → ``write_store``; returns results.json."""
    known = {"schema_version", "kind", "created", "metadata", "reference", "systems", "paths_relative_to", "files"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ResultsError(f"{out_dir}: unknown top-level key(s) {', '.join(unknown)}; put them in metadata")
    write_store(out_dir, data.get("kind", "compare"), data.get("systems") or {}, per_clip=per_clip,
                reference=data.get("reference"), metadata=data.get("metadata"), created=data.get("created"))
    return Path(out_dir) / RESULTS_FILE


# ---------------------------------------------------------------------------------------------
# reading


@dataclass
class Results:
    """A results directory read back, with whatever parts it has and a list of what it lacks.

    ``per_clip``'s path columns hold absolute paths (resolved against the store); ``data`` is the
    document as stored (its ``dir``/``skipped`` paths store-relative: use ``resolve``).
    """

    path: Path
    data: dict
    per_clip: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def version(self) -> int | None:
        v = self.data.get("schema_version")
        return v if isinstance(v, int) else None

    @property
    def kind(self) -> str | None:
        return self.data.get("kind")

    @property
    def systems(self) -> list[str]:
        return list(self.data.get("systems", {}))

    def metric(self, system: str, name: str) -> dict | None:
        return self.data.get("systems", {}).get(system, {}).get("metrics", {}).get(name)

    def resolve(self, value: object) -> Path | None:
        """A path recorded in this store → an absolute path (see ``resolve_in_store``)."""
        return resolve_in_store(value, self.path, self.version)

    def table(self) -> pd.DataFrame:
        """Systems × metrics values (NaN where absent or null)."""
        rows = {
            s: {k: v.get("value") for k, v in d.get("metrics", {}).items() if isinstance(v, dict)}
            for s, d in self.data.get("systems", {}).items()
        }
        return pd.DataFrame.from_dict(rows, orient="index")


def read_store(path: str | Path) -> Results:
    """Read a results directory; raise ResultsError (naming the file) only when nothing usable is there.

    Problems that leave the rest usable (no per_clip.csv, NaN tokens an older writer left, a schema
    detail) are listed in ``Results.problems``.
    """
    path = Path(path)
    if not path.is_dir():
        raise ResultsError(f"{path}: results directory not found")
    f = path / RESULTS_FILE
    if not f.is_file():
        raise ResultsError(f"{path}: no {RESULTS_FILE} (not a results directory, or the run did not finish)")
    try:
        text = f.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ResultsError(f"{f}: not UTF-8 text ({e})") from None
    try:
        data = loads_json(text, f, allow_nonstandard=True)
    except JSONFormatError as e:
        raise ResultsError(str(e)) from None
    problems = []
    tokens = find_nonstandard_tokens(text)
    if tokens:
        problems.append(f"{f}: non-standard JSON token(s) {', '.join(tokens)} read as null")
    problems += validate_results(data, str(f))
    if not isinstance(data, dict) or not data.get("systems"):
        raise ResultsError("; ".join(problems) or f"{f}: no systems")
    res = Results(path, data, None, problems)
    pc = path / PER_CLIP_FILE
    if pc.is_file():
        try:
            per_clip = pd.read_csv(pc, dtype={"ytid": str, "system": str})
        except Exception as e:  # pandas raises several parser errors; all mean "unreadable"
            problems.append(f"{pc}: unreadable ({type(e).__name__}: {e})")
        else:
            resolve = _Resolver(path, res.version)
            for c in [c for c in per_clip.columns if is_path_column(c)]:
                per_clip[c] = per_clip[c].map(resolve)
            res.per_clip = per_clip
    else:
        problems.append(f"{path}: no {PER_CLIP_FILE} (per-clip views unavailable)")
    return res


# The name readers used before the store had a writer API; kept for callers outside this module.
read_results = read_store

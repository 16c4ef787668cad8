"""Writing a results store: ``write_store`` (every command), ``add_metrics`` (extend in place).

A store is replaced as a whole or not at all (:func:`commit_store`): every file is rendered in memory and
staged complete beside its place, then ``results.json`` — the file that makes a folder a store — is removed,
the staged files are renamed into place, and the new ``results.json`` is written last. A run killed at any
point leaves the previous complete store, or no ``results.json`` at all (readers say the run did not
finish), never a ``results.json`` beside another run's per-clip table.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pandas as pd

from metrics.io import atomic_write_bytes, atomic_write_text, dumps_json, nonfinite_reason, to_jsonable
from metrics.store.direction import DIRECTION_KEY
from metrics.store.lock import check_not_locked_by_other
from metrics.store.paths import relativize_frame, store_relative
from metrics.store.read import read_store
from metrics.store.schema import (
    NO_VALUE_REASON,
    PAIRWISE_FILE,
    PATHS_RELATIVE_TO,
    PER_CLIP_FILE,
    PER_CLIP_PARQUET,
    RESERVED_FILES,
    RESULTS_FILE,
    SCHEMA_VERSION,
    ResultsError,
    validate_results,
)


def _metric_entry(key: str, value: object, where: str) -> tuple[dict, dict[str, float]]:
    """One metric → its results.json object and its per-clip values."""
    per_item: dict[str, float] = {}
    if hasattr(value, "per_item") and hasattr(value, "value"):  # MetricResult
        entry = {"value": value.value, "ci95": value.ci95, **{k: v for k, v in (value.extra or {}).items()
                                                              if k not in ("value", "ci95")}}
        if getattr(value, DIRECTION_KEY, None) is not None:  # the direction the Metric declared
            entry[DIRECTION_KEY] = bool(getattr(value, DIRECTION_KEY))
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


def _extra_bytes(store: Path, name: str, content: object) -> bytes:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or str(rel) in RESERVED_FILES:
        raise ResultsError(f"{store}: extra file name {name!r} must be a relative path inside the store "
                           f"and not one of {', '.join(RESERVED_FILES)}")
    if isinstance(content, pd.DataFrame):
        return relativize_frame(content, store).to_csv(index=False).encode()
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode()
    if isinstance(content, (Mapping, list)):
        return dumps_json(content).encode()
    raise ResultsError(f"{store / rel}: extra file content must be a DataFrame, bytes, str, dict or list, "
                       f"got {type(content).__name__}")


def _staged(path: Path) -> Path:
    return path.with_name(f".{path.name}.staged")


def _is_staged_leftover(name: str) -> bool:
    """``.NAME.staged`` (:func:`_staged`) or the temp file of one being written (``..NAME.staged.XXXX.tmp``)."""
    return name.startswith(".") and (name.endswith(".staged") or (".staged." in name and name.endswith(".tmp")))


def remove_staged_leftovers(store: Path) -> list[Path]:
    """Delete the staged files a killed write left anywhere in the store (extra files live in sub-folders too)."""
    gone = []
    for dirpath, _, names in os.walk(store):
        for name in names:
            if _is_staged_leftover(name):
                (Path(dirpath) / name).unlink(missing_ok=True)
                gone.append(Path(dirpath) / name)
    return gone


def commit_store(store: Path, files: Mapping[str, bytes], results_text: str, remove: tuple[str, ...] = ()) -> None:
    """Replace a store's files all together (module docstring): stage every file complete (atomically, under a
    hidden name), drop ``results.json``, rename the staged files into place, remove ``remove`` (an earlier
    run's files this one does not write), and write ``results.json`` last. Staged files (and their temp
    files) a killed run left are removed first, whatever their names, so none outlives the next write.
    Refuses a store another live run holds the lock of (``metrics.store.lock``)."""
    store.mkdir(parents=True, exist_ok=True)
    check_not_locked_by_other(store)
    remove_staged_leftovers(store)
    staged = [(atomic_write_bytes(_staged(store / name), data), store / name) for name, data in files.items()]
    (store / RESULTS_FILE).unlink(missing_ok=True)  # from here until the last line there is no store, never a mixed one
    for name in remove:
        (store / name).unlink(missing_ok=True)
    for tmp, final in staged:
        os.replace(tmp, final)
    atomic_write_text(store / RESULTS_FILE, results_text)


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

    out: dict[str, bytes] = {}  # everything rendered before anything on disk changes
    if per_clip is not None:
        out.update(_per_clip_files(relativize_frame(per_clip.astype({"system": str, "ytid": str}), store)))
    if pairwise is not None:
        out[PAIRWISE_FILE] = relativize_frame(pairwise, store).to_csv(index=False).encode()
    for name, content in (extra_files or {}).items():
        out[name] = _extra_bytes(store, name, content)
    commit_store(store, out, dumps_json(doc), remove=tuple(n for n in (PER_CLIP_FILE, PER_CLIP_PARQUET, PAIRWISE_FILE)
                                                           if n not in files))
    return doc


def _per_clip_files(table: pd.DataFrame) -> dict[str, bytes]:
    """per_clip.csv and per_clip.parquet of one table."""
    from io import BytesIO

    buf = BytesIO()
    # object columns mixing str and NaN (an empty path cell) are strings to parquet
    obj = {c: "string" for c in table.columns if table[c].dtype == object}
    table.astype(obj).to_parquet(buf, index=False)
    return {PER_CLIP_FILE: table.to_csv(index=False).encode(), PER_CLIP_PARQUET: buf.getvalue()}


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
    out: dict[str, bytes] = {}
    if per_item:
        keys = {k for v in per_item.values() for k in v}
        base = res.per_clip.drop(columns=[c for c in keys if c in res.per_clip.columns]) if res.per_clip is not None else None
        out = _per_clip_files(relativize_frame(_merge_per_item(base, per_item).astype({"system": str, "ytid": str}), store))
        doc["files"] = sorted(set(doc.get("files", [])) | {PER_CLIP_FILE, PER_CLIP_PARQUET})
    commit_store(store, out, dumps_json(doc))
    return doc


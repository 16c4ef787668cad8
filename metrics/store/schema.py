"""The results store's format: file names, version and the validation readers and writers share."""

from __future__ import annotations

import math

from metrics.errors import InputError
from metrics.store.direction import DIRECTION_KEY

SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"
PER_CLIP_FILE = "per_clip.csv"
PER_CLIP_PARQUET = "per_clip.parquet"
PAIRWISE_FILE = "pairwise.csv"
RESERVED_FILES = (RESULTS_FILE, PER_CLIP_FILE, PER_CLIP_PARQUET, PAIRWISE_FILE)
PATHS_RELATIVE_TO = "store"
NO_VALUE_REASON = "no value recorded"
OLDER_STORE = "no schema_version (written by an older version?)"  # a note, not a defect: older stores read fine


class ResultsError(InputError):
    """A results directory that is missing, partial or malformed; the message says what and where."""


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_results(data: object, source: str = RESULTS_FILE) -> list[str]:
    """Return a list of problems (empty when valid). Readers show them instead of a traceback."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return [f"{source}: top level must be an object"]
    version = data.get("schema_version")
    if version is None:
        problems.append(f"{source}: {OLDER_STORE}")
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
            if ci is not None and (not isinstance(ci, list) or len(ci) != 2
                                   or not all(b is None or _is_number(b) for b in ci)):
                problems.append(f"{where}.ci95 must be [low, high] (numbers or null)")
            if DIRECTION_KEY in m and not isinstance(m[DIRECTION_KEY], bool):
                problems.append(f"{where}.{DIRECTION_KEY} must be true or false, got {m[DIRECTION_KEY]!r}")
    for key in ("metadata", "reference"):
        if key in data and not isinstance(data[key], dict):
            problems.append(f"{source}: {key} must be an object")
    if "files" in data and not (isinstance(data["files"], list) and all(isinstance(f, str) for f in data["files"])):
        problems.append(f"{source}: files must be a list of file names")
    return problems

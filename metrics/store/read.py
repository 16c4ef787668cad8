"""Reading a results store: ``read_store`` validates, lists problems, and resolves paths against the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from metrics.io import JSONFormatError, find_nonstandard_tokens, loads_json, read_csv_table
from metrics.store.direction import higher_is_better
from metrics.store.paths import StoreResolver, is_path_column, resolve_in_store
from metrics.store.schema import (
    OLDER_STORE,
    PER_CLIP_FILE,
    RESULTS_FILE,
    SCHEMA_VERSION,
    ResultsError,
    validate_results,
)


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

    def _metrics(self, system: str) -> dict:
        """A system's metrics; {} where the store has none or holds the wrong type (listed in ``problems``)."""
        sysd = self.data.get("systems", {}).get(system)
        metrics = sysd.get("metrics") if isinstance(sysd, dict) else None
        return metrics if isinstance(metrics, dict) else {}

    def metric(self, system: str, name: str) -> dict | None:
        m = self._metrics(system).get(name)
        return m if isinstance(m, dict) else None

    def higher_is_better(self, name: str) -> bool:
        """Whether a larger ``name`` is better: the direction the store records (older stores: by name)."""
        return higher_is_better(self.data, name)

    def resolve(self, value: object) -> Path | None:
        """A path recorded in this store → an absolute path (see ``resolve_in_store``)."""
        return resolve_in_store(value, self.path, self.version)

    def table(self) -> pd.DataFrame:
        """Systems × metrics values (NaN where absent or null)."""
        rows = {s: {k: v.get("value") for k, v in self._metrics(s).items() if isinstance(v, dict)} for s in self.systems}
        return pd.DataFrame.from_dict(rows, orient="index")


def read_store(path: str | Path, strict: bool = False) -> Results:
    """Read a results directory; raise ResultsError (naming the file) only when nothing usable is there.

    Problems that leave the rest usable (no per_clip.csv, NaN tokens an older writer left, a schema
    detail) are listed in ``Results.problems``. A store of a newer schema version is an error: its
    fields may mean what this reader does not know, and a number read anyway could be wrong.
    ``strict`` (readers that compute from every entry, e.g. the Table-1 report) also raises for any
    defect of results.json itself (a system or metric of the wrong shape), older stores still read.
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
    except OSError as e:  # permissions, an I/O error
        raise ResultsError(f"{f}: cannot read ({e.strerror or e})") from None
    try:
        data = loads_json(text, f, allow_nonstandard=True)
    except JSONFormatError as e:
        raise ResultsError(str(e)) from None
    problems = []
    tokens = find_nonstandard_tokens(text)
    if tokens:
        problems.append(f"{f}: non-standard JSON token(s) {', '.join(tokens)} read as null")
    defects = validate_results(data, str(f))
    problems += defects
    if isinstance(data, dict) and data.get("systems") and not isinstance(data["systems"], dict):
        raise ResultsError(f"{f}: 'systems' must be an object of system name → results")
    if not isinstance(data, dict) or not data.get("systems"):
        raise ResultsError("; ".join(problems) or f"{f}: no systems")
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ResultsError(f"{f}: schema_version {version} is newer than this reader ({SCHEMA_VERSION}); "
                           "read it with the musiclm-eval that wrote it, or upgrade")
    defects = [p for p in defects if not p.endswith(OLDER_STORE)]
    if strict and defects:
        raise ResultsError("; ".join(defects))
    listed = data.get("files") if isinstance(data.get("files"), list) else []
    problems += [f"{path / n}: listed in {RESULTS_FILE} but missing (an interrupted copy or run?)"
                 for n in listed if isinstance(n, str) and n != PER_CLIP_FILE and not (path / n).is_file()]
    res = Results(path, data, None, problems)
    pc = path / PER_CLIP_FILE
    if pc.is_file():
        try:
            per_clip = read_csv_table(pc, ResultsError, dtype={"ytid": str, "system": str})
        except ResultsError as e:
            problems.append(str(e))
        else:
            lacking = [c for c in ("system", "ytid") if c not in per_clip.columns]
            if lacking:
                problems.append(f"{pc}: no {', '.join(repr(c) for c in lacking)} column (per-clip views unavailable)")
                return res
            resolve = StoreResolver(path, res.version)
            for c in [c for c in per_clip.columns if is_path_column(c)]:
                per_clip[c] = per_clip[c].map(resolve)
            res.per_clip = per_clip
    else:
        problems.append(f"{path}: no {PER_CLIP_FILE} (per-clip views unavailable)")
    return res


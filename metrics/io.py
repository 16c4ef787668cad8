"""Small file and formatting helpers every package shares: one helper per job.

- ``atomic_open`` / ``atomic_write_bytes`` / ``atomic_write_text`` / ``write_json``: write through a
  temp file in the same directory + ``os.replace``, so a crash or a reader running at the same time
  never sees half a file (checkpoints, cache entries, the results store).
- ``to_jsonable`` / ``dumps_json`` / ``loads_json``: **standard** JSON only. ``NaN`` and ``±Infinity``
  are not JSON (RFC 8259; Python's ``json`` writes them as bare tokens that strict parsers such as
  JavaScript's ``JSON.parse`` reject), so they become ``null`` and the writer records why:

  * an object key ``"value"`` that is not finite becomes ``"value": null`` and the object gains
    ``"reason": "<why>"``; any other key ``k`` gains ``"k_reason"``. A reason the producer already
    put there (a metric saying "fewer than 2 clips") is kept; otherwise the reason says which
    non-finite number it was (``"was NaN (undefined)"``, ``"was +Infinity"``);
  * inside a list a non-finite number is plain ``null`` (a list has no place for a reason; the
    results store turns a ci95 with a non-finite bound into ``"ci95": null`` + ``"ci95_reason"``).

  numpy scalars and arrays, ``Path``, tuples, sets (sorted) and objects with ``to_dict()`` are
  converted; anything else raises ``TypeError`` naming the type (never a silent ``str()``).
- ``read_csv_table``: a user's CSV as a DataFrame, or an error naming the file (never a pandas traceback).
- ``file_sha256``: the content hash that names cache entries and records checkpoints.
- ``as_float`` / ``format_value`` / ``format_ci`` / ``ci_list``: how numbers are read back, and how numbers and 95 % intervals are printed (tables,
  dashboard) and stored (``[lo, hi]`` or ``null``).
- ``redact_url``: a database URL with its password hidden, for anything shown or written.

This module imports only the standard library and numpy (pandas lazily, in ``read_csv_table``), so every
package may use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from metrics.errors import InputError

# ---------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temp file beside ``path``; on a clean exit it is flushed, fsynced and renamed onto ``path``.

    On an exception the temp file is removed and ``path`` keeps its old content (or stays absent).
    Use it for writers that want a file object, e.g. ``torch.save(obj, f)``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        kw = {"encoding": encoding or "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_open``); returns ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, newlines as given (no platform translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


# ---------------------------------------------------------------------------------------------
# standard JSON


def nonfinite_reason(x: float) -> str:
    """The default reason recorded next to a ``null`` that was a non-finite number."""
    return "was NaN (undefined)" if math.isnan(x) else ("was +Infinity" if x > 0 else "was -Infinity")


def reason_key(key: str) -> str:
    """Where the reason for a ``null`` at ``key`` goes: ``"reason"`` beside ``"value"``, else ``"<key>_reason"``."""
    return "reason" if key == "value" else f"{key}_reason"


def _nonfinite(v: object) -> bool:
    return isinstance(v, (float, np.floating)) and not math.isfinite(float(v))


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types, non-finite numbers as ``null`` with reasons (module docstring)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out[str(k.item() if isinstance(k, np.generic) else k)] = to_jsonable(v)
        for k, v in obj.items():  # second pass: a reason key may come before or after its value
            if _nonfinite(v):
                rk = reason_key(str(k))
                out[rk] = str(out[rk]) if out.get(rk) else nonfinite_reason(float(v))
        return out
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(to_jsonable(v) for v in obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    raise TypeError(f"not JSON serializable: {type(obj).__name__} ({obj!r:.80})")


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """Standard JSON text of ``obj`` (``to_jsonable`` first; NaN/Infinity can never reach the output)."""
    return json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any) -> Path:
    """``dumps_json(obj)`` written atomically to ``path`` (what every ``--json PATH`` writes)."""
    return atomic_write_text(path, dumps_json(obj))


class JSONFormatError(InputError):
    """A JSON file that does not parse, or uses the non-standard NaN/Infinity tokens."""


def loads_json(text: str, source: str | Path = "<json>", allow_nonstandard: bool = False) -> Any:
    """Parse standard JSON; every error names ``source``.

    ``NaN``/``Infinity`` tokens raise ``JSONFormatError``, unless ``allow_nonstandard`` (reading files
    that older writers made): then they parse as ``None``; ``find_nonstandard_tokens`` lists them.
    """

    def constant(token: str) -> None:
        if not allow_nonstandard:
            raise JSONFormatError(f"{source}: non-standard JSON token {token} (write null plus a reason)")
        return None

    try:
        return json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise JSONFormatError(f"{source}: not valid JSON ({e})") from None


def find_nonstandard_tokens(text: str) -> list[str]:
    """The distinct NaN/Infinity tokens a JSON text uses (empty for standard JSON)."""
    seen: list[str] = []

    def constant(token: str) -> None:
        if token not in seen:
            seen.append(token)

    try:
        json.loads(text, parse_constant=constant)
    except json.JSONDecodeError:
        pass
    return seen


# ---------------------------------------------------------------------------------------------
# CSV tables


def read_csv_table(path: str | Path, error: type[Exception], **kwargs: Any) -> Any:
    """``pandas.read_csv(path, index_col=False, encoding="utf-8-sig", **kwargs)`` where any failure is ``error``
    naming the file: not UTF-8, empty, an unterminated quote, or a row with more fields than the header (which
    pandas would otherwise read silently, making the first column an index and shifting the others)."""
    import warnings

    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, **{"index_col": False, "encoding": "utf-8-sig", **kwargs})
    except pd.errors.ParserWarning:
        raise error(f"{path}: a row has more fields than the header (an unquoted comma?)") from None
    except Exception as e:  # pandas raises several parser errors (and UnicodeDecodeError); all mean "unreadable"
        raise error(f"{path}: unreadable CSV ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------------
# hashing


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# numbers and intervals as text

MISSING = "—"


def as_float(value: object) -> float | None:
    """A number read from a file, or None when it is absent, a bool, not numeric, or NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def format_value(value: object, digits: int = 4, style: str = "g") -> str:
    """A number as tables and the dashboard print it; ``MISSING`` ("—") when absent or NaN.

    ``style="g"``: ``digits`` significant digits (dashboard); ``"f"``: ``digits`` decimals (Table 1).
    Integers (counts such as human-study wins) print exactly; a non-numeric value prints as itself.
    """
    if value is None:
        return MISSING
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    f = as_float(value)
    if f is None:
        return MISSING if isinstance(value, (float, np.floating)) else str(value)
    return f"{f:.{digits}{style}}"


def ci_list(ci: object) -> list[float | None] | None:
    """A 95 % interval as stored: ``[lo, hi]`` (non-finite bounds as null), or None when there is none."""
    if ci is None:
        return None
    lo, hi = ci  # type: ignore[misc]
    return [to_jsonable(float(lo)), to_jsonable(float(hi))]


def format_ci(ci: object, digits: int = 4, style: str = "g") -> str:
    """``[lo, hi]`` with ``format_value``'s precision; ``MISSING`` when there is no interval."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or any(as_float(b) is None for b in ci):
        return MISSING
    return f"[{format_value(ci[0], digits, style)}, {format_value(ci[1], digits, style)}]"


# ---------------------------------------------------------------------------------------------
# URLs

# scheme://user:password@host…  — the password runs to the last "@" (an unencoded "@" in it stays hidden)
_CREDENTIALS = re.compile(r"^(?P<head>[A-Za-z][\w+.\-]*://[^:/@]*):(?P<password>.*)@(?P<tail>[^@]*)$", re.DOTALL)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (as SQLAlchemy renders it); other URLs unchanged."""
    m = _CREDENTIALS.match(str(url))
    return f"{m['head']}:***@{m['tail']}" if m else str(url)

"""What every figure renderer shares: reading a committed JSON artifact and formatting its numbers.

Its own module so that ``benchmarks.figures`` (which registers every renderer and rewrites the docs) and
the ``benchmarks/figures_*.py`` renderer modules both import it at module level, and none imports
``benchmarks.figures`` back: no import cycle.
"""

from __future__ import annotations

import json
from pathlib import Path

from metrics.errors import InputError

MINUS = "\u2212"


class FigureError(InputError):
    """An artifact that is missing or lacks a field, or a document whose markers do not pair up."""


def load(root: Path, rel: Path) -> dict:
    """The JSON artifact at ``root / rel``; a missing or malformed one is a ``FigureError`` naming it."""
    path = root / rel
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FigureError(f"{rel}: artifact not found") from None
    except json.JSONDecodeError as e:
        raise FigureError(f"{rel}: not valid JSON ({e})") from None


def get_field(doc: dict, rel: Path, *keys: str):
    """``doc[k1][k2]…``, or a ``FigureError`` naming the artifact and the path that is missing."""
    cur = doc
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            raise FigureError(f"{rel}: no {'.'.join(keys)}")
        cur = cur[k]
    return cur


def num(x: float | None, digits: int) -> str:
    """Fixed decimals with a typographic minus (the docs' style); None → an em dash."""
    if x is None:
        return "—"
    s = f"{x:.{digits}f}"
    return s.replace("-", MINUS) if s.startswith("-") else s


def with_ci(metric: dict | None, digits: int) -> str:
    """``value [lo, hi]`` of a stored metric entry (the interval left out when it has none)."""
    if not metric or metric.get("value") is None:
        return "—"
    ci = metric.get("ci95")
    tail = f" [{num(ci[0], digits)}, {num(ci[1], digits)}]" if ci and None not in ci else ""
    return num(metric["value"], digits) + tail

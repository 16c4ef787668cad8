"""How the dashboard prints a number: one written-down formula the app and the tests share."""

from __future__ import annotations

from metrics.io import format_ci, format_value


def fmt(value: object, digits: int = 4) -> str:
    """A metric value as the dashboard prints it: 4 significant digits, "—" when absent."""
    return format_value(value, digits)


def fmt_ci(ci: object) -> str:
    """``[lo, hi]`` with the same precision as ``fmt``; "—" when the run recorded no interval."""
    return format_ci(ci)

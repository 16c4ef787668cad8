"""Which way is better for a stored metric: the field the store writes, and the one fallback for older stores.

Every ``Metric`` declares ``higher_is_better`` (``metrics/metric.py``) and the store writes it beside each
value (``systems.NAME.metrics.KEY.higher_is_better``). Readers — the report's arrows and †, the
dashboard's sorting and worst clips — ask ``higher_is_better`` here and never guess from a label.
Stores written before the field existed (and dict entries a caller wrote without it, such as the human
study's ``wins``) fall back to ``LEGACY_HIGHER_IS_BETTER``, keyed by metric name: the only place a
direction is inferred from a name (the published-table figures, which have no store, use it too).
"""

from __future__ import annotations

from collections.abc import Mapping

DIRECTION_KEY = "higher_is_better"

# Metric names (a key equal to one, or one followed by ``_<suffix>``) where a larger value is better, for
# entries without the field. Every other key is a distance, a divergence or a rate of something unwanted
# (FAD, KAD, KLD, memorization rates, losses), where smaller is better.
LEGACY_HIGHER_IS_BETTER = ("mcc", "melody_rca", "chroma_cosine", "wins", "bt_log_strength")


def fallback_higher_is_better(key: str) -> bool:
    """The direction of a metric whose entry records none (stores written before the field), by name."""
    key = str(key).lower()
    return any(key == n or key.startswith(f"{n}_") for n in LEGACY_HIGHER_IS_BETTER)


def arrow(higher: bool) -> str:
    """How a table header shows a direction: ↑ where a larger value is better, ↓ where a smaller one is."""
    return "↑" if higher else "↓"


def higher_is_better(data: Mapping, key: str) -> bool:
    """The direction of ``key`` in a results document: the first system's entry that records it, else the
    name fallback."""
    systems = data.get("systems") if isinstance(data, Mapping) else None
    for sysd in (systems.values() if isinstance(systems, Mapping) else ()):
        metrics = sysd.get("metrics") if isinstance(sysd, Mapping) else None
        entry = metrics.get(key) if isinstance(metrics, Mapping) else None
        if isinstance(entry, Mapping) and isinstance(entry.get(DIRECTION_KEY), bool):
            return entry[DIRECTION_KEY]
    return fallback_higher_is_better(key)

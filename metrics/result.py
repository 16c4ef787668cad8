"""The one result type every metric returns.

The interval helpers moved to ``metrics.intervals`` (one module for every interval and test);
``bootstrap_ci`` and ``wilson_ci`` are re-exported here for existing callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metrics.intervals import bootstrap_ci, wilson_ci

__all__ = ["MetricResult", "bootstrap_ci", "wilson_ci"]


@dataclass
class MetricResult:
    """A metric value with its 95% CI and (optionally) per-item values keyed by clip id."""

    name: str
    value: float
    ci95: tuple[float, float] | None = None
    per_item: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"name": self.name, "value": float(self.value), "ci95": list(self.ci95) if self.ci95 else None}
        d.update(self.extra)
        return d

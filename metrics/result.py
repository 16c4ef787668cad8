"""The one result type every metric returns.

A leaf module (it imports nothing of the project): ``metrics.metric`` and every metric build on it,
and the intervals live in ``metrics.intervals``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MetricResult:
    """A metric value with its 95% CI and (optionally) per-item values keyed by clip id."""

    name: str
    value: float
    ci95: tuple[float, float] | None = None
    per_item: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    # The metric's declared direction (``Metric.higher_is_better``); None for a result no Metric computed.
    # The results store writes it beside the value, so readers never guess it from the name.
    higher_is_better: bool | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "value": float(self.value), "ci95": list(self.ci95) if self.ci95 else None}
        if self.higher_is_better is not None:
            d["higher_is_better"] = self.higher_is_better
        d.update(self.extra)
        return d

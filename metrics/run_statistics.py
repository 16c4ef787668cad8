"""Every interval and paired test of one run, from one set of resamples, over the evaluated sources.

Split from ``metrics.evaluate`` (which scores the sources) because this part is pure arithmetic on the
metric states: ``statistics`` fills each result's ``ci95`` and returns the pairwise rows, and
``paired_comparisons`` tests every two systems on every metric they share (Holm-corrected per metric).
``SourceResult`` is what both halves exchange: a source's per-metric results and states.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from metrics.audio import PairingError
from metrics.intervals import holm, paired_comparison, prefetch_statistics
from metrics.metric import Metric
from metrics.resampling import Resampler, ResamplingPlan
from metrics.result import MetricResult

MIN_PAIRS = 10  # paired tests need at least this many shared clips (2 clips have 3 distinct bootstrap resamples)


@dataclass
class SourceResult:
    """One evaluated source (a system, or the reference as the ``ground truth`` row)."""

    name: str
    dir: str | None
    paths: dict[str, str]
    missing_ids: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    metrics: dict[str, MetricResult] = field(default_factory=dict)
    states: dict[str, Metric] = field(default_factory=dict)

    @property
    def n_clips(self) -> int:
        return len(self.paths)



def statistics(reference: SourceResult, results: Mapping[str, SourceResult], n_boot: int, seed: int,
               pairwise: bool = True) -> list[dict]:
    """Every interval and every paired test of a run from one set of resamples: fills each result's ``ci95``
    (the metrics were computed without one) and returns the pairwise rows.

    Why together and after all sources: one ``ResamplingPlan`` gives every system the same clip-id draws,
    and one ``Resampler`` evaluates each metric on each draw once, batched across systems (FAD decomposes
    each resampled reference once for all of them); a pair's differences are the two systems' values on
    the same draws. The numbers are those of each interval and test computed alone (same draws)."""
    if not n_boot:
        return []
    plan, resampler = ResamplingPlan(n_boot, seed), Resampler()
    sources = [reference, *results.values()]
    pairs = [(sa, sb) for _, _, _, sa, sb, why in _pairs(results) if why is None] if pairwise else []
    prefetch_statistics(resampler, plan, [m for src in sources for m in src.states.values()], pairs)
    for src in sources:
        for key, state in src.states.items():
            src.metrics[key].ci95 = state.interval(plan, resampler)
    return paired_comparisons(results, n_boot, seed, plan, resampler) if pairwise and len(results) > 1 else []


def _pairs(results: Mapping[str, SourceResult]) -> list[tuple[str, str, str, Metric, Metric, str | None]]:
    """(metric key, system a, system b, state a, state b, why not tested or None) for every two systems that
    share a metric, key by key."""
    out = []
    for key in sorted({k for r in results.values() for k in r.states}):
        for a, b in itertools.combinations(sorted(results), 2):
            sa, sb = results[a].states.get(key), results[b].states.get(key)
            if sa is None or sb is None:
                continue
            shared = set(sa.ids("generated")) & set(sb.ids("generated"))
            # a bootstrap over a handful of clips has a handful of distinct resamples
            why = f"fewer than {MIN_PAIRS} shared clips: no paired test" if len(shared) < MIN_PAIRS else None
            out.append((key, a, b, sa, sb, why))
    return out


def paired_comparisons(results: Mapping[str, SourceResult], n_boot: int, seed: int, plan: ResamplingPlan | None = None,
                       resampler: Resampler | None = None) -> list[dict]:
    """Every two systems on every metric they share: difference (a − b), 95% CI, p-value over the shared
    clip ids (``metrics.intervals.paired_comparison``, by the metric's ``interval_method``), Holm-corrected
    across the pairs of each metric.
    ``plan``/``resampler``: the run's shared draws and values (``statistics``); made here when not given."""
    plan, resampler = plan or ResamplingPlan(n_boot, seed), resampler or Resampler()
    rows: list[dict] = []
    for key, group in itertools.groupby(_pairs(results), key=lambda p: p[0]):
        block = []
        for _, a, b, sa, sb, why in group:
            if why is not None:
                block.append({"metric": key, "system_a": a, "system_b": b, "diff": None,
                              "n_pairs": len(set(sa.ids("generated")) & set(sb.ids("generated"))), "reason": why})
                continue
            try:
                cmp = paired_comparison(sa, sb, method=sa.interval_method, plan=plan, resampler=resampler)
            except (ValueError, PairingError) as e:
                block.append({"metric": key, "system_a": a, "system_b": b, "diff": None, "reason": str(e)})
                continue
            block.append({"metric": key, "system_a": a, "system_b": b, **cmp})
        ps = [r.get("p_value") for r in block]
        valid = [i for i, p in enumerate(ps) if p is not None]
        for i, p in zip(valid, holm([ps[i] for i in valid])):
            block[i]["p_holm"] = p
        rows.extend(block)
    return rows

"""Figures of the evaluation core's performance, rendered from their committed artifact.

Registered into ``benchmarks.figures.RENDERERS``: ``docs/figures/memory.json`` is written by
``python -m benchmarks.perf.compare_memory`` (one record per run: peak RSS and clips/s of ``compare``
for a source tree — the streaming pipeline, and the commit before it, measured at the same time — or
a ``test_bench_memory`` run recorded with ``--from-benchmark``): ``memory-table`` in docs/performance.md
§9, ``memory-summary`` inline in the README.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num

MEMORY = Path("docs/figures/memory.json")
ARTIFACTS = (MEMORY,)


def memory_table(root: Path) -> str:
    runs = get_field(load(root, MEMORY), MEMORY, "runs")
    lines = ["", "| tree | commit | clips × sets | peak RSS | clips/s | wall | load (start → end) |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:  # in the order they were measured
        loadavg = num(r["loadavg_start"][0], 1)
        if "loadavg_end" in r:  # older records kept only the start
            loadavg += f" → {num(r['loadavg_end'][0], 1)}"
        lines.append(f"| {r['label']} | `{r['commit']}` | {r['clips']} × {r['sets']} | {num(r['peak_rss_gb'], 2)} GB "
                     f"| {num(r['clips_per_s'], 2)} | {_minutes(r['wall_s'])} | {loadavg} |")
    return "\n".join(lines) + "\n"


def memory_summary(root: Path) -> str:
    """README's inline line: the largest run, and the old path's latest run beside it."""
    runs = get_field(load(root, MEMORY), MEMORY, "runs")
    big = max(runs, key=lambda r: r["clips"])  # the first of the largest size
    before = [r for r in runs if r["label"].startswith("before")]
    text = (f"at {big['clips']:,} clips × {big['sets']} sets of 10 s (mel + classifier + joint model, no cache) "
            f"peak RSS {num(big['peak_rss_gb'], 2)} GB and {num(big['clips_per_s'], 2)} clips/s")
    if before:
        old = before[-1]
        text += (f"; the old load-everything path: {num(old['peak_rss_gb'], 2)} GB already at "
                 f"{old['clips']:,} clips × {old['sets']}, {num(old['clips_per_s'], 2)} clips/s")
    return text


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


PERF_RENDERERS: dict[str, Callable[[Path], str]] = {"memory-table": memory_table, "memory-summary": memory_summary}

"""Figures of the evaluation core's performance, rendered from their committed artifact.

Registered into ``benchmarks.figures.RENDERERS``: ``docs/figures/memory.json`` is written by
``python -m benchmarks.perf.compare_memory`` (one record per run: peak RSS and clips/s of ``compare``
for a source tree — the streaming pipeline, and the commit before it, measured at the same time).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

MEMORY = Path("docs/figures/memory.json")
ARTIFACTS = (MEMORY,)


def memory_table(root: Path) -> str:
    from benchmarks import figures

    runs = figures._get(figures.load(root, MEMORY), MEMORY, "runs")
    lines = ["", "| tree | commit | clips × sets | peak RSS | clips/s | load at start |", "|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["clips"], r["label"])):
        lines.append(f"| {r['label']} | `{r['commit']}` | {r['clips']} × {r['sets']} | {figures.num(r['peak_rss_gb'], 2)} GB "
                     f"| {figures.num(r['clips_per_s'], 2)} | {figures.num(r['loadavg_start'][0], 1)} |")
    return "\n".join(lines) + "\n"


PERF_RENDERERS: dict[str, Callable[[Path], str]] = {"memory-table": memory_table}

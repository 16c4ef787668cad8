"""Figures of the evaluation core's performance, rendered from their committed artifact.

Registered into ``benchmarks.figures.RENDERERS``: ``docs/figures/memory.json`` is written by
``python -m benchmarks.perf.compare_memory`` (one record per run: peak RSS and clips/s of ``compare``
for a source tree — the streaming pipeline, and the commit before it, measured at the same time — or
a ``test_bench_memory`` run recorded with ``--from-benchmark``): ``memory-table`` in docs/performance.md
§9, ``memory-summary`` inline in the README. ``docs/bench/stats_table1.json`` is the pytest-benchmark
JSON of ``test_bench_stats.py::test_demo_table1_statistics`` (``--benchmark-json``): ``stats-bench-table``
in docs/performance.md §11.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num

MEMORY = Path("docs/figures/memory.json")
STATS_BENCH = Path("docs/bench/stats_table1.json")
ARTIFACTS = (MEMORY, STATS_BENCH)


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


def stats_bench_table(root: Path) -> str:
    """The demo's Table-1 statistics: wall and CPU time of one run, the work, the load beside it."""
    d = load(root, STATS_BENCH)
    lines = ["", "| statistics | resamples | wall | CPU | load (start → end) | target | per-test route (issue 28) |",
             "|---|---|---|---|---|---|---|"]
    for b in get_field(d, STATS_BENCH, "benchmarks"):
        e = b["extra_info"]
        lines.append(f"| {e['intervals']} intervals + {e['paired_tests']} paired tests, {e['clips']} clips × {e['sets']} sets "
                     f"| {e['n_boot']:,} | {num(b['stats']['min'], 1)} s | {num(e['cpu_s'], 1)} s "
                     f"| {num(e['loadavg_before'][0], 1)} → {num(e['loadavg_after'][0], 1)} | ≤ {e['target_s']} s "
                     f"| ≈{e['previous_s_issue_28']} s |")
    lines += ["", f"One round, one thread, {d['machine_info'].get('cpu_count')} cores, {d.get('datetime', '?')[:16]} UTC; "
              "CPU is the process's CPU time (what the run costs on an idle core; wall grows with the load)."]
    return "\n".join(lines) + "\n"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


PERF_RENDERERS: dict[str, Callable[[Path], str]] = {"memory-table": memory_table, "memory-summary": memory_summary,
                                                     "stats-bench-table": stats_bench_table}

"""Figures of the evaluation core's performance, rendered from their committed artifact.

Registered into ``benchmarks.figures.RENDERERS``: ``docs/figures/memory.json`` is written by
``python -m benchmarks.perf.compare_memory`` (one record per run: peak RSS and clips/s of ``compare``
for a source tree — the streaming pipeline, and the commit before it, measured at the same time — or
a ``test_bench_memory`` run recorded with ``--from-benchmark``): ``memory-table`` in docs/performance.md
§9, ``memory-summary`` inline in the README. ``docs/bench/stats_table1.json`` is the pytest-benchmark
JSON of ``test_bench_stats.py::test_demo_table1_statistics`` (``--benchmark-json``): ``stats-bench-table``
in docs/performance.md §11. ``docs/bench/generation_batch.json`` is the pytest-benchmark JSON of
``test_bench_generation.py::test_clips_per_s_by_batch``: ``generation-batch-table`` in docs/performance.md §4,
``generation-batch-summary`` inline in the README.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num

MEMORY = Path("docs/figures/memory.json")
STATS_BENCH = Path("docs/bench/stats_table1.json")
GENERATION_BENCH = Path("docs/bench/generation_batch.json")
ARTIFACTS = (MEMORY, STATS_BENCH, GENERATION_BENCH)


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


def generation_batch_table(root: Path) -> str:
    """Generation clips/s by batch size: every run in the order it ran (interleaved), its load beside it."""
    d = load(root, GENERATION_BENCH)
    e = get_field(d, GENERATION_BENCH, "benchmarks")[0]["extra_info"]
    lines = ["", "| run (in order) | batch | clips | wall | clips/s | CPU | clips per CPU-s | load (before → after) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in e["runs"]:
        lines.append(f"| {r['run']} | {r['batch']} | {r['clips']} | {num(r['wall_s'], 1)} s | {num(r['clips_per_s'], 3)} "
                     f"| {num(r.get('cpu_s'), 1)} s | {num(r.get('clips_per_cpu_s'), 3)} "
                     f"| {num(r['loadavg_before'][0], 1)} → {num(r['loadavg_after'][0], 1)} |")
    cps = e["clips_per_s"]
    lines += ["", f"{e['seconds_of_audio']:g} s clips, {e['weights']} checkpoints, {e['torch_threads']} torch thread, "
              f"{d['machine_info'].get('cpu_count')} cores, {d.get('datetime', '?')[:16]} UTC. Clips/s: batch 1 "
              f"{num(cps['1'], 3)} (the three clips alone), batch 8 {num(cps['8'], 3)} (**{num(e['ratio_8_over_1'], 1)}×**), "
              f"batch 20 {num(cps['20'], 3)} (**{num(e['ratio_20_over_1'], 1)}×**; target ≥ {e['target_ratio']}×); "
              f"the item-by-item fallback (`row_tile=0`) at batch 20: {num(e['item_by_item_clips_per_s_20'], 3)}. "
              f"Per CPU second (steadier under the shared load): batch 20 over batch 1 {num(e.get('cpu_ratio_20_over_1'), 1)}×, "
              f"the tiled route over the item-by-item fallback at batch 20 {num(_cpu_gain(e['runs']), 2)}×. "
              "Gate passed: each clip alone = its row in batch 8 and batch 20, bit for bit."]
    return "\n".join(lines) + "\n"


def _cpu_gain(runs: list[dict]) -> float | None:
    """Clips per CPU second of the tiled batch-20 run over the item-by-item one (None: an older record)."""
    by = {r["run"]: r.get("clips_per_cpu_s") for r in runs}
    tiled, items = by.get("batch-20"), by.get("batch-20-item-by-item")
    return tiled / items if tiled and items else None


def generation_batch_summary(root: Path) -> str:
    """README's inline line: clips/s of batch 20 against batch 1, and the load they ran under."""
    d = load(root, GENERATION_BENCH)
    e = get_field(d, GENERATION_BENCH, "benchmarks")[0]["extra_info"]
    loads = [r["loadavg_before"][0] for r in e["runs"]]
    return (f"generation of {e['seconds_of_audio']:g} s clips at batch 20 runs at {num(e['ratio_20_over_1'], 1)}× the clips/s "
            f"of batch 1 ({num(e['clips_per_s']['20'], 2)} vs {num(e['clips_per_s']['1'], 2)}, load {num(min(loads), 1)}–"
            f"{num(max(loads), 1)} on {d['machine_info'].get('cpu_count')} cores), every clip bit-identical to the clip generated alone")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


PERF_RENDERERS: dict[str, Callable[[Path], str]] = {"memory-table": memory_table, "memory-summary": memory_summary,
                                                     "stats-bench-table": stats_bench_table,
                                                     "generation-batch-table": generation_batch_table,
                                                     "generation-batch-summary": generation_batch_summary}

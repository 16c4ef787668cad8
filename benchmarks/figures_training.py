"""The training-throughput figure of docs/performance.md, rendered from pytest-benchmark JSON.

Registered into ``benchmarks.figures.RENDERERS``. ``docs/figures/training_throughput.json`` is the
``--benchmark-json`` of ``benchmarks/perf/test_bench_training.py`` on this project's CPU machine;
``training_throughput_cuda.json``, when a GPU session commits one, is the same suite with
``--device cuda``. Each row is one benchmark's ``extra_info`` (written by the benchmark itself).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num

CPU = Path("docs/figures/training_throughput.json")
CUDA = Path("docs/figures/training_throughput_cuda.json")
ARTIFACTS = (CPU, CUDA)
GPU_COMMAND = ("BENCH_TRAIN_PRESET=paper pytest benchmarks/perf/test_bench_training.py -p no:randomly --device cuda "
               "--benchmark-json docs/figures/training_throughput_cuda.json")


def _rows(doc: dict, rel: Path) -> list[str]:
    info = doc.get("machine_info", {})
    loadavg = info.get("loadavg_at_start", [None])[0]
    where = f"{info.get('cpu_count', '?')} CPUs, load {num(loadavg, 1)}" if loadavg is not None else str(info.get("cpu_count", "?"))
    out = []
    for b in get_field(doc, rel, "benchmarks"):
        e = b["extra_info"]
        out.append(f"| {e['stage']} | {e['preset']} | {e['device']} ({where}) | {e['precision']}{' + ckpt' if e['grad_checkpoint'] else ''} "
                   f"| {e['global_batch']} × {e['target_tokens_per_row']} | {e['target_tokens_per_s']:,.0f} "
                   f"| {e['sequence_tokens_per_s']:,.0f} | {num(e['loss_first'], 2)} → {num(e['loss_last'], 2)} |")
    return out


def training_throughput(root: Path) -> str:
    lines = ["", "| stage | preset | device | precision | batch × target tokens | target tokens/s | sequence tokens/s "
             "| gate: loss first → last |", "|---|---|---|---|---|---|---|---|"]
    lines += _rows(load(root, CPU), CPU)
    if (root / CUDA).is_file():
        lines += _rows(load(root, CUDA), CUDA)
        tail = ""
    else:
        tail = f"\nGPU: not measured — no GPU was lent to the session that wrote this table. On one, run `{GPU_COMMAND}`.\n"
    return "\n".join(lines) + "\n" + tail


TRAINING_RENDERERS: dict[str, Callable[[Path], str]] = {"training-throughput": training_throughput}

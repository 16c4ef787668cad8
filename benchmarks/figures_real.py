"""Figures of the real pretrained models (musicnn, KAD), rendered from their committed artifacts.

Registered into ``benchmarks.figures.RENDERERS``: the musicnn manifest (written by
``python -m metrics.convert_musicnn``), ``docs/bench/musicnn_corpus.json`` (``python -m
benchmarks.musicnn_check``) and ``docs/bench/kad.json`` (the pytest-benchmark JSON of
``benchmarks/perf/test_bench_kad.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num

MUSICNN_MANIFEST = Path("metrics/checkpoints/musicnn/manifest.json")
MUSICNN_CORPUS = Path("docs/bench/musicnn_corpus.json")
KAD_BENCH = Path("docs/bench/kad.json")
ARTIFACTS = (MUSICNN_MANIFEST, MUSICNN_CORPUS, KAD_BENCH)


def musicnn_parity(root: Path) -> str:
    m = load(root, MUSICNN_MANIFEST)
    models = get_field(m, MUSICNN_MANIFEST, "models")
    tag = max(v["parity_with_original_graph"]["taggram_max_abs"] for v in models.values())
    pen = max(v["parity_with_original_graph"]["penultimate_max_abs"] for v in models.values())
    n = next(iter(models.values()))["parity_with_original_graph"]["patches"]
    return (f"wheel sha256 `{m['wheel_sha256'][:8]}…{m['wheel_sha256'][-4:]}`, the command, the port's deviation from "
            f"the original graph on {n} seeded patches: taggram ≤ {tag:.1e}, penultimate ≤ {pen:.1e} max abs")


def _auc_rows(entry: dict) -> list[tuple[str, float]]:
    words = [(f"{w} (`{v['tag']}`)", v["auc"]) for w, v in entry["words"].items() if v["auc"] is not None]
    return sorted(words, key=lambda r: -r[1])


def musicnn_auc_table(root: Path) -> str:
    d = load(root, MUSICNN_CORPUS)
    mtt, msd = (_auc_rows(get_field(d, MUSICNN_CORPUS, "models", n)) for n in ("musicnn-mtt", "musicnn-msd"))
    lines = ["", "  | attribute (tag) | musicnn-mtt | attribute (tag) | musicnn-msd |", "  |---|---|---|---|"]
    for i in range(max(len(mtt), len(msd))):
        left = f"{mtt[i][0]} | {num(mtt[i][1], 2)}" if i < len(mtt) else " | "
        right = f"{msd[i][0]} | {num(msd[i][1], 2)}" if i < len(msd) else " | "
        lines.append(f"  | {left} | {right} |")
    means = [num(d["models"][n]["mean_auc"], 2) for n in ("musicnn-mtt", "musicnn-msd")]
    lines.append(f"  | **mean** | **{means[0]}** | **mean** | **{means[1]}** |")
    return "\n".join(lines) + "\n"


def musicnn_corpus_summary(root: Path) -> str:
    d = load(root, MUSICNN_CORPUS)
    mtt = get_field(d, MUSICNN_CORPUS, "models", "musicnn-mtt")
    piano = mtt["piano_tag_rank_on_piano_clips"]
    return (f"mean tag AUC {num(mtt['mean_auc'], 2)} (musicnn-msd {num(d['models']['musicnn-msd']['mean_auc'], 2)}); "
            f"on the {piano['clips']} piano clips the `piano` tag's median rank among the 50 is {piano['median']:g} "
            f"(top 5 in {piano['top5_share']:.0%}); musicnn's own float16 extractor would send "
            f"{d['clips_hit_by_float16_overflow']} of the {d['corpus']['n']} clips to `inf`")


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def kad_bench_table(root: Path) -> str:
    d = load(root, KAD_BENCH)
    rows = ["", "| frames a side | dense (kadtk) time | dense peak | ours float64 time | ours peak | ours float32 time "
            "| time ratio | memory ratio |", "|---|---|---|---|---|---|---|---|"]
    for b in get_field(d, KAD_BENCH, "benchmarks"):
        e = b["extra_info"]
        if "ours" in e:
            o64, o32, dense = e["ours"]["float64"], e["ours"]["float32"], e["dense"]
            if isinstance(dense, dict):
                cells = [f"{dense['seconds']:.1f} s", _mib(dense["peak_bytes"])]
                ratios = [f"{e['time_ratio_dense_over_ours_float64']:.1f}×", f"{e['memory_ratio_dense_over_ours_float64']:.0f}×"]
            else:
                cells = [str(dense), ""]
                ratios = ["", ""]
            rows.append(f"| {e['n']:,} | {cells[0]} | {cells[1]} | {o64['seconds']:.1f} s | {_mib(o64['peak_bytes'])} | "
                        f"{o32['seconds']:.1f} s | {ratios[0]} | {ratios[1]} |")
        else:
            need = 10 * e["n"] ** 2 * 4 / 2**30
            rows.append(f"| {e['n']:,} | not run: would need ≈ {need:.0f} GiB | | {e['seconds']:.0f} s | "
                        f"{_mib(e['peak_bytes'])} | | | |")
    load_avg = d.get("machine_info", {}).get("loadavg_at_start")
    rows += ["", f"One round each, one thread; load average {load_avg[0]:.1f} on {d['machine_info'].get('cpu_count')} cores "
             f"when the run started ({d.get('datetime', '?')[:16]} UTC)." if load_avg else ""]
    return "\n".join(rows) + "\n"


REAL_MODEL_RENDERERS: dict[str, Callable[[Path], str]] = {
    "musicnn-parity": musicnn_parity, "musicnn-auc-table": musicnn_auc_table,
    "musicnn-corpus-summary": musicnn_corpus_summary, "kad-bench-table": kad_bench_table,
}

"""Figures of the memorization audit, rendered from its committed artifact.

Registered into ``benchmarks.figures.RENDERERS``. ``docs/figures/bench_sinkhorn.json`` is the
pytest-benchmark JSON of ``benchmarks/perf/test_bench_sinkhorn.py``; ``docs/figures/memorization_real/`` holds what
``musiclm-eval memorization audit --detect 10 --heldout 0.8`` wrote (memorization.json, matches.csv)
on the real-music set that ``musiclm-eval memorization real-set`` cuts, and that set's truth.json
(README, "Memorization").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import FigureError, get_field, load
from benchmarks.figures_memo_folds import FOLDS_RENDERERS, MEMO_FOLDS

MEMO_REAL = Path("docs/figures/memorization_real/memorization.json")
MEMO_REAL_MATCHES = Path("docs/figures/memorization_real/matches.csv")
MEMO_REAL_TRUTH = Path("docs/figures/memorization_real/truth.json")
SINKHORN_BENCH = Path("docs/figures/bench_sinkhorn.json")
ARTIFACTS = (MEMO_REAL, MEMO_REAL_MATCHES, MEMO_REAL_TRUTH, SINKHORN_BENCH, MEMO_FOLDS)
LAG_TOL_S = 0.25


def _found(root: Path, matcher: str) -> tuple[int, int, list[str]]:
    """Planted copies of the generated set reported at their training clip and lag (truth.json vs matches.csv)."""
    import csv

    truth = load(root, MEMO_REAL_TRUTH)
    if not (root / MEMO_REAL_MATCHES).exists():
        raise FigureError(f"{MEMO_REAL_MATCHES}: artifact not found")
    with open(root / MEMO_REAL_MATCHES, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["matcher"] == matcher]
    missed = [g for g, (src, start) in truth.items()
              if not any(r["generated_id"] == g and r["train_id"] == src
                         and abs(float(r["train_offset_s"]) - float(r["gen_offset_s"]) - start) <= LAG_TOL_S + 1e-9
                         for r in rows)]
    return len(truth) - len(missed), len(truth), missed


def memorization_real(root: Path) -> str:
    d = load(root, MEMO_REAL)
    ms = list(get_field(d, MEMO_REAL, "matchers"))
    lines = ["", "| | " + " | ".join(f"`{m}`" for m in ms) + " |", "|---|" + "---|" * len(ms)]

    def false_alarms(m: str) -> str:
        x = d["matchers"][m]
        c = x["calibration"]
        lo, hi = x["clip_false_alarm_ci95"]
        return f"{c['clip_false_alarms']}/{c['n_heldout']} ({lo:.4f}–{hi:.4f})"

    def reported(m: str) -> str:
        best = d["matchers"][m]["best_cost"]
        novel = [k for k in best if k.startswith("novel_")]
        return f"{sum(best[k] is not None for k in novel)}/{len(novel)}"

    def found(m: str) -> str:
        k, n, missed = _found(root, m)
        return f"{k}/{n}" + (f" (missed: {', '.join(missed)})" if missed else "")

    def certified(m: str) -> str:
        x = d["matchers"][m]
        hi = x["clip_false_alarm_ci95"][1]
        from metrics.memorization.calibration import best_certifiable

        n = x["calibration"]["n_heldout"]
        return (f"{'yes' if x['certified'] else 'no'}: ≤ {hi:.4f} (95 % upper bound) vs target {x['fpr_target']:g}; "
                f"{n} held-out nulls can certify {best_certifiable(n):.4f} at best")

    def tau(m: str) -> str:
        c = d["matchers"][m]["calibration"]
        rule = "rank rule" if c["tail"] == "empirical" else "normal tail fit"
        return f"{d['matchers'][m]['tau']:.3g} ({c['n_calibration']} calibration nulls, {rule})"

    lines.append("| planted copies in the generated set found, right clip and lag | " + " | ".join(map(found, ms)) + " |")
    lines.append("| novel pieces reported | " + " | ".join(map(reported, ms)) + " |")
    lines.append("| per-clip false alarms, held-out nulls (95 % CI) | " + " | ".join(map(false_alarms, ms)) + " |")
    lines.append("| certified per-clip rate | " + " | ".join(map(certified, ms)) + " |")
    lines.append("| τ | " + " | ".join(map(tau, ms)) + " |")
    for alt in d["detection"][ms[0]]:
        cells = [f"{t['detected']}/{t['n']} ({t['ci95'][0]:.2f}–{t['ci95'][1]:.2f})"
                 for t in (d["detection"][m][alt] for m in ms)]
        lines.append(f"| detected: `{alt}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sinkhorn_bench(root: Path) -> str:
    """``docs/figures/bench_sinkhorn.json``: pytest-benchmark JSON of ``benchmarks/perf/test_bench_sinkhorn.py``."""
    d = load(root, SINKHORN_BENCH)
    e = get_field(d, SINKHORN_BENCH, "benchmarks")[0]["extra_info"]
    loadavg = d.get("machine_info", {}).get("loadavg_at_start")
    rows = ["", "| solver (same 256 pairs) | pairs/s | × per-pair POT loop, restricted support |", "|---|---|---|",
            f"| ours, float32, cache-sized chunks of {e['chunk_pairs_float32']} pairs (default) | "
            f"{e['pairs_per_s_batched']:.0f} | **{e['ratio_vs_pot_restricted']:.2f}×** |",
            f"| ours, float64, cache-sized chunks | {e['pairs_per_s_batched_float64']:.0f} | "
            f"{e['ratio_float64_vs_pot_restricted']:.2f}× |",
            f"| ours, float32, one 256-pair chunk (the previous default) | {e['pairs_per_s_batched_one_chunk']:.0f} | "
            f"{e['ratio_one_chunk_vs_pot_restricted']:.2f}× |",
            f"| `ot.sinkhorn2` per pair, restricted support (mean of before/after) | {e['pairs_per_s_pot_restricted']:.0f} | 1× |",
            f"| `ot.sinkhorn2(method=\"sinkhorn_log\")` per pair, dense 1,024 bins | {e['pairs_per_s_pot_log_1024']:.3f} | "
            f"{e['pairs_per_s_pot_log_1024'] / e['pairs_per_s_pot_restricted']:.4f}× (ours: {e['ratio_vs_pot_log_1024']:,.0f}× it) |",
            "", f"Same costs: max relative difference {e['max_rel_diff_vs_pot_restricted']:.1e} vs the restricted peer, "
            f"{e['max_rel_diff_vs_pot_log_1024']:.1e} vs the dense log-domain one (gate 1e-3). One round, one thread"
            + (f"; load average {loadavg[0]:.1f} on the 2 shared cores at the start." if loadavg else ".")]
    return "\n".join(rows) + "\n"


MEMO_RENDERERS: dict[str, Callable[[Path], str]] = {"memorization-real": memorization_real, "sinkhorn-bench": sinkhorn_bench,
                                                     **FOLDS_RENDERERS}

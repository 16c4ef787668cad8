"""Figures of the memorization audit, rendered from its committed artifact.

Registered into ``benchmarks.figures.RENDERERS``: ``docs/figures/memorization_real/memorization.json``
is what ``musiclm-eval memorization audit --detect 5`` wrote on the real-music set that
``musiclm-eval memorization real-set`` cuts (README, "Memorization").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

MEMO_REAL = Path("docs/figures/memorization_real/memorization.json")
ARTIFACTS = (MEMO_REAL,)


def memorization_real(root: Path) -> str:
    from benchmarks import figures

    d = figures.load(root, MEMO_REAL)
    ms = list(figures._get(d, MEMO_REAL, "matchers"))
    lines = ["", "| | " + " | ".join(f"`{m}`" for m in ms) + " |", "|---|" + "---|" * len(ms)]

    def false_alarms(m: str) -> str:
        x = d["matchers"][m]
        c = x["calibration"]
        lo, hi = x["clip_false_alarm_ci95"]
        return f"{c['clip_false_alarms']}/{c['n_heldout']} ({lo:.2f}–{hi:.2f})"

    def reported(m: str) -> str:
        best = d["matchers"][m]["best_cost"]
        novel = [k for k in best if k.startswith("novel_")]
        return f"{sum(best[k] is not None for k in novel)}/{len(novel)}"

    lines.append("| per-clip false alarms, held-out nulls (95 % CI) | " + " | ".join(map(false_alarms, ms)) + " |")
    lines.append("| novel pieces reported | " + " | ".join(map(reported, ms)) + " |")
    tails = ", ".join(d["matchers"][m]["calibration"]["tail"] for m in ms)
    lines.append(f"| τ ({tails}) | " + " | ".join(f"{d['matchers'][m]['tau']:.3g}" for m in ms) + " |")
    for alt in d["detection"][ms[0]]:
        cells = [f"{t['detected']}/{t['n']} ({t['ci95'][0]:.2f}–{t['ci95'][1]:.2f})"
                 for t in (d["detection"][m][alt] for m in ms)]
        lines.append(f"| detected: `{alt}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


MEMO_RENDERERS: dict[str, Callable[[Path], str]] = {"memorization-real": memorization_real}

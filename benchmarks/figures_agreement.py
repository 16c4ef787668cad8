"""The metric–human agreement coverage figure, rendered from its committed artifact.

Registered into ``benchmarks.figures.RENDERERS``: ``docs/figures/agreement_coverage.json`` is written by
``python -m benchmarks.agreement_coverage`` (simulated studies, ``human_eval.simulate``): ``agreement-coverage``
in docs/protocol.md ("Metric–human agreement") and README.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num

AGREEMENT_COVERAGE = Path("docs/figures/agreement_coverage.json")
ARTIFACTS = (AGREEMENT_COVERAGE,)


def agreement_coverage(root: Path) -> str:
    d = load(root, AGREEMENT_COVERAGE)
    rows = get_field(d, AGREEMENT_COVERAGE, "settings")
    lines = ["", f"Simulated studies ({rows[0]['reps']} replications per design, {d['n_boot']} two-way bootstrap "
             f"resamples; `{AGREEMENT_COVERAGE}`, `{d['command']}`):", "",
             "| design | planted agreement | coverage, planted [Wilson 95 %] | coverage of ½, independent metric | "
             "power (p < 0.05) | false positives (independent) | mean CI width |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        p, i = r["planted"], r["independent"]
        lo, hi = p["coverage_wilson95"]
        lines.append(f"| {r['setting']} | {num(r['planted_agreement'], 3)} | {num(p['coverage'], 3)} [{num(lo, 3)}, "
                     f"{num(hi, 3)}] | {num(i['coverage'], 3)} | {num(p['rejection_rate_5pct'], 3)} | "
                     f"{num(i['rejection_rate_5pct'], 3)} | {num(p['mean_ci_width'], 3)} |")
    return "\n".join(lines) + "\n"


AGREEMENT_RENDERERS: dict[str, Callable[[Path], str]] = {"agreement-coverage": agreement_coverage}

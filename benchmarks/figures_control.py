"""The control estimators' accuracy on the procedural corpus (``docs/figures/control_accuracy.json``, written by
``python -m benchmarks.control_accuracy``), rendered into README.md; every estimator entry renders, whoever adds it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num

CONTROL_ACCURACY = Path("docs/figures/control_accuracy.json")


def control_accuracy(root: Path) -> str:
    d = load(root, CONTROL_ACCURACY)
    c = get_field(d, CONTROL_ACCURACY, "corpus")
    lines = ["", f"  {c['clips']} procedural-corpus clips of {c['seconds']:g} s (seed {c['seed']}), truth from their "
             "specs; mean over clips:", "",
             "  | control | estimator | score vs the truth | s / clip |", "  |---|---|---|---|"]
    for e in get_field(d, CONTROL_ACCURACY, "estimators").values():
        scores = ", ".join(f"{k} {num(v, 3)}" for k, v in e["scores"].items())
        lines.append(f"  | {e['estimates']} | {e['estimator']} | {scores} | {num(e['seconds_per_clip'], 3)} |")
    return "\n".join(lines) + "\n"


CONTROL_RENDERERS: dict[str, Callable[[Path], str]] = {"control-accuracy": control_accuracy}

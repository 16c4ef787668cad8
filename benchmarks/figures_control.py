"""The control estimators' accuracy on the procedural corpus (``docs/figures/control_accuracy.json``, written by
``python -m benchmarks.control_accuracy``), rendered into README.md; every estimator entry renders, whoever adds it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num

CONTROL_ACCURACY = Path("docs/figures/control_accuracy.json")
RHYTHM_ACCURACY = Path("docs/figures/rhythm_accuracy.json")
ARTIFACTS = (CONTROL_ACCURACY, RHYTHM_ACCURACY)


def control_accuracy(root: Path) -> str:
    d = load(root, CONTROL_ACCURACY)
    c = get_field(d, CONTROL_ACCURACY, "corpus")
    lines = ["", f"  Procedural-corpus clips of {c['seconds']:g} s (seed {c['seed']}), truth from their specs; mean over "
             "clips (s / clip: one core of a loaded 2-core machine):", "",
             "  | control | estimator | clips | score vs the truth | s / clip |", "  |---|---|---|---|---|"]
    for e in get_field(d, CONTROL_ACCURACY, "estimators").values():
        scores = ", ".join(f"{k} {num(v, 3)}" for k, v in e["scores"].items())
        lines.append(f"  | {e['estimates']} | {e['estimator']} | {e['n_clips']} | {scores} | "
                     f"{num(e['seconds_per_clip'], 3)} |")
    return "\n".join(lines) + "\n"


def rhythm_stretch(root: Path) -> str:
    """The Wesnoth time-stretch check of tempo acc1 (``python -m benchmarks.rhythm_accuracy``), one sentence."""
    d = load(root, RHYTHM_ACCURACY)
    rows = get_field(d, RHYTHM_ACCURACY, "per_piece")
    r1, r6 = ([row[f"ratio_{r}"] for row in rows] for r in ("1.01", "1.06"))
    return (f"over {d['pieces']} pieces ({d['excerpt']}), tempo acc1 against the original's tempo is "
            f"{num(d['acc1_1.01'], 2)} at a 1 % stretch (tracked ratio {num(min(r1), 3)}–{num(max(r1), 3)}) and "
            f"{num(d['acc1_1.06'], 2)} at 6 % (ratio {num(min(r6), 3)}–{num(max(r6), 3)})")


CONTROL_RENDERERS: dict[str, Callable[[Path], str]] = {"control-accuracy": control_accuracy, "rhythm-stretch": rhythm_stretch}

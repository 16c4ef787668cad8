"""The interval-coverage figure of the simulated data conditions, rendered from its committed artifact.

Registered into ``benchmarks.figures.RENDERERS``: ``docs/figures/interval_coverage_conditions.json`` is
written by ``python -m benchmarks.interval_coverage --conditions`` (heavy tails, clip effects, d = 64 / 128,
unequal set sizes; FAD, KAD, KLD, MCC): ``interval-coverage-conditions`` in docs/protocol.md ("Intervals").
Each row says whether it meets the targets of issue 27 (coverage in 0.90–0.99; the paired test's
false-positive rate at most α within Monte-Carlo error, i.e. α not below its Wilson interval), so a miss
is visible where the number is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import FigureError, get_field, load, num

CONDITIONS = Path("docs/figures/interval_coverage_conditions.json")
ARTIFACTS = (CONDITIONS,)
BAND = (0.90, 0.99)
LABELS = {"gaussian": "Gaussian frames", "heavy_tails_t3": "Student-t (3 df) frames",
          "clip_effects": "clip effects (half the variance per clip)", "unequal_40_vs_20": "40 reference vs 20 generated",
          "dim_64": "d = 64", "dim_128": "d = 128"}


def _setup(s: dict) -> str:
    tail = {"gaussian": "Gaussian", "t3": "t₃"}.get(s["tail"], s["tail"])
    return f"{s['n_ref']}/{s['n_gen']} clips, d {s['dim']}, {tail}, clip share {num(s['clip_share'], 1)}"


METHOD_NAMES = {"bca": "BCa", "jackknife": "jackknife bias-corrected t"}


def _method(s: dict) -> str:
    """The interval method(s) of the run: one name, or each metric's (``settings.interval``, a name or metric → name)."""
    m = s["interval"]
    if isinstance(m, str):
        return f"{s['n_boot']} resamples, {METHOD_NAMES.get(m, m)}"
    kinds = set(m.values())
    if kinds == {"jackknife"}:
        return "delete-one jackknife over clips, bias-corrected t intervals and tests for every metric"
    return ", ".join(f"{k.upper()} {METHOD_NAMES.get(v, v)}" for k, v in m.items()) + f" ({s['n_boot']} resamples)"


def _load(root: Path) -> dict:
    d = load(root, CONDITIONS)
    if not d.get("complete"):
        raise FigureError(f"{CONDITIONS}: an unfinished run (complete is false); rerun "
                          "python -m benchmarks.interval_coverage --conditions")
    return d


def _cells(d: dict) -> list[tuple[str, str, dict, bool, bool]]:
    """(condition, metric, entry, coverage in the band, false-positive rate ≤ α within its Wilson interval)."""
    return [(name, key, m, BAND[0] <= m["coverage"] <= BAND[1], m["fpr_wilson95"][0] <= m["alpha"])
            for name, c in get_field(d, CONDITIONS, "conditions").items() for key, m in c["metrics"].items()]


def _misses(cells: list[tuple[str, str, dict, bool, bool]], which: int) -> str:
    """The cells that miss target ``which`` (3: coverage, 4: false positives), named, or "none"."""
    return ", ".join(f"{c[1].upper()} ({LABELS.get(c[0], c[0])})" for c in cells if not c[which]) or "none"


def coverage_conditions(root: Path) -> str:
    d = _load(root)
    s = get_field(d, CONDITIONS, "settings")
    conditions = get_field(d, CONDITIONS, "conditions")
    lines = ["", f"  {s['replications']} replications per condition, {_method(s)}, α = {s['alpha']}, "
             f"KAD bandwidth {s['kad_bandwidth']}, KLD {s['kld_convention']}, "
             f"{next(iter(conditions.values()))['setup']['frames_per_clip']} frames (windows) per clip. "
             "✓: coverage in 0.90–0.99 / false-positive rate ≤ α within its Wilson interval.", "",
             "  | condition | metric | population (± MC se) | mean estimate | coverage [Wilson 95 %] | "
             "above / below | paired-test FPR [Wilson 95 %] |",
             "  |---|---|---|---|---|---|---|"]
    cells = _cells(d)
    shown = set()
    for name, key, m, ok_cov, ok_fpr in cells:
        label = "" if name in shown else f"{LABELS.get(name, name)} ({_setup(conditions[name]['setup'])})"
        shown.add(name)
        (clo, chi), (flo, fhi), pop = m["coverage_wilson95"], m["fpr_wilson95"], m["population"]
        lines.append(f"  | {label} | {key.upper()} | {num(pop['value'], 4)} ± {num(pop['se'], 4)} | "
                     f"{num(m['mean_estimate'], 4)} | {num(m['coverage'], 3)} [{num(clo, 3)}, {num(chi, 3)}] "
                     f"{'✓' if ok_cov else '✗'} | {num(m['share_entirely_above'], 3)} / "
                     f"{num(m['share_entirely_below'], 3)} | {num(m['false_positive_rate'], 3)} "
                     f"[{num(flo, 3)}, {num(fhi, 3)}] {'✓' if ok_fpr else '✗'} |")
    lines += ["", f"  Coverage outside 0.90–0.99: {_misses(cells, 3)}. Paired-test false-positive rate above α "
              f"beyond Monte-Carlo error: {_misses(cells, 4)}."]
    return "\n".join(lines) + "\n"


def coverage_summary(root: Path) -> str:
    """One sentence for README: how many (condition, metric) cells meet each target."""
    d = _load(root)
    cells, s = _cells(d), get_field(d, CONDITIONS, "settings")
    return (f"{sum(c[3] for c in cells)} of {len(cells)} (condition, metric) cells keep coverage in 0.90–0.99 and "
            f"{sum(c[4] for c in cells)} of {len(cells)} keep the paired test's false-positive rate at α = "
            f"{s['alpha']} within Monte-Carlo error ({s['replications']} replications each)")


COVERAGE_RENDERERS: dict[str, Callable[[Path], str]] = {"interval-coverage-conditions": coverage_conditions,
                                                        "interval-coverage-summary": coverage_summary}

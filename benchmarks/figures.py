"""Figures come from code: every number table in README.md and docs/ is rendered from a committed artifact.

A figure sits between marker comments in a Markdown file::

    <!-- figures:NAME -->…rendered text…<!-- /figures:NAME -->

and ``RENDERERS[NAME]`` renders it from JSON that the measuring code wrote: the shipped checkpoints'
manifests (written by the training commands), ``docs/figures/demo.json`` (taken from the results
store ``make run`` writes, by ``--from-demo``) and ``docs/figures/interval_coverage.json``
(``benchmarks/interval_coverage.py``). Nothing is typed in by hand.

    python -m benchmarks.figures                      # rewrite every figure from its artifact (make figures)
    python -m benchmarks.figures --check              # exit 1 listing every figure that differs
    python -m benchmarks.figures --from-demo results/demo   # refresh docs/figures/demo.json, then rewrite

``tests/test_figures.py`` runs the check, so a figure edited by hand, or an artifact changed without
``make figures``, fails the suite.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_adherence import ADHERENCE_RENDERERS
from benchmarks.figures_agreement import AGREEMENT_RENDERERS
from benchmarks.figures_control import CONTROL_RENDERERS
from benchmarks.figures_coverage import COVERAGE_RENDERERS
from benchmarks.figures_format import FigureError, get_field, load, num, with_ci
from benchmarks.figures_hierarchy import HIERARCHY_RENDERERS
from benchmarks.figures_mad import MAD_RENDERERS
from benchmarks.figures_memo import MEMO_RENDERERS
from benchmarks.figures_perf import PERF_RENDERERS
from benchmarks.figures_real import REAL_MODEL_RENDERERS
from benchmarks.figures_training import TRAINING_RENDERERS
from metrics.store.direction import arrow, fallback_higher_is_better

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/protocol.md", "docs/performance.md", "docs/ray.md")
FIGURES = Path("docs/figures")
CODEC_MANIFEST = Path("musiclm_ref/checkpoints/tiny/manifest.json")
CLASSIFIER_MANIFEST = Path("metrics/checkpoints/classifier-tiny.json")
MULAN_MANIFEST = Path("musiclm_ref/checkpoints/mulan-tiny.json")
DEMO = FIGURES / "demo.json"
COVERAGE = FIGURES / "interval_coverage.json"
MARKER = re.compile(r"<!-- figures:([a-z0-9-]+) -->(.*?)<!-- /figures:\1 -->", re.S)
OPEN = re.compile(r"<!-- (/?)figures:([a-z0-9-]+) -->")


# ----------------------------------------------------------------------------- renderers


def codec_summary(root: Path) -> str:
    m = load(root, CODEC_MANIFEST)
    lv = get_field(m, CODEC_MANIFEST, "codec.pt", "metrics", "log_mel_distance_by_levels")
    n = get_field(m, CODEC_MANIFEST, "codec.pt", "metrics", "held_out_clips")
    return (f"{num(lv['1'], 3)} from level 1 alone, {num(lv['4'], 3)} from the coarse levels 1–4, "
            f"{num(lv['12'], 3)} from all 12 ({n} held-out clips of its training corpus, as its manifest records)")


def codec_levels(root: Path) -> str:
    m = load(root, CODEC_MANIFEST)
    lv = get_field(m, CODEC_MANIFEST, "codec.pt", "metrics", "log_mel_distance_by_levels")
    n = get_field(m, CODEC_MANIFEST, "codec.pt", "metrics", "held_out_clips")
    vals = [num(lv[str(k)], 3) for k in range(1, 13)]
    return (f"Log-mel distance on the {n} clips the shipped codec held out of its corpus when it was trained (never "
            f"trained on; `manifest.json` → `codec.pt.metrics`), decoding with the first n levels: {vals[0]} (1), "
            f"{vals[1]} (2), {vals[2]} (3), {vals[3]} (4), {', '.join(vals[4:11])}, {vals[11]} (12)")


def stage_figures(root: Path) -> str:
    m = load(root, CODEC_MANIFEST)

    def part(stage: str) -> tuple[str, str, int]:
        met = get_field(m, CODEC_MANIFEST, f"{stage}_stage.pt", "metrics")
        return f"{met['steps']:,}", num(met["held_out_loss"], 3), round(met["train_seconds"] / 60)

    (s_steps, s_nll, s_min), (c_steps, c_nll, c_min), (f_steps, f_nll, f_min) = map(part, ("semantic", "coarse", "fine"))
    codebook = get_field(m, CODEC_MANIFEST, "fine_stage.pt", "config", "tokens", "acoustic_codebook")
    return (f"semantic {s_steps} steps (held-out NLL {s_nll} nats/token, {s_min} min), coarse {c_steps} "
            f"({c_nll}, {c_min} min) and fine {f_steps} ({f_nll} of ln {codebook} = {num(math.log(codebook), 3)}, "
            f"{f_min} min)")


def classifier_map(root: Path) -> str:
    m = load(root, CLASSIFIER_MANIFEST)
    return (f"held-out mAP {num(get_field(m, CLASSIFIER_MANIFEST, 'metrics', 'eval_map'), 2)} on the corpus tags "
            f"({get_field(m, CLASSIFIER_MANIFEST, 'metrics', 'n_eval')} held-out clips)")


def mulan_recall(root: Path) -> str:
    m = load(root, MULAN_MANIFEST)
    met = get_field(m, MULAN_MANIFEST, "metrics")
    return f"caption→audio recall@10 among {met['n_candidates']} = {num(met['recall_at_10_of_100'], 2)}"


# (header, key, digits); the arrows come from the one direction table (the artifact keeps no store fields)
DEMO_COLUMNS = tuple((f"{label} {arrow(fallback_higher_is_better(key))}", key, digits)
                     for label, key, digits in (("FAD_mel", "fad_mel", 1), ("KLD", "kld", 2), ("MCC", "mcc", 3)))


NO_DEMO = ("no committed demo artifact yet: run `make run`, then "
           "`python -m benchmarks.figures --from-demo results/demo` (writes docs/figures/demo.json)")


def demo_table(root: Path) -> str:
    if not (root / DEMO).exists():
        return f"\n({NO_DEMO})\n"
    d = load(root, DEMO)
    lines = [f"The table `make run` wrote ({d['n_eval_clips']} eval clips; 95% CIs over the clips of both sides: "
             f"jackknife bias-corrected t for FAD, KAD, KLD and MCC, BCa bootstrap otherwise; KLD convention `{d['kld_convention']}`; `{DEMO}`, commit {(d['git_commit'] or '?')[:10]}):",
             "", "| System | " + " | ".join(c[0] for c in DEMO_COLUMNS) + " |",
             "|---|" + "---|" * len(DEMO_COLUMNS)]
    for name, row in d["systems"].items():
        lines.append(f"| {name} | " + " | ".join(with_ci(row.get(k), digits) for _, k, digits in DEMO_COLUMNS) + " |")
    sig = [p for p in d.get("pairwise", []) if p.get("p_holm") is not None and p["p_holm"] < 0.05]
    lines += ["", f"Clip-paired differences (A − B) with Holm-corrected p < 0.05: {len(sig)} of "
              f"{len(d.get('pairwise', []))} pairs × metrics"
              + ("" if not sig else " (" + "; ".join(
                  f"{p['metric']}: {p['system_a']} − {p['system_b']} = {num(p['diff'], 3)}" for p in sig) + ")") + "."]
    if d.get("steps_s"):
        avg = d.get("loadavg_1min") or {}
        lines += ["", "Wall time of that run's steps (`make run`'s main job, after the install): "
                  + ", ".join(f"{k} {num(v, 0)} s" for k, v in d["steps_s"].items())
                  + f"; **total {num(d['elapsed_s'], 0)} s** (1-minute load {num(avg.get('start'), 1)} at the start, "
                  f"{num(avg.get('end'), 1)} at the end, on this 2-core machine)."]
    return "\n" + "\n".join(lines) + "\n"


def demo_contrast(root: Path) -> str:
    if not (root / DEMO).exists():
        return f"({NO_DEMO})"
    d = load(root, DEMO)["systems"]

    def v(system: str, key: str, digits: int) -> str:
        return num((d.get(system, {}).get(key) or {}).get("value"), digits)

    return (f"MCC {v('musiclm-ref', 'mcc', 3)} vs {v('unconditional', 'mcc', 3)} with the conditioning dropped "
            f"({v('musiclm-ref-no-semantic', 'mcc', 3)} without the semantic stage); FAD_mel "
            f"{v('musiclm-ref', 'fad_mel', 1)} vs {v('unconditional', 'fad_mel', 1)}; KLD "
            f"{v('musiclm-ref', 'kld', 2)} vs {v('unconditional', 'kld', 2)}")


def interval_coverage(root: Path) -> str:
    d = load(root, COVERAGE)
    s = d["setup"]
    names = {"bca": "BCa, both sides resampled (default)", "basic": "basic 2θ̂ − q, both sides",
             "percentile": "percentile, both sides", "old_percentile_reference_fixed":
             "old `bootstrap_fad_ci`: percentile, reference fixed"}
    lines = ["", f"  Population FAD {num(d['population_fad'], 3)}; mean estimate {num(d['mean_estimate'], 3)} "
             f"(sd {num(d['sd_estimate'], 3)}); {s['replications']} replications, {s['n_boot']} resamples "
             f"({s['old_n_boot']} for the old interval).", "",
             "  | 95 % interval | coverage | Wilson 95 % of the coverage | entirely above the population value |",
             "  |---|---|---|---|"]
    for key, label in names.items():
        r = d["methods"][key]
        lo, hi = r["coverage_wilson95"]
        lines.append(f"  | {label} | {num(r['coverage'], 3)} | [{num(lo, 3)}, {num(hi, 3)}] | "
                     f"{num(r['share_entirely_above'], 3)} |")
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[Path], str]] = {
    "codec-summary": codec_summary, "codec-levels": codec_levels, "stage-figures": stage_figures,
    "classifier-map": classifier_map, "mulan-recall": mulan_recall, "demo-table": demo_table,
    "demo-contrast": demo_contrast, "interval-coverage": interval_coverage,
    **REAL_MODEL_RENDERERS, **PERF_RENDERERS, **COVERAGE_RENDERERS, **MEMO_RENDERERS, **TRAINING_RENDERERS, **HIERARCHY_RENDERERS,
    **CONTROL_RENDERERS,
    **AGREEMENT_RENDERERS,
    **ADHERENCE_RENDERERS,
    **MAD_RENDERERS,
}


# ----------------------------------------------------------------------------- documents


def _check_markers(text: str, doc: str) -> list[str]:
    problems, open_name = [], None
    for m in OPEN.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if name not in RENDERERS:
            problems.append(f"{doc}: unknown figure {name!r} (known: {', '.join(RENDERERS)})")
        if not closing:
            if open_name:
                problems.append(f"{doc}: figure {name!r} opens inside {open_name!r}")
            open_name = name
        elif open_name != name:
            problems.append(f"{doc}: closing marker of {name!r} without its opening marker")
        else:
            open_name = None
    if open_name:
        problems.append(f"{doc}: figure {open_name!r} is never closed")
    return problems


def render_doc(text: str, root: Path, doc: str) -> tuple[str, list[str]]:
    """(the text with every figure re-rendered, problems: one per figure that differed)."""
    problems = _check_markers(text, doc)
    if problems:
        raise FigureError("; ".join(problems))
    differs: list[str] = []

    def sub(m: re.Match) -> str:
        name, old = m.group(1), m.group(2)
        new = RENDERERS[name](root)
        if new != old:
            differs.append(f"{doc}: figure {name!r} differs from its artifact: has {old.strip()[:120]!r}, "
                           f"the artifact gives {new.strip()[:120]!r}")
        return f"<!-- figures:{name} -->{new}<!-- /figures:{name} -->"

    return MARKER.sub(sub, text), differs


def run(root: Path = ROOT, write: bool = True) -> list[str]:
    """Re-render every figure of every doc; returns what differed (and, with ``write``, fixes it)."""
    out: list[str] = []
    for doc in DOCS:
        path = root / doc
        if not path.exists():
            continue
        text = path.read_text()
        new, differs = render_doc(text, root, doc)
        out += differs
        if write and new != text:
            path.write_text(new)
    return out


def used_figures(root: Path = ROOT) -> set[str]:
    return {m.group(1) for doc in DOCS if (root / doc).exists() for m in MARKER.finditer((root / doc).read_text())}


def demo_artifact(store: Path) -> dict:
    """The demo table's numbers from a results store ``make run`` wrote (``results.json``), with provenance, and
    the run's step times from the ``demo.json`` beside the store (when there)."""
    doc = json.loads((Path(store) / "results.json").read_text())
    run = Path(store).parent / "demo.json"
    timing = json.loads(run.read_text()) if run.is_file() else {}
    meta = doc.get("metadata", {})
    systems = {}
    for name, entry in doc.get("systems", {}).items():
        metrics = entry.get("metrics", {})
        kld_key = next((k for k, v in metrics.items() if k.startswith("kld_") and isinstance(v, dict)
                        and v.get("number") == "kld"), None)
        row = {"fad_mel": metrics.get("fad_mel"), "kld": metrics.get(kld_key) if kld_key else None,
               "mcc": metrics.get("mcc")}
        systems[name] = {k: ({"value": v.get("value"), "ci95": v.get("ci95")} if isinstance(v, dict) else None)
                         for k, v in row.items()}
    conv = (meta.get("config") or {}).get("kld_convention")
    kld_keys = {k for e in doc.get("systems", {}).values() for k, v in e.get("metrics", {}).items()
                if k.startswith("kld_") and isinstance(v, dict) and v.get("number") == "kld"}
    shown = {"fad_mel", "mcc", *kld_keys}  # the table's columns
    pairwise = [{k: p.get(k) for k in ("metric", "system_a", "system_b", "diff", "ci95", "p_value", "p_holm")}
                for p in (meta.get("pairwise") or doc.get("pairwise") or []) if p.get("metric") in shown]
    n_eval = max((e.get("n_clips", 0) for e in doc.get("systems", {}).values()), default=0)
    return {"written_by": "benchmarks/figures.py --from-demo (from the results store of `make run`)",
            "store_created": doc.get("created"), "git_commit": meta.get("git_commit"), "kld_convention": conv,
            "n_eval_clips": n_eval, "systems": systems, "pairwise": pairwise,
            "steps_s": timing.get("steps_s"), "elapsed_s": timing.get("elapsed_s"),
            "loadavg_1min": timing.get("loadavg_1min")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.figures", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if any figure differs")
    p.add_argument("--from-demo", type=Path, metavar="STORE",
                   help="refresh docs/figures/demo.json from this store (or the demo folder holding it in results/)")
    p.add_argument("--root", type=Path, default=ROOT)
    a = p.parse_args(argv)
    if a.from_demo:
        from metrics.io import write_json

        store = a.from_demo
        if not (store / "results.json").exists() and (store / "results" / "results.json").exists():
            store = store / "results"  # `make run`'s folder: its results store is results/demo/results
        write_json(a.root / DEMO, demo_artifact(store))
    try:
        differs = run(a.root, write=not a.check)
    except FigureError as e:
        print(f"figures: {e}", file=sys.stderr)
        return 2
    for line in differs:
        print(line, file=sys.stderr if a.check else sys.stdout)
    if a.check and differs:
        print(f"{len(differs)} figure(s) differ from their artifacts: run `make figures`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

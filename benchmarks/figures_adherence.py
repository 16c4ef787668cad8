"""The per-aspect caption adherence figures, rendered from ``docs/figures/adherence.json``.

Registered into ``benchmarks.figures.RENDERERS``; the artifact is written by ``python -m benchmarks.adherence_check``
(``make run``'s systems scored by ``compare --adherence musicnn-mtt``, and the lexicon's reach on MusicCaps):

- ``adherence-demo`` (README, ``make run``): systems × aspects, AUC with its 95 % BCa interval, the reference
  audio's row (the ceiling), the shuffled-caption chance level, and the clip-paired differences that survive Holm;
- ``adherence-lexicon`` (docs/protocol.md): per aspect, its concepts and how many MusicCaps captions state each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num, with_ci

ADHERENCE = Path("docs/figures/adherence.json")
ARTIFACTS = (ADHERENCE,)


def _aspects(systems: dict) -> list[str]:
    from metrics.adherence_lexicon import ASPECTS

    keys = {k for row in systems.values() for k in row}
    return [k for a in ASPECTS for k in sorted(keys) if k.startswith(f"adherence_{a}_")]


def demo_table(root: Path) -> str:
    d = load(root, ADHERENCE)
    demo = get_field(d, ADHERENCE, "demo")
    systems = demo["systems"]
    keys = _aspects(systems)
    label = {k: k[len("adherence_"):].rsplit("_", 1)[0] for k in keys}
    n = max((m.get("n_clips") or 0 for row in systems.values() for m in row.values()), default=0)
    lines = [f"Per-aspect caption adherence of `make run`'s systems (`{demo['tagger']}` as the judge; AUC of the tag "
             f"for the concepts each caption states, 0.5 = chance; 95% BCa intervals over {n} held-out clips, "
             f"{demo['n_boot']} resamples; `docs/figures/adherence.json`, commit {str(demo.get('git_commit'))[:10]}):", "",
             "| System | " + " | ".join(f"{label[k]} ↑" for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for name, row in systems.items():
        lines.append(f"| {name} | " + " | ".join(with_ci(row.get(k), 2) for k in keys) + " |")
    chance = {k: next((row[k].get("shuffled_control") for row in systems.values() if k in row), None) for k in keys}
    lines.append("| shuffled captions (chance) | " + " | ".join(num(chance[k], 2) for k in keys) + " |")
    sig = [p for p in demo["pairwise"] if p.get("p_holm") is not None and p["p_holm"] < 0.05]
    pairs = "; ".join(f"{label.get(p['metric'], p['metric'])}: {p['system_a']} − {p['system_b']} = {num(p['diff'], 2)}"
                      for p in sig)
    cpu = demo["cpu_seconds"]
    lines += ["", f"Clip-paired differences with Holm-corrected p < 0.05: {len(sig)} of {len(demo['pairwise'])}"
                  + (f" ({pairs})." if sig else "."),
              f"Cost on the cached logits: compare took {num(cpu['with'], 1)} CPU s with `--adherence` and "
              f"{num(cpu['without'], 1)} without."]
    est = demo.get("estimators")
    if est:
        keys = sorted({k for row in est["systems"].values() for k in row})
        cells = {k: "; ".join(f"{name} {with_ci(row.get(k), 2)}" for name, row in est["systems"].items() if k in row)
                 for k in keys}
        chance = {k: next((row[k].get("shuffled_control") for row in est["systems"].values() if k in row), None)
                  for k in keys}
        lines += ["", f"Estimator aspects on the same clips (`--adherence {','.join(est['judges'])}`: the share of clips "
                      "whose estimate matches the caption's statement, the key by the MIREX weighted score):"]
        lines += [f"- `{k}`: {cells[k]}; shuffled statements (chance) {num(chance[k], 2)}" for k in keys]
    return "\n" + "\n".join(lines) + "\n"


def lexicon_table(root: Path) -> str:
    d = load(root, ADHERENCE)
    lex = get_field(d, ADHERENCE, "lexicon")
    by_aspect: dict[str, list[str]] = {}
    for name, c in lex["concepts"].items():
        tags = " / ".join(t for t in (c["mtt"] and f"MTT `{c['mtt']}`", c["msd"] and f"MSD `{c['msd']}`") if t)
        by_aspect.setdefault(c["aspect"], []).append(f"{name} ({tags}: {c['aspect_list']:,} / {c['either']:,})")
    lines = [f"Concepts of the lexicon, the tags that hear them, and how many of the {lex['n_captions']:,} MusicCaps "
             f"captions state each (in the aspect list / in the aspect list or the caption text):", ""]
    lines += [f"- {aspect}: " + "; ".join(items) for aspect, items in by_aspect.items()]
    st = lex.get("estimator_statements")
    if st:
        lines += ["", f"What the estimators can judge (captions): a BPM number {st['tempo_bpm']:,}, a tempo word and no "
                      f"number {st['tempo_class']:,}, a named key {st['named_key']:,}, a mode alone {st['mode_only']:,}."]
    return "\n" + "\n".join(lines) + "\n"


ADHERENCE_RENDERERS: dict[str, Callable[[Path], str]] = {"adherence-demo": demo_table, "adherence-lexicon": lexicon_table}

"""The hierarchy figure: the coarse stage's held-out NLL with true vs shuffled semantic tokens.

Registered into ``benchmarks.figures.RENDERERS``; rendered from ``docs/figures/hierarchy.json`` (the shipped
coarse stage) and ``docs/figures/hierarchy_before.json`` (the one it replaced), both written by
``python -m benchmarks.hierarchy`` (README and docs/protocol.md, "Does the hierarchy matter").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num, with_ci

HIERARCHY = Path("docs/figures/hierarchy.json")
BEFORE = Path("docs/figures/hierarchy_before.json")
ABLATION = Path("docs/figures/ablation.json")
ARTIFACTS = (HIERARCHY, BEFORE, ABLATION)


def hierarchy_gap(root: Path) -> str:
    d, b = load(root, HIERARCHY), load(root, BEFORE)
    nll = get_field(d, HIERARCHY, "nll")
    g, z = d["gap_shuffled_minus_true"], d["gap_null_minus_true"]
    h = d["held_out"]

    def ci(x: dict) -> str:
        return f"{num(x['mean'], 3)} [{num(x['ci95'][0], 3)}, {num(x['ci95'][1], 3)}]"

    return (f"{num(nll['true'], 3)} nats/token with the true semantic tokens vs {num(nll['shuffled'], 3)} "
            f"with another clip's (gap {ci(g)}, 95 % bootstrap over {h['n']} held-out clips of seed {h['seed']}'s "
            f"{h['split']} split; {g['clips_positive']} of {h['n']} clips positive) and {num(nll['null'], 3)} "
            f"with NULL tokens (gap {ci(z)}); coarse stage of {d['coarse_stage']['steps']:,} steps, semantic dropout "
            f"{d['coarse_stage']['semantic_dropout']:g}. The stage it replaced ({b['coarse_stage']['steps']:,} steps, "
            f"dropout {b['coarse_stage']['semantic_dropout']:g}): {num(b['nll']['true'], 3)} vs "
            f"{num(b['nll']['shuffled'], 3)}, gap {ci(b['gap_shuffled_minus_true'])}; NULL gap "
            f"{ci(b['gap_null_minus_true'])}")


def ablation_table(root: Path) -> str:
    """The demo's systems on ``n`` held-out captions (``python -m benchmarks.ablation``)."""
    d = load(root, ABLATION)
    ci = with_ci
    lines = ["", f"{d['n_captions']} held-out captions (`{d['command']}`; 95 % bootstrap intervals over clips; KLD "
             f"convention `{d['kld_convention']}`; `docs/figures/ablation.json`):", "",
             "| System | KLD ↓ | MCC ↑ | caption-word/tag AUC, musicnn-mtt ↑ | AUC − unconditional |", "|---|---|---|---|---|"]
    for name, row in d["systems"].items():
        t = row.get("tag_auc") or {}
        diff = t.get("diff_vs_baseline")
        lines.append(f"| {name} | {ci(row['kld'], 2)} | {ci(row['mcc'], 3)} | "
                     f"{ci({'value': t.get('mean_auc'), 'ci95': t.get('ci95')}, 3)} | "
                     f"{ci({'value': diff['mean'], 'ci95': diff.get('ci95')}, 3) if diff else '—'} |")
    r = d["reference_tag_auc"]
    lines.append(f"| reference clips | — | — | {ci({'value': r['mean_auc'], 'ci95': r.get('ci95')}, 3)} | — |")
    pair = [p for p in d["pairwise"] if {p["system_a"], p["system_b"]} == {"musiclm-ref", "musiclm-ref-no-semantic"}]
    if pair:
        lines += ["", "musiclm-ref vs musiclm-ref-no-semantic, clip-paired: " + "; ".join(
            f"{p['metric']} {p['system_a']} − {p['system_b']} = {num(p['diff'], 3)} (Holm p = "
            f"{num(p.get('p_holm'), 3)})" for p in pair) + "."]
    return "\n".join(lines) + "\n"


HIERARCHY_RENDERERS: dict[str, Callable[[Path], str]] = {"hierarchy-gap": hierarchy_gap, "ablation-table": ablation_table}

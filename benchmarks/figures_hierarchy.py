"""The hierarchy figures: does each part of the reference model reach the output?

Registered into ``benchmarks.figures.RENDERERS``:

- ``hierarchy-gap``: the coarse stage's held-out NLL with true vs shuffled semantic tokens, from
  ``docs/figures/hierarchy.json`` (the shipped coarse stage) and ``docs/figures/hierarchy_before.json`` (the one it
  replaced), both written by ``python -m benchmarks.hierarchy`` (README and docs/protocol.md, "Does the hierarchy
  matter");
- ``ablation-table``: the demo's systems on held-out captions (``python -m benchmarks.ablation``), either artifact
  format: per-aspect caption adherence (``adherence_<aspect>_mtt``) or the former caption-word/tag AUC;
- ``melody-conditioning``: each melody's clip with vs without it, scored against it
  (``python -m benchmarks.melody_conditioning``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num, with_ci

HIERARCHY = Path("docs/figures/hierarchy.json")
BEFORE = Path("docs/figures/hierarchy_before.json")
ABLATION = Path("docs/figures/ablation.json")
MELODY = Path("docs/figures/melody_conditioning.json")
MELODY_BEFORE = Path("docs/figures/melody_conditioning_before.json")  # the shipped chroma-off coarse stage's run
TOKENIZERS = Path("docs/figures/hierarchy_tokenizers.json")  # python -m benchmarks.hierarchy_tokenizers
ARTIFACTS = (HIERARCHY, BEFORE, ABLATION, MELODY, MELODY_BEFORE, TOKENIZERS)
PAIR = ("musiclm-ref", "musiclm-ref-no-semantic")


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
            f"{d['coarse_stage']['semantic_dropout']:g}"
            + (f"; the clip's own chroma beside its S lowers the NLL by {ci(d['chroma_gain_true_minus_true_chroma'])}"
               if "chroma_gain_true_minus_true_chroma" in d else "")
            + f". The stage it replaced ({b['coarse_stage']['steps']:,} steps, "
            f"dropout {b['coarse_stage']['semantic_dropout']:g}): {num(b['nll']['true'], 3)} vs "
            f"{num(b['nll']['shuffled'], 3)}, gap {ci(b['gap_shuffled_minus_true'])}; NULL gap "
            f"{ci(b['gap_null_minus_true'])}")


def ablation_table(root: Path) -> str:
    """The demo's systems on ``n`` held-out captions (``python -m benchmarks.ablation``): the per-aspect adherence
    table when the artifact has ``adherence_*`` columns, else the former tag-AUC table (the committed artifact)."""
    d = load(root, ABLATION)
    if any(k.startswith("adherence_") for row in d["systems"].values() for k in row):
        return _adherence_ablation(d)
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
    pair = [p for p in d["pairwise"] if {p["system_a"], p["system_b"]} == set(PAIR)]
    if pair:
        lines += ["", "musiclm-ref vs musiclm-ref-no-semantic, clip-paired: " + "; ".join(
            f"{p['metric']} {p['system_a']} − {p['system_b']} = {num(p['diff'], 3)} (Holm p = "
            f"{num(p.get('p_holm'), 3)})" for p in pair) + "."]
    return "\n".join(lines) + "\n"


def _adherence_ablation(d: dict) -> str:
    """Systems × (KLD, MCC, FAD_mel, per-aspect adherence), the shuffled-caption chance row, and the clip-paired
    musiclm-ref − musiclm-ref-no-semantic differences (adherence ones with their intervals where the artifact has
    them)."""
    from benchmarks.figures_adherence import _aspects

    systems = d["systems"]
    keys = _aspects(systems)
    label = {k: k[len("adherence_"):].rsplit("_", 1)[0] for k in keys}
    lines = ["", f"{d['n_captions']} held-out captions (`{d['command']}`; 95 % intervals over clips as `compare` "
             f"computes them; KLD convention `{d['kld_convention']}`; adherence = AUC of the musicnn-mtt tags for the "
             "concepts each caption states, 0.5 = chance; `docs/figures/ablation.json`):", "",
             "| System | KLD ↓ | MCC ↑ | FAD_mel ↓ | " + " | ".join(f"{label[k]} ↑" for k in keys) + " |",
             "|---|---|---|---|" + "---|" * len(keys)]
    for name, row in systems.items():
        lines.append(f"| {name} | {with_ci(row.get('kld'), 2)} | {with_ci(row.get('mcc'), 3)} | "
                     f"{with_ci(row.get('fad_mel'), 1)} | " + " | ".join(with_ci(row.get(k), 2) for k in keys) + " |")
    chance = {k: next((row[k].get("shuffled_control") for row in systems.values() if row.get(k)), None) for k in keys}
    lines.append("| shuffled captions (chance) | — | — | — | " + " | ".join(num(chance[k], 2) for k in keys) + " |")
    pair = [p for p in d["pairwise"] if {p["system_a"], p["system_b"]} == set(PAIR) and p.get("diff") is not None]

    def cell(p: dict) -> str:
        sign = 1 if p["system_a"] == PAIR[0] else -1  # always musiclm-ref − musiclm-ref-no-semantic
        ci = p.get("ci95")
        tail = ""
        if ci and None not in ci:
            lo, hi = sorted(sign * x for x in ci)
            tail = f" [{num(lo, 3)}, {num(hi, 3)}]"
        return f"{label.get(p['metric'], p['metric'])} {num(sign * p['diff'], 3)}{tail} (Holm p = {num(p.get('p_holm'), 3)})"

    adherence = [p for p in pair if p["metric"] in label]
    others = [p for p in pair if p["metric"] not in label]
    if pair:
        lines += ["", f"{PAIR[0]} − {PAIR[1]}, clip-paired (95 % interval): " + "; ".join(map(cell, others + adherence))
                  + "."]
    if not adherence:
        lines += ["", "The artifact holds no clip-paired adherence difference (rerun `python -m benchmarks.ablation "
                      "--summarize-only`)."]
    return "\n".join(lines) + "\n"


MELODY_TARGET_N = 50  # issue 31: the melody target is over at least 50 melodies
MELODY_LABELS = {  # metric key of the artifact -> table row
    "chroma_cosine": "chroma cosine (audiocraft; `compare --melody-prompts`)",
    "pitch_class_accuracy": "pitch-class accuracy (Music ControlNet)",
    "chroma_correlation": "mean-chroma correlation (`tests/test_melody.py`)",
    "melody_rca": "CREPE raw chroma accuracy",
}


def _stage(c: dict) -> str:
    """``coarse stage chroma off, 3,500 steps`` from an artifact's ``coarse_stage``."""
    return f"coarse stage chroma {'on' if c['chroma'] else 'off'}" + (f", {c['steps']:,} steps" if c.get("steps") else "")


def melody_conditioning(root: Path) -> str:
    """Per metric: mean with / without the melody, the paired gain with its 95 % interval, melodies with a gain."""
    d = load(root, MELODY)
    m, c = d["melodies"], d["coarse_stage"]
    dirty = "with uncommitted changes in the tree, " if d.get("git_dirty") else ""
    lines = ["", f"{m['n']} melodies no shipped piece was fitted on (spec seed {m['spec_seed']}, {m['timbre']}, "
             f"{m['seconds']:g} s), caption \"{d['caption']}\", each generated with and without its melody under the "
             f"same ids (paired random streams); {d['checkpoint']}, {_stage(c)}; `{d['command']}`, commit {str(d.get('git_commit'))[:10]}, "
             f"{dirty}{num(d['wall_seconds'], 0)} s at {d['threads']} thread{'s' if d['threads'] != 1 else ''} "
             "(`docs/figures/melody_conditioning.json`):", "",
             "| Against the melody ↑ | with | without | gain, with − without [95 % bootstrap] | gain > 0 |",
             "|---|---|---|---|---|"]
    for key, label in MELODY_LABELS.items():
        r = d["metrics"].get(key)
        if not r or not r.get("n"):
            continue
        g = r["gain"]
        lines.append(f"| {label} | {num(r['with'], 3)} | {num(r['without'], 3)} | "
                     f"{with_ci({'value': g['mean'], 'ci95': g['ci95']}, 3)} | {r['positive']} of {r['n']} |")
    if m["n"] < MELODY_TARGET_N:
        lines += ["", f"{m['n']} melodies is fewer than the {MELODY_TARGET_N} issue 31 asks for: a timing run, not the "
                      "measurement."]
    before = load(root, MELODY_BEFORE) if (root / MELODY_BEFORE).is_file() else None
    if before is not None and before != d:  # the baseline, once the artifact holds another run
        gains = "; ".join(f"{MELODY_LABELS[k].split(' (')[0]} {with_ci({'value': r['gain']['mean'], 'ci95': r['gain']['ci95']}, 3)} "
                          f"({r['positive']} of {r['n']} > 0)"
                          for k, r in before["metrics"].items() if k in MELODY_LABELS and r.get("n"))
        lines += ["", f"Before ({before['checkpoint']}, {_stage(before['coarse_stage'])}, {before['melodies']['n']} "
                      f"melodies, `{MELODY_BEFORE}`), gain with − without: {gains}."]
    crepe = d.get("crepe") or {}
    if crepe.get("skipped"):
        lines += ["", f"CREPE RCA: {crepe['skipped']}."]
    elif crepe.get("cpu_seconds_per_clip_median") is not None:
        lines += ["", f"CREPE (tiny) cost {num(crepe['cpu_seconds_per_clip_median'], 2)} CPU s per clip (median)."]
    return "\n".join(lines) + "\n"


def hierarchy_tokenizers(root: Path) -> str:
    """The two tokenizers' gaps on the same held-out clips, paired (``python -m benchmarks.hierarchy_tokenizers``)."""
    d = load(root, TOKENIZERS)
    a, b, g = d["a"], d["b"], d["gap_b_minus_a"]

    def kind(i: dict) -> str:
        return "musicnn-feature" if "musicnn" in i["tokenizer_id"] else "log-mel" if "logmel" in i["tokenizer_id"] else i["tokenizer_id"]

    return (f"with {kind(a)} tokens gap {num(a['gap_mean'], 3)}, with {kind(b)} tokens {num(b['gap_mean'], 3)} (coarse stages "
            f"of {a['coarse_steps']:,} and {b['coarse_steps']:,} steps, trained alike); paired over the same {d['n']} held-out "
            f"clips, {kind(b)} − {kind(a)} = {num(g['mean'], 3)} [{num(g['ci95'][0], 3)}, {num(g['ci95'][1], 3)}] "
            f"(95 % bootstrap; {g['clips_positive']} of {d['n']} clips positive)")


HIERARCHY_RENDERERS: dict[str, Callable[[Path], str]] = {"hierarchy-gap": hierarchy_gap, "ablation-table": ablation_table,
                                                        "melody-conditioning": melody_conditioning,
                                                        "hierarchy-tokenizers": hierarchy_tokenizers}

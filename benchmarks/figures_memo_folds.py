"""The cross-split false-alarm figure of the memorization audit, rendered from its committed artifact.

``docs/figures/memorization_real_folds.json`` is what ``python -m benchmarks.real_music_folds`` wrote: the
default audit on k rotations of the Wesnoth soundtrack (README, "Memorization"). Registered into
``benchmarks.figures.RENDERERS`` through ``benchmarks.figures_memo.MEMO_RENDERERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load

MEMO_FOLDS = Path("docs/figures/memorization_real_folds.json")
SHAPE_NAMES = {"musiccaps": "10 s training clips (MusicCaps)", "long-train": "30 s training clips"}


def _shape(key: str, s: dict) -> tuple[str, str]:
    """The table's first two cells: the training clips (and the novel excerpts' hop when they overlap), and
    where τ's nulls came from and τ's rule (``--tau-confidence``; runs before it existed used the expected-rate
    rule; runs before the searched-windows correction say so), with the split's seed."""
    base = SHAPE_NAMES.get(key.split("+")[0], key)
    hop = s.get("novel_hop_s", 10.0)
    if hop < 10.0:
        base += f", novel excerpts every {hop:g} s (overlapping)"
    seed, conf = s.get("seed", 0), s.get("tau_confidence")
    rule = f"confidence {conf:g}" if conf else "expected rate"
    rule += ", searched-windows correction" if s.get("search_correction") else ", uncorrected"
    return base, (f"null pieces (other folds), {rule}, seed {seed}" if s.get("null_pieces")
                  else f"leave-one-out, {rule}, seed {seed}")


def _share(k: int, n: int, ci: list[float]) -> str:
    return f"{k}/{n} = {k / n:.4f} ({ci[0]:.4f}–{ci[1]:.4f})" if n else "—"


def memorization_real_folds(root: Path) -> str:
    d = load(root, MEMO_FOLDS)
    shapes = get_field(d, MEMO_FOLDS, "shapes")
    alts = list(next(iter(next(iter(shapes.values()))["pooled"].values()))["detection"])
    lines = ["", "| training clips | τ's nulls | matcher | novel clips reported as copies (95 % Wilson) | upper bound ≤ "
             f"{d['fpr']:g}? | piece-clustered 95 % (pieces resampled) | pieces with one | per fold (τ) | "
             "planted copies found | " + " | ".join(f"detected: `{a}`" for a in alts) + " |",
             "|---|---|---|---|---|---|---|---|---|" + "---|" * len(alts)]
    for shape, s in shapes.items():
        for m, p in s["pooled"].items():
            per_fold = ", ".join(f"{len(f['matchers'][m]['novel_reported'])}/{f['matchers'][m]['novel_clips']} "
                                 f"(τ {f['matchers'][m]['tau']:.2g})" for f in s["folds"])
            det = [f"{t['detected']}/{t['n']} ({t['ci95'][0]:.2f}–{t['ci95'][1]:.2f})" for t in p["detection"].values()]
            ok = "yes" if p["ci95"][1] <= d["fpr"] else "**no**"
            pieces = f"{p['pieces_reported']}/{p['pieces']}" if "pieces" in p else "—"
            clustered = f"{p['ci95_pieces'][0]:.4f}–{p['ci95_pieces'][1]:.4f}" if "ci95_pieces" in p else "—"
            lines.append(f"| {' | '.join(_shape(shape, s))} | `{m}` | {_share(p['novel_reported'], p['novel_clips'], p['ci95'])} "
                         f"| {ok} | {clustered} | {pieces} | {per_fold} | {p['planted_found']}/{p['planted']} | "
                         + " | ".join(det) + " |")
    return "\n".join(lines) + "\n"


def memorization_real_folds_summary(root: Path) -> str:
    d = load(root, MEMO_FOLDS)
    shapes = get_field(d, MEMO_FOLDS, "shapes")
    secs = sum(f["seconds"] for s in shapes.values() for f in s["folds"])
    return (f"{d['pieces']} pieces of at least {d['min_piece_s']:g} s in {d['k']} folds, "
            f"{d['detect_per_alteration_per_fold']} planted copies per alteration per fold in the detection table; "
            f"{secs / 60:.0f} min of audits in all")


def memorization_real_folds_reliability(root: Path) -> str:
    """README "Reliability": the default audit's pooled false-alarm share per shape, excerpt hop and rotation,
    with its Wilson and piece-clustered upper bounds against the nominal rate (default matcher and τ rule only)."""
    d = load(root, MEMO_FOLDS)
    rows = []
    for key, s in get_field(d, MEMO_FOLDS, "shapes").items():
        if not (s.get("tau_confidence") and s.get("search_correction")) or s.get("null_pieces"):
            continue
        p = s["pooled"].get("embedding-mel")
        if p is None:
            continue
        hop = s.get("novel_hop_s", 10.0)
        where = (f"{SHAPE_NAMES.get(key.split('+')[0], key).split(' (')[0]}, excerpts every {hop:g} s, "
                 f"seed {s.get('seed', 0)}")
        clustered = f", piece-clustered ≤ {100 * p['ci95_pieces'][1]:.2f} %" if "ci95_pieces" in p else ""
        rows.append(f"{where}: {p['novel_reported']}/{p['novel_clips']}, Wilson ≤ {100 * p['ci95'][1]:.2f} %{clustered}")
    return (f"nominal {100 * d['fpr']:g} % per clip, default matcher `embedding-mel`: " + "; ".join(rows)) if rows else "none"


def memorization_real_folds_alarms(root: Path) -> str:
    """Which novel pieces were reported, and as copies of which training piece (the nearest match)."""
    d = load(root, MEMO_FOLDS)
    parts = []
    for shape, s in get_field(d, MEMO_FOLDS, "shapes").items():
        for m in s["pooled"]:
            pairs: dict[tuple[str, str], int] = {}
            for f in s["folds"]:
                for gid, (tid, _) in f["matchers"][m].get("reported_as", {}).items():
                    key = (gid.removeprefix("novel_").rsplit("_", 1)[0], tid)
                    pairs[key] = pairs.get(key, 0) + 1
            if pairs:
                what = ", ".join(f"{n} × `{g}` as `{t}`" for (g, t), n in sorted(pairs.items(), key=lambda x: -x[1]))
                parts.append(f"{' / '.join(_shape(shape, s))}, `{m}`: {what}")
    return "; ".join(parts) if parts else "none"


def memorization_real_folds_shared(root: Path) -> str:
    """The shared-material check of each reported clip (benchmarks/real_music_shared.py), per table row."""
    d = load(root, MEMO_FOLDS)
    chk = get_field(d, MEMO_FOLDS, "shared_material")
    parts = []
    for shape, per in chk["clips"].items():
        for m, clips in per.items():
            what = ", ".join(f"`{c.removeprefix('novel_')}` vs `{x['train_id']}` {x['chroma']:.2f} "
                             f"(percentile {100 * x['baseline_percentile']:.0f} of {x['n_baseline']})" for c, x in clips.items())
            parts.append(f"{' / '.join(_shape(shape, d['shapes'][shape]))}, `{m}`: {what}")
    return "; ".join(parts) if parts else "none"


FOLDS_RENDERERS: dict[str, Callable[[Path], str]] = {
    "memorization-real-folds": memorization_real_folds, "memorization-real-folds-summary": memorization_real_folds_summary,
    "memorization-real-folds-alarms": memorization_real_folds_alarms,
    "memorization-real-folds-reliability": memorization_real_folds_reliability,
    "memorization-real-folds-shared": memorization_real_folds_shared,
}

"""Per-aspect caption adherence, measured: the demo's systems and the lexicon's reach on MusicCaps.

    python -m benchmarks.adherence_check [--demo results/demo] [--musiccaps ../shared/data/musiccaps-public.csv]
                                         [--seed 0] [--out docs/figures/adherence.json]

Two parts, one artifact (rendered by ``benchmarks/figures_adherence.py``):

- ``demo``: ``compare --adherence musicnn-mtt`` on the folders ``make run`` left in ``--demo`` (its held-out
  reference clips and every system's clips; the tagger's logits come from that run's cache), each system's
  per-aspect AUC with its 95 % BCa interval, the reference audio's row (the ceiling), the shuffled-caption chance
  level and the clip-paired tests; also the CPU seconds compare takes with and without ``--adherence`` on those
  cached logits (what the demo's adherence costs).
- ``demo.estimators``: the same systems judged by the estimators (``--adherence key-madmom,key-ks,madmom-tempo``:
  key and tempo statements against madmom's key classifier, the KS baseline and madmom's tempo,
  ``metrics.adherence_estimators``).
- ``lexicon``: for every concept of ``metrics.adherence_lexicon``, how many of the MusicCaps captions state it in
  their ``aspect_list``, in their caption text, and in either (what the metric reads); and how many state a BPM
  number, a tempo word, a named key or a mode alone (what the estimators can judge).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ARTIFACT = Path("docs/figures/adherence.json")
TAGGER = "musicnn-mtt"
ESTIMATORS = ("key-madmom", "key-ks", "madmom-tempo")


def demo_part(demo: Path, seed: int = 0) -> dict:
    """The demo's systems scored by ``compare --adherence`` on ``make run``'s folders and cache."""
    from benchmarks.harness import compare
    from metrics.cache import EmbeddingCache

    eval_dir = demo / "held_out"
    systems = {p.name: p for p in sorted((demo / "systems").iterdir()) if p.is_dir()}
    cache = EmbeddingCache(demo / "cache")
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, adherence in (("warm-up", ()), ("without", ()), ("with", (TAGGER,))):  # warm-up: imports, models
            t = time.process_time()
            data = compare(systems, eval_dir, eval_dir / "captions.csv", Path(tmp) / label, embedders=[],
                           classifier=f"leaf-corpus,{TAGGER}", joint=None, adherence=adherence, cache=cache, seed=seed)
            cpu[label] = round(time.process_time() - t, 2)
        t = time.process_time()
        by_estimator = compare(systems, eval_dir, eval_dir / "captions.csv", Path(tmp) / "estimators", embedders=[],
                               classifier=None, joint=None, adherence=ESTIMATORS, cache=cache, seed=seed)
        cpu["estimators"] = round(time.process_time() - t, 2)
    rows, pairs = _rows(data)
    estimator_rows, estimator_pairs = _rows(by_estimator)
    held = json.loads((eval_dir / "corpus.json").read_text()) if (eval_dir / "corpus.json").is_file() else {}
    return {"source": str(demo), "git_commit": data["metadata"].get("git_commit"), "tagger": TAGGER, "n_boot": 1000, "seed": seed, "systems": rows, "pairwise": pairs,
            "held_out_sha256": held.get("data_sha256"), "cpu_seconds": {k: cpu[k] for k in ("without", "with")},
            "estimators": {"judges": list(ESTIMATORS), "systems": estimator_rows, "pairwise": estimator_pairs,
                           "cpu_seconds": cpu["estimators"]},
            "cache": {"hits": cache.hits, "misses": cache.misses}}


def _rows(data: dict) -> tuple[dict, list[dict]]:
    """(per system: each adherence entry's value, interval, chance, per-concept AUCs, clips), the paired tests."""
    rows = {name: {k: {f: m.get(f) for f in ("value", "ci95", "shuffled_control", "concepts", "n_clips", "n_pairs")}
                   for k, m in s["metrics"].items() if k.startswith("adherence_")}
            for name, s in data["systems"].items()}
    pairs = [{k: r.get(k) for k in ("metric", "system_a", "system_b", "diff", "ci95", "p_holm")}
             for r in data["metadata"].get("pairwise") or data.get("pairwise") or []
             if str(r.get("metric", "")).startswith("adherence_")]
    return rows, pairs


def lexicon_part(musiccaps: Path) -> dict:
    """Per concept: MusicCaps captions stating it in the aspect list, in the caption, in either."""
    from metrics.adherence_estimators import stated_key, stated_tempo
    from metrics.adherence_lexicon import CONCEPTS, caption_vector
    from metrics.musiccaps import load_captions

    df = load_captions(musiccaps)
    counts = {c.name: {"aspect": c.aspect, "mtt": c.mtt, "msd": c.msd, "aspect_list": 0, "caption": 0, "either": 0}
              for c in CONCEPTS}
    statements = {"tempo_bpm": 0, "tempo_class": 0, "named_key": 0, "mode_only": 0}
    for aspects, caption in zip(df["aspect_list"], df["caption"]):
        for source, texts in (("aspect_list", aspects), ("caption", [caption]), ("either", [*aspects, caption])):
            for c, v in zip(CONCEPTS, caption_vector(texts, CONCEPTS)):
                counts[c.name][source] += int(v)
        (bpm, tempo), (tonic, mode) = stated_tempo([*aspects, caption]), stated_key([*aspects, caption])
        statements["tempo_bpm"] += bpm > 0
        statements["tempo_class"] += bpm <= 0 and tempo >= 0
        statements["named_key"] += tonic >= 0
        statements["mode_only"] += tonic < 0 and mode >= 0
    return {"source": musiccaps.name, "n_captions": len(df), "concepts": counts, "estimator_statements": statements}


def main(argv: list[str] | None = None) -> dict:
    from metrics.io import write_json

    ap = argparse.ArgumentParser(prog="python -m benchmarks.adherence_check", description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=Path("results/demo"), help="the folder make run wrote")
    ap.add_argument("--musiccaps", type=Path, default=Path("../shared/data/musiccaps-public.csv"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ARTIFACT)
    a = ap.parse_args(argv)
    doc = {"command": f"python -m benchmarks.adherence_check --demo {a.demo} --musiccaps {a.musiccaps} --seed {a.seed}",
           "demo": demo_part(a.demo, a.seed), "lexicon": lexicon_part(a.musiccaps)}
    write_json(a.out, doc)
    print(f"wrote {a.out}")
    return doc


if __name__ == "__main__":
    main()

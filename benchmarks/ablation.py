"""The demo's systems on more held-out captions than ``make run`` affords: is the semantic stage worth having?

    python -m benchmarks.ablation [--n 100] [--seed 0] [--work DIR] [--out docs/figures/ablation.json]

The first ``n`` held-out clips (``musiclm_ref.data.splits.HELD_OUT``, unseen by every shipped piece) are
the references and their captions the prompts; the demo's own functions generate every built-in system
(``benchmarks.demo.generate_systems``: retrieval from seed 0's train split), score them with ``compare``
(KLD with the LEAF classifier and musicnn-mtt, MCC with MuLan, FAD_mel) and with the independent judge
(per-aspect caption adherence, ``metrics.adherence``, musicnn-mtt; the committed artifact predates it and
holds the demo's former caption-word/tag AUC, ``tag_auc``). The artifact keeps, per system,
each metric's value and 95 % interval and the clip-paired tests — what README's ablation figure shows.
``make run`` is ``--n 20`` of this (its eval set is the first 20 of the same clips).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ARTIFACT = Path("docs/figures/ablation.json")


def run(n: int = 100, seed: int = 0, work: str | Path = "results/ablation", seconds: float = 10.0) -> dict:
    """Generate, score and summarize into ``work`` (audio, results store)."""
    from benchmarks.demo import ADHERENCE, generate_systems, prepare_data
    from benchmarks.harness import compare

    work = Path(work)
    t0 = time.time()
    _, _, train, ref = prepare_data(work, max(10, n), n, seconds, seed)
    dirs = generate_systems(ref, train, work / "systems", seconds, seed, "cpu", print)
    t_gen = time.time() - t0
    compare(dict(dirs), ref, ref / "captions.csv", work / "results", embedders=("mel",),
            classifier="leaf-corpus,musicnn-mtt", kad=False, device="cpu", seed=seed, progress=False,
            skip_unavailable_embedders=True, adherence=ADHERENCE)
    return {**summarize(work, seed), "generation_seconds": round(t_gen, 1), "wall_seconds": round(time.time() - t0, 1)}


def summarize(work: str | Path, seed: int = 0) -> dict:
    """The artifact from a finished ``work`` directory: the demo table's columns and clip-paired tests
    (``figures.demo_artifact``) plus the adherence columns (``adherence_<aspect>_mtt``: value, interval, shuffled-caption
    chance, clips) and their clip-paired tests (``pairwise`` rows of metric ``adherence_…``, Holm within each aspect);
    the former tag-AUC column from a ``tag_auc.json`` where an older run left one)."""
    from benchmarks.adherence_check import _rows as adherence_rows
    from benchmarks.figures import demo_artifact

    work = Path(work)
    held = json.loads((work / "held_out" / "corpus.json").read_text())
    old = work / "tag_auc.json"
    tags = json.loads(old.read_text())["systems"] if old.is_file() else {}
    table = demo_artifact(work / "results")  # the demo table's columns and clip-paired tests, as make run reports them
    # the adherence entries and their clip-paired tests (demo_artifact keeps the table's FAD/KLD/MCC pairs only)
    adherence, adherence_pairs = adherence_rows(json.loads((work / "results" / "results.json").read_text()))
    for name, row in table["systems"].items():
        if name in tags:  # not for the "ground truth" MCC row
            row["tag_auc"] = {k: tags[name].get(k) for k in ("mean_auc", "ci95", "diff_vs_baseline")}
        row.update({k: {f: m.get(f) for f in ("value", "ci95", "shuffled_control", "n_clips")}
                    for k, m in adherence.get(name, {}).items()})
    n = held["ids"]["n"]
    return {"command": f"python -m benchmarks.ablation --n {n} --seed {seed}", "n_captions": n,
            "seconds": held["seconds"], "held_out": {"ids": held["ids"], "data_sha256": held["data_sha256"]},
            **({"reference_tag_auc": {k: tags["reference"].get(k) for k in ("mean_auc", "ci95")}} if tags else {}),
            **{k: table[k] for k in ("git_commit", "kld_convention", "systems")},
            "pairwise": table["pairwise"] + adherence_pairs}


def main(argv: list[str] | None = None) -> dict:
    from metrics.io import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="held-out captions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="results/ablation", help="where the audio and the results store go")
    ap.add_argument("--out", default=str(ARTIFACT), help="the summary JSON")
    ap.add_argument("--summarize-only", action="store_true", help="only rebuild the summary from a finished --work")
    a = ap.parse_args(argv)
    doc = summarize(a.work, a.seed) if a.summarize_only else run(a.n, a.seed, a.work)
    write_json(a.out, doc)
    print(json.dumps(doc["systems"], indent=1))
    return doc


if __name__ == "__main__":
    main()

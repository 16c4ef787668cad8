"""Which semantic tokenizer makes the coarse stage use its tokens more? Two checkpoint sets, one held-out corpus, paired.

    python -m benchmarks.hierarchy_tokenizers --a DIR_A --b DIR_B [--n 100] [--bootstrap 1000] [--seed 0]
                                              [--out docs/figures/hierarchy_tokenizers.json]

Each set tokenizes the same first ``n`` held-out clips (``benchmarks.hierarchy.held_out_corpus``) with its own
codec, tokenizer, MuLan and RVQ and scores its coarse stage as ``benchmarks.hierarchy`` does (chroma NULL). Per
clip the shuffled − true gap of each set; reported: both means and the clip-paired difference b − a with a 95 %
percentile bootstrap over clips. Issue 31 chose the shipped tokenizer with it (log-mel vs musicnn features, the
coarse stage trained alike on each); the artifact records both sets' tokenizer ids and coarse-stage sha256.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ARTIFACT = Path("docs/figures/hierarchy_tokenizers.json")


def clip_gaps(checkpoint: Path, folder: Path, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Per-clip shuffled − true gap of ``checkpoint``'s coarse stage on the clips of ``folder``, and what was scored."""
    from benchmarks.hierarchy import score_checkpoint
    from metrics.io import file_sha256

    lm, _, per = score_checkpoint(checkpoint, folder, seed)
    gaps = (per["shuffled"] - per["true"]).mean(1)
    info = {"checkpoint": str(checkpoint), "tokenizer_id": lm.tokenizer.id, "coarse_stage_sha256": file_sha256(checkpoint / "coarse_stage.pt"),
            "coarse_steps": lm.coarse.metadata.get("step"), "gap_mean": round(float(gaps.mean()), 4),
            "nll_true": round(float(per["true"].mean()), 4)}
    return gaps, info


def compare(a: Path, b: Path, n: int = 100, bootstrap: int = 1000, seed: int = 0, threads: int = 1) -> dict:
    from benchmarks.hierarchy import held_out_corpus
    from metrics.intervals import bootstrap_ci

    torch.set_num_threads(threads)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = held_out_corpus(Path(tmp) / "held_out", n)
        (ga, ia), (gb, ib) = clip_gaps(a, folder, seed), clip_gaps(b, folder, seed)
    diff = gb - ga
    lo, hi = bootstrap_ci(diff, n_boot=bootstrap, seed=seed)
    return {"what": "coarse-stage hierarchy gap (shuffled − true semantic tokens, nats/token, chroma NULL) of two checkpoint "
                    "sets on the same held-out clips; b − a paired by clip, 95 % percentile bootstrap",
            "a": ia, "b": ib, "n": int(len(diff)),
            "gap_b_minus_a": {"mean": round(float(diff.mean()), 4), "ci95": [round(lo, 4), round(hi, 4)],
                              "clips_positive": int((diff > 0).sum())},
            "bootstrap": bootstrap, "seed": seed, "wall_seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> dict:
    from metrics.io import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, type=Path, help="checkpoint set A (the baseline)")
    ap.add_argument("--b", required=True, type=Path, help="checkpoint set B")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ARTIFACT))
    a = ap.parse_args(argv)
    doc = compare(a.a, a.b, a.n, a.bootstrap, a.seed)
    doc["command"] = f"python -m benchmarks.hierarchy_tokenizers --a {a.a} --b {a.b} --n {a.n}"
    if a.out != "-":
        write_json(a.out, doc)
    print(json.dumps(doc, indent=1))
    return doc


if __name__ == "__main__":
    main()

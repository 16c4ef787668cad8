"""Are the real-music folds' false alarms shared material? A listen-free check, written into the artifact.

A novel excerpt reported as a copy of a training clip is a false alarm only if the two recordings do not
share that passage (a soundtrack can quote one theme in several pieces; then the report is right and the
pair must leave the benchmark). Harmony is what a quoted passage keeps whatever the orchestration, so per
reported clip: the best chroma agreement of a 5 s window of the excerpt with any 5 s window of the training
clip it was reported against (cosine of CQT chroma frames along the diagonal, averaged; every lag), beside
the same number for the fold's *unreported* novel excerpts against that training clip. A shared passage
sits at the top of that baseline (an exact copy scores 1); an ordinary false alarm inside it.

    python -m benchmarks.real_music_shared     # adds "shared_material" to docs/figures/memorization_real_folds.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.real_music import cut_excerpt, excerpt_starts, real_pieces
from benchmarks.real_music_folds import ARTIFACT, CLIP_S, EDGE_S, TRAIN_S, TRAIN_START_S, excerpt_id, novel_piece

SR, HOP, WINDOW_S = 22050, 512, 5.0


def chroma(wave: np.ndarray) -> np.ndarray:
    """Unit-norm CQT chroma frames ``[12, frames]``."""
    import librosa

    c = librosa.feature.chroma_cqt(y=wave, sr=SR, hop_length=HOP)
    return c / (np.linalg.norm(c, axis=0, keepdims=True) + 1e-9)


def best_diagonal(a: np.ndarray, b: np.ndarray, window_s: float = WINDOW_S) -> float:
    """The highest mean frame cosine over ``window_s`` of aligned frames, over every lag and position."""
    s, w = a.T @ b, int(round(window_s * SR / HOP))
    best = -1.0
    for d in range(-(s.shape[0] - w), s.shape[1] - w + 1):
        diag = np.diagonal(s, offset=d)
        if len(diag) >= w:
            best = max(best, float(np.convolve(diag, np.ones(w) / w, mode="valid").max()))
    return best


def check(artifact: dict, baseline_per_clip: int = 24, seed: int = 0) -> dict:
    """Per shape and matcher, each reported novel clip: its training clip, chroma agreement, and where it
    falls among ``baseline_per_clip`` unreported novel excerpts of the same fold against the same clip. Shapes
    and matchers already in ``artifact["shared_material"]`` are kept as they are (one added later is checked alone)."""
    files = {Path(f).stem: f for f in real_pieces()}
    rng = np.random.default_rng(seed)
    memo: dict[tuple, np.ndarray] = {}

    def novel(cid: str) -> np.ndarray:
        if cid not in memo:
            memo[cid] = chroma(cut_excerpt(files[novel_piece(cid)], float(cid.rsplit("_", 1)[1]), CLIP_S, SR)[0])
        return memo[cid]

    def train(tid: str, clip_s: float) -> np.ndarray:
        piece, off = (tid, 0.0) if clip_s >= TRAIN_S else (tid.rsplit("_", 1)[0], float(tid.rsplit("_", 1)[1]))
        if (tid, clip_s) not in memo:
            memo[(tid, clip_s)] = chroma(cut_excerpt(files[piece], TRAIN_START_S + off, clip_s, SR)[0])
        return memo[(tid, clip_s)]

    out = json.loads(json.dumps(artifact.get("shared_material", {}).get("clips", {})))  # checked before: kept
    done = {(shape, name) for shape, per in out.items() for name in per}
    for shape, s in artifact["shapes"].items():
        for fold in s["folds"]:
            for name, m in fold["matchers"].items():
                if (shape, name) in done:
                    continue
                reported = m.get("reported_as", {})
                pool = [c for c in all_novel_ids(fold) if c not in reported] if reported else []
                for cid, (tid, cost) in reported.items():
                    base = [best_diagonal(novel(c), train(tid, s["train_clip_s"]))
                            for c in rng.choice(pool, min(baseline_per_clip, len(pool)), replace=False)]
                    x = best_diagonal(novel(cid), train(tid, s["train_clip_s"]))
                    out.setdefault(shape, {}).setdefault(name, {})[cid] = {
                        "fold": fold["fold"], "train_id": tid, "cost": cost, "chroma": round(x, 4),
                        "baseline_percentile": round(float(np.mean(np.array(base) < x)), 3),
                        "baseline_median": round(float(np.median(base)), 4), "baseline_max": round(float(max(base)), 4),
                        "n_baseline": len(base)}
    return {"method": __doc__.split("\n\n")[1].replace("\n", " "), "window_s": WINDOW_S, "seed": seed,
            "clips": out}


def all_novel_ids(fold: dict) -> list[str]:
    """Every novel excerpt id of a fold (the same cut as :func:`benchmarks.real_music_folds.excerpts`)."""
    import soundfile as sf

    files = {Path(f).stem: f for f in real_pieces()}
    return [excerpt_id("novel", files[p], s0) for p in fold["novel_pieces"]
            for s0 in excerpt_starts(sf.info(files[p]).duration, CLIP_S, None, EDGE_S)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", default=str(ARTIFACT))
    a = p.parse_args(argv)
    art = json.loads(Path(a.artifact).read_text())
    art["shared_material"] = check(art)
    Path(a.artifact).write_text(json.dumps(art, indent=1) + "\n")


if __name__ == "__main__":
    main()

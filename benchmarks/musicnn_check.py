"""What the real taggers (musicnn-mtt / musicnn-msd) hear in the procedural corpus: per-word AUCs.

    python -m benchmarks.musicnn_check [--n 200] [--seconds 10] [--seed 0] [--out docs/bench/musicnn_corpus.json]

For each corpus attribute that a musicnn tag names (instrument, style, drums, tempo class), the AUC
of the tag's mean probability for separating the clips that have it from those that do not (1 =
perfect, 0.5 = chance). Ground truth comes from the corpus' ``labels.csv`` (the spec the clip was
rendered from), not from caption words: "There are no drums." contains "drums". Also recorded:
the rank of the ``piano`` tag among the 50 on piano clips, and how many clips musicnn's own
float16 extractor would have sent to ``inf`` (the quirk this port avoids, docs/protocol.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from metrics.adherence import mann_whitney_auc as auc

# corpus attribute -> (musicnn-mtt tag, musicnn-msd tag); None where the model has no such tag
WORDS: dict[str, tuple[str | None, str | None]] = {
    "piano": ("piano", None),
    "guitar": ("guitar", "guitar"),
    "flute": ("flute", None),
    "synth lead": ("synth", "electronic"),
    "drums": ("drums", None),
    "rock": ("rock", "rock"),
    "techno": ("techno", "electronic"),
    "ambient": ("ambient", "ambient"),
    "jazz": (None, "jazz"),
    "fast tempo": ("fast", None),
    "slow tempo": ("slow", None),
}


def attributes(row) -> set[str]:
    """The corpus attributes of one labels.csv row, in the vocabulary of ``WORDS``."""
    out = set(row.instruments.split(";")) | {row.style, row.tempo_class}
    if row.drums != "none":
        out.add("drums")
    return out


def run(n: int = 200, seconds: float = 10.0, seed: int = 0) -> dict:
    import pandas as pd

    from metrics.audio import load_dir
    from metrics.embedders.musicnn import SR, load_tagger, mel_power
    from musiclm_ref.data.synth import generate_corpus

    with tempfile.TemporaryDirectory() as tmp:
        info = generate_corpus(tmp, n=n, seconds=seconds, seed=seed)
        labels = pd.read_csv(Path(tmp) / "labels.csv", dtype=str, keep_default_na=False).set_index("ytid")
        clips = load_dir(tmp, sr=SR).clips
    ids = [c.id for c in clips]
    attrs = {i: attributes(labels.loc[i]) for i in ids}
    with np.errstate(over="ignore"):
        quirk = sum(bool(np.isinf(10000 * mel_power(c.wave).astype(np.float16)).any()) for c in clips)
    doc: dict = {"command": f"python -m benchmarks.musicnn_check --n {n} --seconds {seconds:g} --seed {seed}",
                 "corpus": {"n": n, "seconds": seconds, "seed": seed, "sha256": info.data_sha256},
                 "clips_hit_by_float16_overflow": quirk, "models": {}}
    for m, name in enumerate(("musicnn-mtt", "musicnn-msd")):
        tagger = load_tagger(name)
        probs = {c.id: tagger.tag(c.wave, SR) for c in clips}
        words = {}
        for word, tags in WORDS.items():
            tag = tags[m]
            if tag is None:
                continue
            positive = np.array([word in attrs[i] for i in ids])
            value = auc(np.array([probs[i][tag] for i in ids]), positive)
            words[word] = {"tag": tag, "auc": value, "positives": int(positive.sum())}
        rated = [w["auc"] for w in words.values() if w["auc"] is not None]
        entry = {"checkpoint_sha256": tagger.weights_sha256, "words": words, "mean_auc": float(np.mean(rated))}
        if "piano" in tagger.labels:
            ranks = [1 + sorted(probs[i], key=probs[i].get, reverse=True).index("piano") for i in ids if "piano" in attrs[i]]
            entry["piano_tag_rank_on_piano_clips"] = {"median": float(np.median(ranks)), "top5_share": float(np.mean(np.array(ranks) <= 5)),
                                                      "clips": len(ranks)}
        top = {}
        for i in ids:
            best = max(probs[i], key=probs[i].get)
            top[best] = top.get(best, 0) + 1
        entry["most_probable_tag_counts"] = dict(sorted(top.items(), key=lambda kv: -kv[1]))
        doc["models"][name] = entry
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.musicnn_check", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/bench/musicnn_corpus.json")
    args = parser.parse_args(argv)
    doc = run(args.n, args.seconds, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    for name, entry in doc["models"].items():
        words = ", ".join(f"{w} {v['auc']:.2f}" for w, v in entry["words"].items() if v["auc"] is not None)
        print(f"{name}: mean AUC {entry['mean_auc']:.2f} ({words})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Does the semantic stage matter? The coarse stage's held-out NLL with true vs shuffled semantic tokens.

    python -m benchmarks.hierarchy [--checkpoint DIR] [--n 100] [--bootstrap 1000] [--seed 0]
                                   [--out docs/figures/hierarchy.json]

MusicLM's central claim is that the semantic tokens carry the structure the acoustic stage follows.
Measured here on clips no shipped piece was fitted on (``musiclm_ref.data.splits.HELD_OUT``: the eval
split of a corpus seed that no manifest lists; tests/test_splits.py checks): every clip is tokenized with the checkpoint
set's own codec, semantic tokenizer, MuLan and RVQ, cut into non-overlapping crops of the coarse
stage's length, and scored under three semantic contexts, MuLan tokens always the clip's own:

- ``true``: the clip's own semantic tokens;
- ``shuffled``: the tokens of the same crop of another clip (a seeded derangement of the clips);
- ``null``: NULL tokens, i.e. the ``skip_semantic`` ablation (what ``musiclm-ref-no-semantic`` samples).

A coarse stage with chroma conditioning is scored with its chroma NULL (no melody) in all three, and once
more with the clip's own chroma beside its own S (``true_chroma``): the NLL the melody route saves.

Per clip the mean NLL (nats per coarse acoustic token, the training loss) under each; the gap
``shuffled − true`` (and ``null − true``) gets a percentile bootstrap interval over clips.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ARTIFACT = Path("docs/figures/hierarchy.json")


def held_out_corpus(out: Path, n: int, seconds: float = 10.0) -> Path:
    """The first ``n`` held-out clips (ids ``syn-s1-10s-…``)."""
    from musiclm_ref.data.splits import HELD_OUT
    from musiclm_ref.data.synth import generate_corpus

    generate_corpus(out, n=n, seconds=seconds, seed=HELD_OUT["seed"], split=HELD_OUT["split"])
    return out


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point (clip i never keeps its own tokens)."""
    rng = np.random.default_rng(seed)
    if n < 2:
        raise ValueError("shuffling semantic tokens needs at least 2 clips")
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


@torch.no_grad()
def token_nll(stage, cond: torch.Tensor, targets: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """[B, n] per-token cross-entropy of the targets (the quantity ``Stage.loss`` averages)."""
    prompt = stage.prompt(cond, context)
    full = stage.prompt(cond, context, prefix=targets)
    logits = stage.net(full[:, :-1])[:, prompt.shape[1] - 1 :]
    return F.cross_entropy(logits.transpose(1, 2), full[:, prompt.shape[1] :], reduction="none")


def coarse_nll(stage, corpus, seed: int = 0, batch: int = 16) -> dict[str, np.ndarray]:
    """Per clip and level, mean NLL of the coarse tokens of every non-overlapping crop: ``{condition: [N, levels]}``."""
    t = corpus.spec
    frames = int(round(stage.config.crop_seconds * t.acoustic_rate))
    n, ta = corpus.acoustic.shape[:2]
    starts = list(range(0, ta - frames + 1, frames))
    if not starts:
        raise ValueError(f"clips of {ta} acoustic frames are shorter than the coarse crop ({frames} frames)")
    perm = torch.as_tensor(derangement(n, seed))
    cond_all = stage.conditioning(n, corpus.mulan, None)
    names = ("true", "shuffled", "null") + (("true_chroma",) if stage.config.chroma and corpus.chroma is not None else ())
    out = {k: np.zeros((n, t.coarse_levels)) for k in names}
    stage.eval()
    for s in starts:
        codes = corpus.acoustic[:, s : s + frames, : t.coarse_levels]
        sem = corpus.semantic[:, s // 2 : s // 2 + frames // 2]
        contexts = {"true": stage.semantic_context(sem), "shuffled": stage.semantic_context(sem[perm]),
                    "null": stage.semantic_context(None, frames // 2, n)}
        contexts = {k: stage.with_chroma(v, None) for k, v in contexts.items()}  # no melody: chroma NULL
        if stage.config.chroma and corpus.chroma is not None:  # the clip's own chroma beside its own S: how much the melody route tells
            contexts["true_chroma"] = stage.with_chroma(stage.semantic_context(sem), corpus.chroma[:, s // 2 : s // 2 + frames // 2])
        for name, ctx in contexts.items():
            for b in range(0, n, batch):
                nll = token_nll(stage, cond_all[b : b + batch], codes[b : b + batch], ctx[b : b + batch])
                out[name][b : b + batch] += nll.reshape(nll.shape[0], frames, t.coarse_levels).mean(1).numpy()
    return {k: v / len(starts) for k, v in out.items()}


def score_checkpoint(checkpoint: str | Path | None, folder: Path, seed: int = 0):
    """(model, token corpus, ``coarse_nll``) of a checkpoint set on the clips of ``folder``, tokenized with the set's
    own codec, semantic tokenizer, MuLan and RVQ (what ``measure`` and ``benchmarks.hierarchy_tokenizers`` score)."""
    from musiclm_ref.pipeline import SHIPPED_DIR, MusicLM
    from musiclm_ref.token_corpus import prepare_tokens

    lm = MusicLM.from_pretrained(checkpoint)
    if lm.tokenizer is None:
        from musiclm_ref.semantic import load_tokenizer

        lm.tokenizer = load_tokenizer(Path(checkpoint or SHIPPED_DIR) / "semantic_tokenizer.pt")
    corpus = prepare_tokens(folder, lm.codec, lm.tokenizer, lm.mulan, lm.mulan_rvq, None, progress=False)
    return lm, corpus, coarse_nll(lm.coarse, corpus, seed)


def measure(checkpoint: str | Path | None = None, n: int = 100, data: str | Path | None = None, bootstrap: int = 1000,
            seed: int = 0, threads: int | None = 1) -> dict:
    """Tokenize the held-out clips with the checkpoint set's own models and score the coarse stage."""
    from metrics.intervals import bootstrap_ci
    from musiclm_ref.data.splits import HELD_OUT
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(data) if data is not None else held_out_corpus(Path(tmp) / "held_out", n)
        lm, corpus, per = score_checkpoint(checkpoint, folder, seed)
    clip = {k: v.mean(1) for k, v in per.items()}

    def summary(d: np.ndarray) -> dict:
        lo, hi = bootstrap_ci(d, n_boot=bootstrap, seed=seed)
        return {"mean": round(float(d.mean()), 4), "ci95": [round(lo, 4), round(hi, 4)],
                "clips_positive": int((d > 0).sum())}

    return {
        "what": "coarse-stage NLL (nats per coarse acoustic token) on held-out clips, semantic context true / "
                "shuffled across clips / NULL (skip_semantic); gap = other − true, percentile bootstrap over clips",
        "checkpoint": str(checkpoint or "shipped tiny set"),
        "coarse_stage": {"crop_seconds": lm.coarse.config.crop_seconds, "semantic_dropout": lm.coarse.config.semantic_dropout,
                         "clock": bool(lm.coarse.net.config.clock), "chroma": lm.coarse.config.chroma, "steps": lm.coarse.metadata.get("step")},
        "held_out": {**HELD_OUT, "n": len(corpus.ids), "data": str(data) if data else "generated",
                     "first_ids": corpus.ids[:3]},
        "nll": {k: round(float(v.mean()), 4) for k, v in clip.items()},
        "nll_by_level": {k: [round(float(x), 4) for x in v.mean(0)] for k, v in per.items()},
        "gap_shuffled_minus_true": summary(clip["shuffled"] - clip["true"]),
        "gap_null_minus_true": summary(clip["null"] - clip["true"]),
        "gap_by_level_shuffled_minus_true": [round(float(x), 4) for x in (per["shuffled"] - per["true"]).mean(0)],
        **({"chroma_gain_true_minus_true_chroma": summary(clip["true"] - clip["true_chroma"])} if "true_chroma" in clip else {}),
        "bootstrap": bootstrap, "seed": seed, "wall_seconds": round(time.time() - t0, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped tiny set)")
    ap.add_argument("--data", default=None, help="a corpus folder to use instead of the generated held-out clips")
    ap.add_argument("--n", type=int, default=100, help="held-out clips")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ARTIFACT), help="JSON artifact ('-' = stdout only)")
    a = ap.parse_args(argv)
    doc = measure(a.checkpoint, a.n, a.data, a.bootstrap, a.seed, a.threads)
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if a.out != "-":
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)
    print(text, end="")
    return doc


if __name__ == "__main__":
    main()

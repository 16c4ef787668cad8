"""Does melody conditioning reach the audio? Each melody's clip generated with and without it, scored against it.

    python -m benchmarks.melody_conditioning [--checkpoint DIR] [--n 50] [--seconds 8] [--seed 0]
                                             [--out docs/figures/melody_conditioning.json]

The melodies are ``render(with_timbre(sample_spec(4242, i), "flute"), seconds, 24000)`` for i < n, as
tests/test_melody.py renders them: spec seed 4242 is none of the seeds a shipped piece was fitted on (the corpus
seeds and the melody model's spec seed that every manifest's ``train_splits`` records; ``training_spec_seeds``
reads them, and the run refuses a melody seed among them). Caption "a solo piano melody" for every clip.
Two batched calls, with and without ``melody=``, under the same ``ids`` (``melody-<i>``), so row i draws from the
same per-item random streams in both arms (``MusicLM.generate``: batch-invariant sampling, issue 21) and the
difference is the melody's alone.

Per clip, with vs without, against its melody (the suite's per-pair functions, not copies):

- ``chroma_cosine``: audiocraft's chroma cosine (``metrics.melody_adherence``: ``AudiocraftChroma`` features,
  ``chroma_cosine_sums`` / frames — one pair of the ``compare --melody-prompts`` metric);
- ``pitch_class_accuracy``: Music ControlNet's melody accuracy (``metrics.control.melody``: ``ControlNetChroma``
  features, ``pitch_class_accuracy`` over the melody's voiced frames);
- ``chroma_correlation``: Pearson correlation of the clips' mean 12-bin chroma (``chroma_similarity``, the
  statistic tests/test_melody.py asserts on; it lives here and the test imports it);
- ``melody_rca``: CREPE raw chroma accuracy (``raw_chroma_accuracy`` on ``CrepePitch``), only with ``--crepe``:
  CREPE tiny costs more than the 1 CPU s per clip this run affords at one thread (docs/protocol.md); when run,
  its CPU seconds per clip are recorded.

Per metric: the mean with and without, the paired gain (with − without) with its 95 % percentile bootstrap
interval over melodies (``metrics.intervals.bootstrap_ci``, seeded) and the share of melodies whose gain is
positive (Wilson interval). The artifact records the checkpoint's coarse config (``chroma`` on or off), wall time,
and the git commit.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

ARTIFACT = Path("docs/figures/melody_conditioning.json")
MELODY_SEED = 4242  # spec seed of the melodies: not a training seed (training_spec_seeds)
TIMBRE = "flute"
CAPTION = "a solo piano melody"
SAMPLE_RATE = 24000
METRICS = ("chroma_cosine", "pitch_class_accuracy", "chroma_correlation", "melody_rca")
CREPE_SKIPPED = "not run (CREPE tiny costs more than 1 CPU s per clip at one thread, docs/protocol.md; `--crepe` runs it)"


# ----------------------------------------------------------------------------- the test's chroma statistic


def mean_chroma(wave: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """12-bin chroma per 85 ms frame (at 24 kHz): STFT magnitude of 80–2000 Hz folded onto pitch classes,
    each frame normalized to sum 1. [frames, 12]."""
    n_fft, hop = 4096, 2048
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=1))
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    keep = (freqs > 80) & (freqs < 2000)
    pc = np.round(12 * np.log2(freqs[keep] / 440.0)).astype(int) % 12
    out = np.zeros((len(mag), 12))
    for k in range(12):
        out[:, k] = mag[:, keep][:, pc == k].sum(1)
    return out / (out.sum(1, keepdims=True) + 1e-9)


def chroma_similarity(a: np.ndarray, b: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Pearson correlation of the clips' mean chroma vectors (key / pitch-class content)."""
    return float(np.corrcoef(mean_chroma(a, sr).mean(0), mean_chroma(b, sr).mean(0))[0, 1])


# ----------------------------------------------------------------------------- melodies and their provenance


def render_melodies(n: int, seconds: float, seed: int = MELODY_SEED) -> list[np.ndarray]:
    """The n melody prompts, float32 at 24 kHz (tests/test_melody.py's recipe)."""
    from musiclm_ref.data.render import render
    from musiclm_ref.data.specs import sample_spec, with_timbre

    return [render(with_timbre(sample_spec(seed, i), TIMBRE), seconds, SAMPLE_RATE) for i in range(n)]


def training_spec_seeds(checkpoint: str | Path | None = None) -> list[int]:
    """Every spec seed a fitted piece saw: the ``seed`` of each ``train_splits`` record (a corpus seed for
    ``generate_corpus``, the ``sample_spec`` seed for the melody model's triplets) of the shipped manifests and,
    when given, ``checkpoint``'s manifest.json."""
    from metrics.artifacts import manifest_entries
    from musiclm_ref.data.splits import SHIPPED_MANIFESTS

    manifests = list(SHIPPED_MANIFESTS)
    if checkpoint is not None and (Path(checkpoint) / "manifest.json").is_file():
        manifests.append(Path(checkpoint) / "manifest.json")
    return sorted({int(r["seed"]) for m in manifests for e in manifest_entries(m).values()
                   for r in e.get("train_splits") or [] if r.get("seed") is not None})


# ----------------------------------------------------------------------------- per-clip scores


class Scorer:
    """The per-pair scores of one generated clip against its melody; each melody's features computed once."""

    def __init__(self, crepe: bool = False):
        from metrics.control.melody import ControlNetChroma
        from metrics.embedders import EmbedderError
        from metrics.melody_adherence import AudiocraftChroma, CrepePitch

        self.extractors = {"chroma_cosine": AudiocraftChroma(), "pitch_class_accuracy": ControlNetChroma()}
        self.crepe_seconds: list[float] = []
        self.crepe_skipped = None if crepe else CREPE_SKIPPED
        if crepe:
            try:
                self.extractors["melody_rca"] = CrepePitch()
            except EmbedderError as e:  # the melody extra missing: RCA skipped and said so
                self.crepe_skipped = str(e)
        self._melody: dict[int, tuple[np.ndarray, dict[str, np.ndarray]]] = {}  # id -> (the melody, its features)

    def features(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        from metrics.audio import resample

        out = {}
        for name, ex in self.extractors.items():
            t = time.process_time()
            out[name] = ex.embed(resample(wave, SAMPLE_RATE, ex.sample_rate))
            if name == "melody_rca":
                self.crepe_seconds.append(time.process_time() - t)
        return out

    def score(self, melody: np.ndarray, generated: np.ndarray) -> dict[str, float | None]:
        from metrics.control.melody import pitch_class_accuracy
        from metrics.melody_adherence import chroma_cosine_sums, raw_chroma_accuracy

        cached = self._melody.get(id(melody))
        if cached is None or cached[0] is not melody:  # the melody is kept, so its id is not reused while cached
            cached = self._melody[id(melody)] = (melody, self.features(melody))
        m, g = cached[1], self.features(generated)
        total, frames = chroma_cosine_sums(m["chroma_cosine"], g["chroma_cosine"])
        out = {"chroma_cosine": total / frames if frames else None,
               "pitch_class_accuracy": pitch_class_accuracy(m["pitch_class_accuracy"], g["pitch_class_accuracy"]),
               "chroma_correlation": chroma_similarity(generated, melody)}
        if "melody_rca" in m:
            out["melody_rca"] = raw_chroma_accuracy(m["melody_rca"], g["melody_rca"])
        return out


# ----------------------------------------------------------------------------- statistics


def paired_summary(with_melody: Sequence[float | None], without: Sequence[float | None], n_boot: int = 2000,
                   seed: int = 0) -> dict:
    """Mean with / without, the paired gain's mean and 95 % percentile bootstrap interval over the pairs where both
    scores exist (a clip whose melody has no voiced frame has none), and the share of positive gains."""
    from metrics.intervals import bootstrap_ci, wilson_ci

    pairs = [(a, b) for a, b in zip(with_melody, without, strict=True) if a is not None and b is not None]
    if not pairs:
        return {"n": 0, "skipped": len(with_melody)}
    a, b = np.array(pairs, np.float64).T
    gain = a - b
    lo, hi = bootstrap_ci(gain, n_boot=n_boot, seed=seed)
    positive = int((gain > 0).sum())
    return {"n": len(gain), "skipped": len(with_melody) - len(gain), "with": round(float(a.mean()), 4),
            "without": round(float(b.mean()), 4), "gain": {"mean": round(float(gain.mean()), 4),
                                                           "ci95": [round(lo, 4), round(hi, 4)]},
            "positive": positive, "share_positive": round(positive / len(gain), 4),
            "share_positive_ci95": [round(x, 4) for x in wilson_ci(positive, len(gain))]}


def summarize(scores_with: Sequence[Mapping[str, float | None]], scores_without: Sequence[Mapping[str, float | None]],
              n_boot: int = 2000, seed: int = 0) -> dict[str, dict]:
    """``{metric: paired_summary}`` for every metric both arms scored."""
    names = [k for k in METRICS if all(k in s for s in (*scores_with, *scores_without))]
    return {k: paired_summary([s[k] for s in scores_with], [s[k] for s in scores_without], n_boot, seed) for k in names}


# ----------------------------------------------------------------------------- the run


def measure(checkpoint: str | Path | None = None, n: int = 50, seconds: float = 8.0, seed: int = 0,
            crepe: bool = False, threads: int | None = 1, n_boot: int = 2000,
            log: Callable[[str], None] = print, cfg_scale: float | None = None) -> dict:
    """Generate the n clips with and without their melodies and score both arms against them. ``cfg_scale``:
    classifier-free guidance in both arms alike (MusicGen samples every model with 3.0; the unconditional
    branch drops the MuLan tokens and the coarse stage's chroma, so with a melody it guides towards text and
    melody, without one towards the text)."""
    import torch

    from metrics.evaluate import run_metadata
    from musiclm_ref.pipeline import MusicLM

    if threads:
        torch.set_num_threads(threads)
    seen = training_spec_seeds(checkpoint)
    if MELODY_SEED in seen:
        raise ValueError(f"melody spec seed {MELODY_SEED} is a training seed ({seen}): the melodies are not held out")
    t0 = time.time()
    lm = MusicLM.from_pretrained(checkpoint)
    melodies = render_melodies(n, seconds)
    ids = [f"melody-{i}" for i in range(n)]
    t = time.time()
    with_melody = lm.generate([CAPTION] * n, seconds=seconds, seed=seed, melody=melodies, ids=ids, cfg_scale=cfg_scale)
    t_with = time.time() - t
    t = time.time()
    without = lm.generate([CAPTION] * n, seconds=seconds, seed=seed, ids=ids, cfg_scale=cfg_scale)
    t_without = time.time() - t
    log(f"generated 2 × {n} clips of {seconds:g} s in {t_with:.1f} + {t_without:.1f} s")
    t = time.time()
    scorer = Scorer(crepe)
    s_with = [scorer.score(m, g) for m, g in zip(melodies, with_melody)]
    s_without = [scorer.score(m, g) for m, g in zip(melodies, without)]
    t_score = time.time() - t
    cfg = lm.coarse.config
    crepe_cost = float(np.median(scorer.crepe_seconds)) if scorer.crepe_seconds else None
    return {
        "what": "melody conditioning: per melody, the clip generated with it vs without it (same ids, paired random "
                "streams), scored against the melody; gain = with − without, 95 % percentile bootstrap over melodies",
        "command": f"python -m benchmarks.melody_conditioning --n {n} --seconds {seconds:g} --seed {seed}"
                   + (f" --checkpoint {checkpoint}" if checkpoint else "") + (" --crepe" if crepe else "")
                   + (f" --cfg-scale {cfg_scale:g}" if cfg_scale is not None else ""),
        "cfg_scale": cfg_scale,
        "checkpoint": str(checkpoint or "shipped tiny set"),
        "coarse_stage": {"chroma": bool(getattr(cfg, "chroma", False)), "steps": lm.coarse.metadata.get("step"),
                         "semantic_dropout": getattr(cfg, "semantic_dropout", None)},
        "melodies": {"n": n, "seconds": seconds, "spec_seed": MELODY_SEED, "timbre": TIMBRE, "sample_rate": SAMPLE_RATE,
                     "training_spec_seeds": seen},
        "caption": CAPTION, "seed": seed, "n_boot": n_boot,
        "metrics": summarize(s_with, s_without, n_boot, seed),
        "per_clip": {i: {"with": a, "without": b} for i, a, b in zip(ids, s_with, s_without)},
        "crepe": {"cpu_seconds_per_clip_median": None if crepe_cost is None else round(crepe_cost, 3),
                  "skipped": scorer.crepe_skipped},
        "threads": threads, "generation_seconds": {"with": round(t_with, 1), "without": round(t_without, 1)},
        "scoring_seconds": round(t_score, 1), "wall_seconds": round(time.time() - t0, 1),
        "git_commit": run_metadata()["git_commit"], "git_dirty": _dirty(),
    }


def _dirty() -> bool | None:
    """Whether tracked files differ from the recorded commit (None when git cannot tell)."""
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "diff", "--quiet", "HEAD"],
                              capture_output=True).returncode != 0
    except OSError:
        return None


def main(argv: list[str] | None = None) -> dict:
    from metrics.io import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped tiny set)")
    ap.add_argument("--n", type=int, default=50, help="melodies")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (the bootstrap's too)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crepe", action="store_true", help="also CREPE pitch RCA (over 1 CPU s per clip)")
    ap.add_argument("--cfg-scale", type=float, default=None, help="classifier-free guidance in both arms (default: off)")
    ap.add_argument("--out", default=str(ARTIFACT), help="JSON artifact ('-' = stdout only)")
    a = ap.parse_args(argv)
    doc = measure(a.checkpoint, a.n, a.seconds, a.seed, a.crepe, a.threads, cfg_scale=a.cfg_scale)
    if a.out != "-":
        write_json(a.out, doc)
    print(json.dumps({k: doc[k] for k in ("coarse_stage", "metrics", "crepe", "wall_seconds")}, indent=1))
    return doc


if __name__ == "__main__":
    main()

"""``train semantic``: the semantic tokenizer fitted (k-means over frozen 25 Hz features) on a folder of clips.

Nothing here trains by gradient: the feature model (log-mels, musicnn with ``features="musicnn-msd"``, or
w2v-BERT with ``hf_path``) is frozen and
``fit_tokenizer`` runs seeded k-means over a subsample of its standardized frames.

A killed run resumes exactly (:class:`FitResume`): the feature pass saves the features so far every
``checkpoint_every`` clips (``semantic_tokenizer.pt.resume.features``) and k-means its centroids, iteration
and generator state after every iteration (``semantic_tokenizer.pt.resume``), both atomically; a rerun with
the same flags and data continues and ends with bit-identical centroids, another recipe refuses
(``metrics.epoch_resume``'s digest and reader). Both files go once the tokenizer is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metrics.artifacts import clips_hash, manifest_entry, save_checkpoint, write_manifest_entry
from metrics.epoch_resume import read_resume, recipe_digest, resume_path
from musiclm_ref.presets import get_preset
from musiclm_ref.quantize import kmeans, nearest
from musiclm_ref.semantic import (
    FEATURE_SR,
    HFFeatures,
    LogMelFeatures,
    MusicnnFeatures,
    SemanticError,
    SemanticTokenizer,
    check_wave,
)

FEATURES_FORMAT = "musiclm-eval.semantic-features-resume.v1"
KMEANS_FORMAT = "musiclm-eval.semantic-kmeans-resume.v1"


@dataclass
class FitResume:
    """Where a fit's resume state lives (``path``: k-means; ``path.features``: the feature pass), the ``digest``
    of its recipe and data, how many clips between feature saves, and ``progress`` (called with a line after
    each save: a test interrupts there)."""

    path: Path
    digest: str
    every: int = 50
    progress: Callable[[str], None] | None = None

    @property
    def features_path(self) -> Path:
        return self.path.with_name(self.path.name + ".features")

    def _read(self, path: Path, fmt: str, kind: str) -> dict | None:
        return read_resume(path, fmt, kind, SemanticError, self.digest)

    def features(self) -> list[np.ndarray]:
        """The features of the clips a killed run had done (in clip order)."""
        state = self._read(self.features_path, FEATURES_FORMAT, "a semantic feature-pass resume state")
        return [] if state is None else [t.numpy() for t in state["features"]]

    def save_features(self, feats: list[np.ndarray], total: int) -> None:
        save_checkpoint({"format": FEATURES_FORMAT, "digest": self.digest,
                         "features": [torch.from_numpy(np.ascontiguousarray(f)) for f in feats]}, self.features_path)
        self._tell(f"features {len(feats)}/{total} clips")

    def kmeans(self, g: torch.Generator) -> tuple[int, torch.Tensor] | None:
        """(iterations done, centroids) of a killed run's k-means, with ``g`` set to its generator state."""
        state = self._read(self.path, KMEANS_FORMAT, "a semantic k-means resume state")
        if state is None:
            return None
        g.set_state(state["generator"])
        return int(state["iteration"]), state["centroids"]

    def save_kmeans(self, done: int, iters: int, centroids: torch.Tensor, g: torch.Generator) -> None:
        save_checkpoint({"format": KMEANS_FORMAT, "digest": self.digest, "iteration": done,
                         "centroids": centroids, "generator": g.get_state()}, self.path)
        self._tell(f"k-means iteration {done}/{iters}")

    def _tell(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.features_path.unlink(missing_ok=True)


def feature_pass(waves: list[tuple[np.ndarray, int]], features, resume: FitResume | None) -> np.ndarray:
    """Every clip's frames, concatenated; with ``resume``, continued from a killed run's and saved as it goes."""
    feats = resume.features() if resume is not None else []
    for i in range(len(feats), len(waves)):
        w, sr = waves[i]
        feats.append(features(check_wave(w, sr), sr))
        if resume is not None and ((i + 1) % resume.every == 0 or i + 1 == len(waves)):
            resume.save_features(feats, len(waves))
    return np.concatenate(feats)


def fit_tokenizer(waves: list[tuple[np.ndarray, int]], features=None, k: int = 256, iters: int = 20, seed: int = 0,
                  max_frames: int = 200_000, resume: FitResume | None = None) -> SemanticTokenizer:
    """k-means (``k`` clusters, seeded) over the standardized features of ``waves`` [(wave, sr), …];
    ``resume``: continue a killed fit and save its state as it goes (:class:`FitResume`)."""
    features = features or LogMelFeatures()
    if not waves:
        raise SemanticError("fit_tokenizer needs at least one clip")
    feats = feature_pass(waves, features, resume)
    if len(feats) < k:
        raise SemanticError(f"only {len(feats)} feature frames for k={k} clusters; give more audio or a smaller k")
    rng = np.random.default_rng(seed)
    if len(feats) > max_frames:
        feats = feats[np.sort(rng.choice(len(feats), max_frames, replace=False))]
    mean = feats.mean(0)
    # one scale per feature group (log-mels, deltas): a per-band scale would blow up near-silent bands' noise
    std = np.concatenate([np.full(n, feats[:, a : a + n].std() + 1e-5) for a, n in zip(np.cumsum([0, *features.groups]), features.groups)])
    x = torch.from_numpy(((feats - mean) / std).astype(np.float32))
    g = torch.Generator().manual_seed(seed)
    state = resume.kmeans(g) if resume is not None else None
    on_iter = None if resume is None else (lambda done, c: resume.save_kmeans(done, iters, c, g))
    centroids, counts = kmeans(x, k, iters, g, state, on_iter)
    meta = {"k": k, "iters": iters, "seed": seed, "frames": int(len(x)), "used_clusters": int((counts > 0).sum()),
            "inertia": float((x - centroids[nearest(x, centroids)]).pow(2).sum(-1).mean())}
    return SemanticTokenizer(features, centroids.numpy(), mean, std, meta)


FEATURE_CHOICES = ("logmel", "musicnn-msd", "musicnn-mtt")


def make_features(cfg: SemanticTrainConfig):
    """The frozen feature model ``cfg`` names: ``hf_path``'s hidden state, else ``cfg.features``."""
    if cfg.features not in FEATURE_CHOICES:
        raise SemanticError(f"unknown semantic features {cfg.features!r}; expected one of {', '.join(FEATURE_CHOICES)}")
    if cfg.hf_path:
        if cfg.features != "logmel":
            raise SemanticError(f"a transformers model (hf_path {cfg.hf_path}) and features {cfg.features!r} are two "
                                "different feature models; give one of them")
        return HFFeatures(cfg.hf_path, cfg.layer, cfg.device)
    return LogMelFeatures() if cfg.features == "logmel" else MusicnnFeatures(cfg.features, cfg.device)


@dataclass
class SemanticTrainConfig:
    """Everything ``train semantic`` takes besides the data and the checkpoint directory."""

    preset: str = "tiny"
    k: int | None = None  # clusters (the preset's when None)
    seed: int = 0
    iters: int = 20
    hf_path: str | Path | None = None  # a local transformers model (w2v-BERT) instead of the log-mel features
    layer: int = 7
    features: str = "logmel"  # FEATURE_CHOICES: what k-means clusters (``hf_path`` needs "logmel", its default)
    device: str = "cpu"
    on_error: str = "raise"
    command: str = ""  # the command line the manifest records
    stream: bool = False
    crop_seconds: float = 30.0
    max_files: int | None = 2000
    checkpoint_every: int = 50  # clips between saves of the feature pass's resume state
    progress: Callable[[str], None] | None = None  # called with a line after each resume save


def train_semantic(data_dir: str | Path, out_dir: str | Path, cfg: SemanticTrainConfig) -> dict:
    """Fit a tokenizer on ``data_dir``'s clips; writes ``out_dir/semantic_tokenizer.pt`` + manifest entry.

    ``stream``: ``data_dir`` is a folder tree of audio too large to load (FMA); k-means is fitted on one
    random ``crop_seconds`` crop of each of up to ``max_files`` files (``data.folder.crop_report``: only the
    crop is decoded). The feature model (w2v-BERT with ``hf_path``) is frozen, so nothing here trains by
    gradient and data parallelism does not apply; k-means subsamples ``max_frames`` frames anyway."""
    from metrics.audio import load_dir

    k = cfg.k or get_preset(cfg.preset, "semantic", SemanticError).semantic_k
    if cfg.stream:
        from musiclm_ref.data.folder import crop_report

        report = crop_report(data_dir, cfg.crop_seconds, FEATURE_SR, cfg.max_files, cfg.seed, cfg.on_error)
    else:
        report = load_dir(data_dir, on_error=cfg.on_error)
    features = make_features(cfg)
    out = Path(out_dir)
    data_hash = clips_hash(report.clips)
    resume = FitResume(resume_path(out / "semantic_tokenizer.pt"), recipe_digest(cfg, data_hash), cfg.checkpoint_every,
                       cfg.progress)
    tok = fit_tokenizer([(c.wave, c.sr) for c in report.clips], features, k=k, iters=cfg.iters, seed=cfg.seed,
                        resume=resume)
    counts = np.bincount(np.concatenate([tok.tokenize(c.wave, c.sr) for c in report.clips]), minlength=k)
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    metrics = {**tok.metadata, "token_entropy_bits": round(entropy, 3), "perplexity": round(2**entropy, 1),
               "max_entropy_bits": round(math.log2(k), 3)}
    entry = manifest_entry(cfg.command, cfg.seed, data_hash, metrics=metrics, preset=cfg.preset,
                           data_clips=len(report.clips), skipped=[f"{s.path}: {s.reason}" for s in report.skipped],
                           features=features.to_dict(), tokenizer_id=tok.id,
                           stream={"crop_seconds": cfg.crop_seconds, "max_files": cfg.max_files} if cfg.stream else None)
    tok.metadata = entry
    tok.save(out / "semantic_tokenizer.pt")
    write_manifest_entry(out / "manifest.json", "semantic_tokenizer.pt", entry)
    resume.clear()
    return entry

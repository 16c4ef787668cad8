"""``train semantic``: the semantic tokenizer fitted (k-means over frozen 25 Hz features) on a folder of clips.

Nothing here trains by gradient: the feature model (log-mels, or w2v-BERT with ``hf_path``) is frozen and
``fit_tokenizer`` runs seeded k-means over a subsample of its standardized frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metrics.artifacts import clips_hash, manifest_entry, write_manifest_entry
from musiclm_ref.presets import get_preset
from musiclm_ref.quantize import kmeans, nearest
from musiclm_ref.semantic import (
    FEATURE_SR,
    HFFeatures,
    LogMelFeatures,
    SemanticError,
    SemanticTokenizer,
    check_wave,
)


def fit_tokenizer(waves: list[tuple[np.ndarray, int]], features=None, k: int = 256, iters: int = 20, seed: int = 0,
                  max_frames: int = 200_000) -> SemanticTokenizer:
    """k-means (``k`` clusters, seeded) over the standardized features of ``waves`` [(wave, sr), …]."""
    features = features or LogMelFeatures()
    if not waves:
        raise SemanticError("fit_tokenizer needs at least one clip")
    feats = np.concatenate([features(check_wave(w, sr), sr) for w, sr in waves])
    if len(feats) < k:
        raise SemanticError(f"only {len(feats)} feature frames for k={k} clusters; give more audio or a smaller k")
    rng = np.random.default_rng(seed)
    if len(feats) > max_frames:
        feats = feats[np.sort(rng.choice(len(feats), max_frames, replace=False))]
    mean = feats.mean(0)
    # one scale per feature group (log-mels, deltas): a per-band scale would blow up near-silent bands' noise
    std = np.concatenate([np.full(n, feats[:, a : a + n].std() + 1e-5) for a, n in zip(np.cumsum([0, *features.groups]), features.groups)])
    x = torch.from_numpy(((feats - mean) / std).astype(np.float32))
    centroids, counts = kmeans(x, k, iters, torch.Generator().manual_seed(seed))
    meta = {"k": k, "iters": iters, "seed": seed, "frames": int(len(x)), "used_clusters": int((counts > 0).sum()),
            "inertia": float((x - centroids[nearest(x, centroids)]).pow(2).sum(-1).mean())}
    return SemanticTokenizer(features, centroids.numpy(), mean, std, meta)


@dataclass
class SemanticTrainConfig:
    """Everything ``train semantic`` takes besides the data and the checkpoint directory."""

    preset: str = "tiny"
    k: int | None = None  # clusters (the preset's when None)
    seed: int = 0
    iters: int = 20
    hf_path: str | Path | None = None  # a local transformers model (w2v-BERT) instead of the log-mel features
    layer: int = 7
    device: str = "cpu"
    on_error: str = "raise"
    command: str = ""  # the command line the manifest records
    stream: bool = False
    crop_seconds: float = 30.0
    max_files: int | None = 2000


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
    features = HFFeatures(cfg.hf_path, cfg.layer, cfg.device) if cfg.hf_path else LogMelFeatures()
    tok = fit_tokenizer([(c.wave, c.sr) for c in report.clips], features, k=k, iters=cfg.iters, seed=cfg.seed)
    counts = np.bincount(np.concatenate([tok.tokenize(c.wave, c.sr) for c in report.clips]), minlength=k)
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    metrics = {**tok.metadata, "token_entropy_bits": round(entropy, 3), "perplexity": round(2**entropy, 1),
               "max_entropy_bits": round(math.log2(k), 3)}
    entry = manifest_entry(cfg.command, cfg.seed, clips_hash(report.clips), metrics=metrics, preset=cfg.preset,
                           data_clips=len(report.clips), skipped=[f"{s.path}: {s.reason}" for s in report.skipped],
                           features=features.to_dict(), tokenizer_id=tok.id,
                           stream={"crop_seconds": cfg.crop_seconds, "max_files": cfg.max_files} if cfg.stream else None)
    tok.metadata = entry
    out = Path(out_dir)
    tok.save(out / "semantic_tokenizer.pt")
    write_manifest_entry(out / "manifest.json", "semantic_tokenizer.pt", entry)
    return entry

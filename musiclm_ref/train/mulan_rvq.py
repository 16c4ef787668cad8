"""Fitting the RVQ that turns MuLan audio embeddings into the stages' conditioning tokens (M_A).

Both stage-training data paths (the cached token corpus, ``train.stages``; streamed crops,
``data.stream``) fit it the same way the first time a run has none: ``fit_mulan_rvq`` on whole clips
plus seeded random 5 s crops, saved beside the stages with its manifest entry (``save_fitted``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metrics.artifacts import manifest_entry, write_manifest_entry
from metrics.errors import ComputeError
from musiclm_ref.pipeline import SAMPLE_RATE, save_mulan_rvq
from musiclm_ref.presets import get_preset
from musiclm_ref.quantize import ResidualVQ


def fit_mulan_rvq(mulan, waves: list[np.ndarray], levels: int, codebook: int, seed: int = 0) -> ResidualVQ:
    """RVQ over MuLan audio embeddings of whole clips and of seeded random 5 s crops (more vectors than clips,
    and crops are what the stages' conditioning sees)."""
    rng = np.random.default_rng(seed)
    crops = []
    for w in waves:
        for _ in range(3):
            n = 5 * SAMPLE_RATE
            s = int(rng.integers(0, max(1, len(w) - n)))
            crops.append(w[s : s + n])
    emb = mulan.embed_audio(list(waves) + crops, SAMPLE_RATE)
    if len(emb) < codebook:
        raise ComputeError(f"only {len(emb)} MuLan embeddings for a codebook of {codebook}; give more clips")
    return ResidualVQ(emb.shape[1], levels, codebook).fit(torch.from_numpy(emb).float(), iters=20, seed=seed)


def save_fitted(mulan, waves: list[np.ndarray], out: Path, preset: str, seed: int, data_hash: str, command: str) -> Path:
    """Fit the preset's RVQ on ``waves`` and write ``out/mulan_rvq.pt`` and its manifest entry."""
    levels, k = get_preset(preset).mulan_rvq
    rvq = fit_mulan_rvq(mulan, waves, levels, k, seed)
    path = out / "mulan_rvq.pt"
    save_mulan_rvq(rvq, path, {"mulan_sha256": mulan.weights_sha256, "data_hash": data_hash})
    metrics = {"levels": levels, "codebook": k, "fit_mse_by_level": [round(x, 5) for x in rvq.fit_mse]}
    write_manifest_entry(out / "manifest.json", "mulan_rvq.pt",
                         manifest_entry(command, seed, data_hash, metrics=metrics, mulan_sha256=mulan.weights_sha256))
    return path

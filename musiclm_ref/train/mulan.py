"""``train mulan``: the MuLan-style joint embedding trained contrastively on a captioned corpus, and its
held-out figures (caption → clip retrieval, the MCC gap between own and shuffled captions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from metrics.artifacts import manifest_entry, write_sidecar
from metrics.epoch_resume import EpochResume, recipe_digest, resume_path
from musiclm_ref.mulan import MuLan, MulanConfig, MulanError, save_mulan


@dataclass
class MulanCorpus:
    ids: list[str]
    splits: list[str]
    captions: list[str]
    mels: torch.Tensor  # [n, mels, frames] of each clip's first 10 s window


def load_corpus(data_dir: str | Path, model: MuLan) -> MulanCorpus:
    """Captions, splits and log-mels of a corpus made by ``musiclm-eval synth``; each clip decoded once."""
    from metrics.audio import load_dir, pair_ids
    from metrics.classifier import ClassifierError
    from metrics.classifier_training import read_tag_labels
    from metrics.musiccaps import CaptionsError, load_captions

    data_dir = Path(data_dir)
    try:
        caps = load_captions(data_dir / "captions.csv", require_all_columns=False)
        rows = read_tag_labels(data_dir)
    except (CaptionsError, ClassifierError) as e:
        raise MulanError(str(e)) from None
    split = {r[0]: r[1] for r in rows}
    report = load_dir(data_dir, sr=model.cfg.sample_rate)
    waves = {c.id: c.wave for c in report.clips}
    ids = pair_ids({"audio": waves, "captions": caps.index, "labels": split})
    size = int(model.cfg.window_seconds * model.cfg.sample_rate)
    with torch.no_grad():
        mels = [model.logmel(torch.from_numpy(waves[i][:size])[None])[0] for i in ids]
    frames = min(m.shape[-1] for m in mels)
    return MulanCorpus(ids, [split[i] for i in ids], [str(caps.loc[i, "caption"]) for i in ids], torch.stack([m[:, :frames] for m in mels]))


def recall_at_k(text_emb: np.ndarray, audio_emb: np.ndarray, k: int = 10, n_candidates: int = 100, seed: int = 0) -> float:
    """Caption → audio retrieval: fraction of captions whose clip ranks in the top k among
    itself and ``n_candidates - 1`` other clips drawn at random (seeded) from the same set.
    Ties are counted against the query, so a constant model scores 0, not 1."""
    n = len(text_emb)
    rng = np.random.default_rng(seed)
    sims = text_emb @ audio_emb.T
    hits = 0
    for i in range(n):
        others = np.delete(np.arange(n), i)
        pool = rng.choice(others, size=min(n_candidates - 1, n - 1), replace=False)
        hits += int((sims[i, pool] >= sims[i, i]).sum() < k)  # ties count against the query
    return hits / n


def evaluate(model: MuLan, corpus: MulanCorpus, split: str = "eval", seed: int = 0) -> dict:
    """Held-out figures: recall@10 among 100, MCC with own captions, with shuffled captions, the gap."""
    idx = [i for i, s in enumerate(corpus.splits) if s == split]
    if len(idx) < 2:
        return {}
    model.eval()
    with torch.no_grad():
        a = torch.cat([model.audio_latent(corpus.mels[idx][j : j + 32].to(model.device)) for j in range(0, len(idx), 32)]).cpu().numpy()
    t = model.embed_text([corpus.captions[i] for i in idx])
    perm = np.random.default_rng(seed).permutation(len(idx))
    while len(idx) > 1 and (perm == np.arange(len(idx))).any():  # a derangement: no caption stays with its clip
        perm = np.random.default_rng(int(perm[0]) + seed + 1).permutation(len(idx))
    own = float((a * t).sum(-1).mean())
    shuffled = float((a * t[perm]).sum(-1).mean())
    return {
        "split": split,
        "n": len(idx),
        "recall_at_10_of_100": recall_at_k(t, a, 10, 100, seed),
        "n_candidates": min(100, len(idx)),
        "mcc_own": own,
        "mcc_shuffled": shuffled,
        "mcc_gap": own - shuffled,
    }


@dataclass
class MulanTrainConfig:
    """Everything ``train mulan`` takes besides the data and where the checkpoint goes."""

    epochs: int = 40
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 64
    lr: float = 2e-3
    crop_frames: int = 400
    max_steps: int | None = None
    model: MulanConfig | None = None  # the architecture (MulanConfig's defaults when None)
    command: str = ""  # the command line the manifest records
    progress: Callable[[str], None] | None = field(default=None, compare=False)


@dataclass
class MulanTrainResult:
    model: MuLan
    losses: list[float]
    metrics: dict
    n_train: int
    data_hash: str


def fit_mulan(data_dir: str | Path, cfg: MulanTrainConfig, checkpoint: str | Path | None = None) -> MulanTrainResult:
    """Contrastive training on the ``train`` split (random crops of the precomputed log-mels). ``checkpoint``:
    the file the run will write; its epoch state is kept beside it, so a killed run resumes exactly."""
    from metrics.classifier_training import corpus_hash, fit_epochs

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = MuLan(cfg.model)
    corpus = load_corpus(data_dir, model)
    model.to(cfg.device)
    train_idx = np.array([i for i, s in enumerate(corpus.splits) if s == "train"])
    if len(train_idx) < 2:
        raise MulanError(f"{Path(data_dir) / 'labels.csv'}: need at least 2 clips with split 'train'")
    bs = min(cfg.batch_size, len(train_idx))
    frames = corpus.mels.shape[-1]
    crop = min(cfg.crop_frames, frames)

    def epoch_loss() -> Callable[[int], torch.Tensor]:
        order = rng.permutation(train_idx)

        def loss_of(b: int) -> torch.Tensor:
            batch = order[b * bs : (b + 1) * bs]
            starts = rng.integers(0, frames - crop + 1, size=len(batch))
            mel = torch.stack([corpus.mels[i, :, s : s + crop] for i, s in zip(batch, starts)]).to(cfg.device)
            return model.loss(mel, [corpus.captions[i] for i in batch])
        return loss_of

    digest = corpus_hash(data_dir)
    resume = EpochResume(resume_path(checkpoint), recipe_digest(cfg, digest), rng) if checkpoint is not None else None
    losses = fit_epochs(model, cfg.lr, cfg.epochs, max(1, len(train_idx) // bs), cfg.max_steps, 0.1, epoch_loss, cfg.progress,
                        resume)
    metrics = evaluate(model, corpus, "eval", cfg.seed)
    model.eval()
    return MulanTrainResult(model, losses, metrics, len(train_idx), digest)


def train_mulan(data: str | Path, out: str | Path, cfg: MulanTrainConfig) -> dict:
    """Train on ``data``, write the checkpoint ``out`` (.pt) and its manifest beside it (.json); returns the entry."""
    res = fit_mulan(data, cfg, out)
    metrics = {**res.metrics, "n_train": res.n_train, "final_loss": float(np.mean(res.losses[-10:])),
               "n_parameters": sum(p.numel() for p in res.model.parameters())}
    entry = manifest_entry(cfg.command, cfg.seed, res.data_hash, metrics=metrics, epochs=cfg.epochs)
    write_sidecar(save_mulan(res.model, out, meta=entry), entry)
    resume_path(out).unlink(missing_ok=True)  # finished: nothing left to resume
    return entry

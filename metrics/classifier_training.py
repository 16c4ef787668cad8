"""Training the KLD classifier (``musiclm-eval train classifier``) on a tagged corpus, and its mAP.

The model, its label space and how it is loaded and scored live in ``metrics.classifier``; this module is
only what fitting it needs: the corpus' tag labels split by the project's one held-out rule, random-crop
training, mean average precision on the held-out clips, and the data hash its manifest records.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metrics.artifacts import data_hash, is_held_out, manifest_entry, write_sidecar
from metrics.classifier import (
    ClassifierConfig,
    ClassifierError,
    LabelSpace,
    LeafClassifier,
    corpus_label_space,
    n_parameters,
    save_classifier,
    window_logits,
)
from metrics.epoch_resume import EpochResume, recipe_digest, resume_path
from metrics.io import read_csv_table


def read_tag_labels(data_dir: str | Path) -> list[tuple[str, str, list[str]]]:
    """(ytid, split, tags) rows of a corpus ``labels.csv`` (tags ';'-joined); ``split`` is ``"eval"`` for the
    clips the project's one held-out rule holds out (``metrics.artifacts.is_held_out``), else ``"train"``."""
    path = Path(data_dir) / "labels.csv"
    if not path.is_file():
        raise ClassifierError(f"{path}: labels.csv not found (expected a corpus made by `musiclm-eval synth`)")
    df = read_csv_table(path, ClassifierError, dtype=str, keep_default_na=False)
    missing = {"ytid", "tags"} - set(df.columns)
    if missing:
        raise ClassifierError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return [(r.ytid, "eval" if is_held_out(r.ytid) else "train", [t for t in r.tags.split(";") if t])
            for r in df.itertuples()]  # fmt: skip


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Non-interpolated AP (as scikit-learn): mean over positives of the precision at their rank."""
    order = np.argsort(-scores, kind="stable")
    hits = targets[order] > 0.5
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean AP over labels with at least one positive (labels absent from the split are left out)."""
    aps = [average_precision(scores[:, j], targets[:, j]) for j in range(targets.shape[1]) if targets[:, j].any()]
    return float(np.mean(aps))


@dataclass
class TrainResult:
    model: LeafClassifier
    label_space: LabelSpace
    losses: list[float]
    eval_map: float | None
    n_train: int
    n_eval: int
    data_hash: str


def load_corpus_waves(data_dir: str | Path, sr: int, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Decode each clip once at the model rate through the shared loader; the features are cached in memory."""
    from metrics.audio import load_dir

    report = load_dir(data_dir, sr=sr, ids=ids)
    return {c.id: c.wave for c in report.clips}


def corpus_hash(data_dir: str | Path) -> str:
    """The manifest's data hash (``metrics.artifacts.data_hash``) of labels.csv and every clip's bytes."""
    from metrics.audio import scan_dir
    from metrics.io import file_sha256

    files = {"labels.csv": Path(data_dir) / "labels.csv", **scan_dir(data_dir)}
    return data_hash({ident: file_sha256(p) for ident, p in files.items()})


@dataclass
class ClassifierTrainConfig:
    """Everything ``train classifier`` takes besides the data and where the checkpoint goes."""

    epochs: int = 12
    seed: int = 0
    device: str = "cpu"
    label_space: LabelSpace | None = None  # the corpus tags when None
    crop_seconds: float = 2.0
    batch_size: int = 16
    lr: float = 2e-3
    max_steps: int | None = None
    model: ClassifierConfig | None = None  # the architecture (the label space's size, ClassifierConfig defaults)
    command: str = ""  # the command line the manifest records
    progress: Callable[[str], None] | None = field(default=None, compare=False)


def fit_epochs(model: torch.nn.Module, lr: float, epochs: int, steps_per_epoch: int, max_steps: int | None,
               pct_start: float, epoch_loss: Callable[[], Callable[[int], torch.Tensor]],
               progress: Callable[[str], None] | None = None, resume: EpochResume | None = None) -> list[float]:
    """The epoch loop the metric models (the classifier, MuLan) train with: AdamW (weight decay 1e-4) under a
    one-cycle schedule over ``epochs * steps_per_epoch`` steps (at most ``max_steps``). ``epoch_loss()`` is
    called at each epoch's start (it draws the epoch's order) and returns ``loss_of(b)``, batch b's loss.
    With ``resume`` the state is saved after every epoch and a killed run continues from its last epoch
    exactly (``metrics.epoch_resume``). Returns the loss of every step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1), pct_start=pct_start)
    losses: list[float] = []
    start, step, t0 = 0, 0, time.time()
    if resume is not None and (state := resume.load(model, opt, sched)) is not None:
        start, step, losses = state
    for epoch in range(start, epochs):
        model.train()
        loss_of = epoch_loss()
        for b in range(steps_per_epoch):
            if step >= total:
                break
            loss = loss_of(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            step += 1
        if resume is not None and epoch + 1 < epochs:
            resume.save(epoch + 1, step, losses, model, opt, sched)
        if progress:
            progress(f"epoch {epoch + 1}/{epochs} loss {np.mean(losses[-steps_per_epoch:]):.4f} ({time.time() - t0:.0f} s)")
    return losses


def fit_classifier(data_dir: str | Path, cfg: ClassifierTrainConfig, checkpoint: str | Path | None = None) -> TrainResult:
    """Train on the ``train`` split with random crops; report mAP on the ``eval`` split (full clips).

    Crops keep an epoch cheap on CPU (LEAF's 401-tap complex filterbank runs at 16 kHz); the eval
    split is scored the way KLD uses the model: whole 10 s windows. ``checkpoint``: the file the run will
    write; its epoch state is kept beside it, so a killed run resumes (``metrics.epoch_resume``).
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    label_space = cfg.label_space or corpus_label_space()
    rows = read_tag_labels(data_dir)
    labels_path = str(Path(data_dir) / "labels.csv")
    targets = {ytid: label_space.multihot(tags, labels_path) for ytid, _, tags in rows}
    train_ids = [r[0] for r in rows if r[1] == "train"]
    eval_ids = [r[0] for r in rows if r[1] == "eval"]
    if not train_ids:
        raise ClassifierError(f"{labels_path}: no rows with split 'train'")
    model = LeafClassifier(cfg.model or ClassifierConfig(n_labels=len(label_space))).to(cfg.device)
    waves = load_corpus_waves(data_dir, model.sample_rate, train_ids + eval_ids)
    crop = int(cfg.crop_seconds * model.sample_rate)
    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)

    def epoch_loss() -> Callable[[int], torch.Tensor]:
        order = rng.permutation(len(train_ids))

        def loss_of(b: int) -> torch.Tensor:
            batch = [train_ids[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            x = torch.from_numpy(np.stack([random_crop(waves[i], crop, rng) for i in batch])).to(cfg.device)
            y = torch.from_numpy(np.stack([targets[i] for i in batch])).to(cfg.device)
            return F.binary_cross_entropy_with_logits(model(x), y)
        return loss_of

    digest = corpus_hash(data_dir)
    resume = EpochResume(resume_path(checkpoint), recipe_digest(cfg, digest), rng) if checkpoint is not None else None
    losses = fit_epochs(model, cfg.lr, cfg.epochs, steps_per_epoch, cfg.max_steps, 0.15, epoch_loss, cfg.progress, resume)
    eval_map = None
    if eval_ids:
        scores = np.concatenate([window_logits(model, waves[i], model.sample_rate, cfg.device).mean(0, keepdims=True) for i in eval_ids])
        eval_map = mean_average_precision(scores, np.stack([targets[i] for i in eval_ids]))
    model.eval()
    return TrainResult(model, label_space, losses, eval_map, len(train_ids), len(eval_ids), digest)


def train_classifier(data: str | Path, out: str | Path, cfg: ClassifierTrainConfig) -> dict:
    """Train on ``data``, write the checkpoint ``out`` (.pt) and its manifest beside it (.json); returns the entry."""
    res = fit_classifier(data, cfg, out)
    metrics = {"eval_map": res.eval_map, "n_train": res.n_train, "n_eval": res.n_eval,
               "final_loss": float(np.mean(res.losses[-10:])), "n_parameters": n_parameters(res.model)}
    entry = manifest_entry(cfg.command, cfg.seed, res.data_hash, metrics=metrics, epochs=cfg.epochs,
                           label_space=res.label_space.name, label_space_digest=res.label_space.digest)
    write_sidecar(save_classifier(res.model, res.label_space, out, meta=entry), entry)
    resume_path(out).unlink(missing_ok=True)  # finished: nothing left to resume
    return entry


def random_crop(wave: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if len(wave) <= size:
        return np.pad(wave, (0, size - len(wave)))
    start = int(rng.integers(0, len(wave) - size + 1))
    return wave[start : start + size]

"""``train melody``: the melody embedder trained on timbre pairs with a triplet loss, then its 24-level RVQ fitted.

Pairs come from the procedural corpus: the same ``ClipSpec`` rendered with two timbres is a positive
pair; another spec's melody in the anchor's own timbre is the (hard) negative (``musiclm_ref.melody``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from metrics.artifacts import clips_hash, manifest_entry, write_manifest_entry
from metrics.epoch_resume import read_resume, recipe_digest, restore, write_resume
from musiclm_ref.melody import WINDOW_SECONDS, MelodyEmbedder, MelodyError, save_melody
from musiclm_ref.pipeline import SAMPLE_RATE

RESUME_FORMAT = "musiclm-ref.melody-resume.v1"


def render_triplets(n: int, seed: int = 0, seconds: float = 8.0, sample_rate: int = 16000) -> dict[str, Tensor]:
    """``n`` specs, each rendered in two timbres: waves [n, 2, samples] (same melody per row)."""
    from musiclm_ref.data.instruments import TIMBRES
    from musiclm_ref.data.render import render
    from musiclm_ref.data.specs import sample_spec, with_timbre

    rng = np.random.default_rng(seed)
    timbres = [t for t in TIMBRES if t != "bass"]
    out = np.zeros((n, 2, int(seconds * sample_rate)), np.float32)
    for i in range(n):
        spec = sample_spec(seed + 7919, i)
        a, b = rng.choice(timbres, 2, replace=False)
        for j, t in enumerate((a, b)):
            out[i, j] = render(with_timbre(spec, str(t)), seconds, sample_rate)
    return {"waves": torch.from_numpy(out)}


def triplet_batch(waves: Tensor, batch: int, sr: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Anchor (timbre A), positive (same melody, timbre B, same 4 s span), negative (another melody, timbre A)."""
    n, _, samples = waves.shape
    size = WINDOW_SECONDS * sr
    i = torch.randint(0, n, (batch,), generator=g)
    j = (i + torch.randint(1, n, (batch,), generator=g)) % n
    side = torch.randint(0, 2, (batch,), generator=g)
    start = torch.randint(0, samples - size + 1, (batch,), generator=g)
    start_neg = torch.randint(0, samples - size + 1, (batch,), generator=g)
    crop = lambda r, s, st: torch.stack([waves[a, b, c : c + size] for a, b, c in zip(r, s, st)])  # noqa: E731
    return crop(i, side, start), crop(i, 1 - side, start), crop(j, side, start_neg)


def triplet_loss(model: MelodyEmbedder, a: Tensor, p: Tensor, n: Tensor, margin: float = 0.3) -> Tensor:
    ea, ep, en = model(a), model(p), model(n)
    return F.relu((1 - (ea * ep).sum(-1)) - (1 - (ea * en).sum(-1)) + margin).mean()


def triplet_accuracy(model: MelodyEmbedder, waves: Tensor, batches: int = 4, batch: int = 32, seed: int = 1) -> float:
    """Share of held-out triplets where the positive is closer than the negative."""
    g = torch.Generator().manual_seed(seed)
    model.eval()
    hits = total = 0
    with torch.no_grad():
        for _ in range(batches):
            a, p, n = triplet_batch(waves, batch, model.cfg.sample_rate, g)
            ea, ep, en = model(a), model(p), model(n)
            hits += int(((ea * ep).sum(-1) > (ea * en).sum(-1)).sum())
            total += batch
    return hits / total


def fit_melody(model: MelodyEmbedder, train_waves: Tensor, steps: int = 600, batch: int = 24, lr: float = 2e-3,
               seed: int = 0, progress: bool = True, resume: Path | None = None, digest: str = "",
               checkpoint_every: int = 50, on_step=None) -> list[float]:
    """The triplet loop (AdamW, cosine decay) on ``train_waves`` [n, 2, samples]; returns the loss per step.

    With ``resume`` (a file) the state — weights, optimizer, step, losses, the crop generator and torch's
    RNG — is saved there atomically every ``checkpoint_every`` steps, and a run finding it (with the same
    recipe ``digest``) continues from it to the weights of an uninterrupted run. ``on_step(step, loss)``
    sees every step."""
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("rvq")], lr=lr)
    losses: list[float] = []
    start = 0
    if (state := read_resume(resume, RESUME_FORMAT, "a melody resume state", MelodyError, digest)) is not None:
        restore(state, model, opt)
        g.set_state(state["rng"])
        start, losses = int(state["step"]), list(state["losses"])
    model.train()
    for step in tqdm(range(start, steps), desc="melody", initial=start, total=steps, disable=not progress):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = triplet_loss(model, *triplet_batch(train_waves, batch, model.cfg.sample_rate, g))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if resume is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            write_resume(resume, RESUME_FORMAT, digest, model, opt, step=step + 1, losses=losses, rng=g.get_state())
        if on_step is not None:
            on_step(step + 1, losses[-1])
    model.eval()
    return losses


@dataclass
class MelodyTrainConfig:
    """Everything ``train melody`` takes besides the data and the checkpoint directory."""

    pairs: int = 260  # melodies rendered in two timbres each
    steps: int = 600
    codebook: int = 64  # RVQ codebook size (paper: 512)
    seed: int = 0
    threads: int | None = 2
    checkpoint_every: int = 50  # steps between resume states (out/melody_last.pt)
    command: str = ""  # the command line the manifest records
    progress: bool = True


def train_melody(data: str | Path | None, out: str | Path, cfg: MelodyTrainConfig) -> dict:
    """Render timbre pairs, train the triplet model, fit the 24-level RVQ on ``data``'s clips (None: on the
    rendered pairs); writes ``out/melody.pt`` and its manifest entry, and returns the entry."""
    from metrics.audio import load_dir

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out)
    pairs, steps, codebook, seed = cfg.pairs, cfg.steps, cfg.codebook, cfg.seed
    waves = render_triplets(pairs, seed=seed)["waves"]
    n_held = max(1, pairs // 7)
    torch.manual_seed(seed)
    model = MelodyEmbedder()
    before = triplet_accuracy(model, waves[-n_held:])
    last = out / "melody_last.pt"  # a killed run's state: this run continues from it
    losses = fit_melody(model, waves[:-n_held], steps=steps, seed=seed, progress=cfg.progress, resume=last,
                        digest=recipe_digest(cfg, str(data)), checkpoint_every=cfg.checkpoint_every)
    acc = triplet_accuracy(model, waves[-n_held:])
    if data is not None:
        clips = load_dir(data, SAMPLE_RATE, min_seconds=4.0).clips
        emb = np.concatenate([model.embed(c.wave, SAMPLE_RATE) for c in clips])
        data_hash = clips_hash(clips)
    else:
        emb = np.concatenate([model.embed(w.numpy(), model.cfg.sample_rate) for pair in waves for w in pair])
        data_hash = None
    model.fit_rvq(emb, codebook=codebook, seed=seed)
    metrics = {"held_out_triplet_accuracy": round(acc, 4), "untrained_triplet_accuracy": round(before, 4),
               "loss_first_50": round(float(np.mean(losses[:50])), 4), "loss_last_50": round(float(np.mean(losses[-50:])), 4),
               "rvq": [model.cfg.rvq_levels, codebook], "rvq_fit_mse_last_level": round(model.rvq.fit_mse[-1], 5)}
    save_melody(model, out / "melody.pt", {"seed": seed, "metrics": metrics})
    entry = manifest_entry(cfg.command, seed, data_hash, metrics=metrics, pairs=pairs, steps=steps)
    write_manifest_entry(out / "manifest.json", "melody.pt", entry)
    last.unlink(missing_ok=True)  # finished: nothing left to resume
    return entry

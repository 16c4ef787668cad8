"""Melody embedding for melody conditioning (MusicLM §3.5): one 192-d vector per 4 s of audio.

The paper trains a small model on pairs of audio with the same melody but different acoustics
(hummed, sung, played) with a triplet loss, then quantizes each embedding with a 24-level RVQ and
concatenates those tokens with the MuLan tokens. Here the pairs come from the procedural corpus: the
same ``ClipSpec`` rendered with two timbres (``musiclm_ref.data.synth.with_timbre``) is a positive
pair; another spec's melody in the anchor's own timbre is the (hard) negative — so the only way to
win the triplet is to encode the melody, not the instrument.

Input: log-mel frames at 16 kHz (96 bands 60–4000 Hz, 40 ms window and hop), each frame
normalized by its own maximum (removes loudness); a 2-D conv stack over (time, frequency) keeps pitch
*position* (no frequency pooling until the end), then attention pooling over time → 192-d, L2-normalized.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from metrics.checkpoint import read_checkpoint
from metrics.errors import InputError
from musiclm_ref.quantize import ResidualVQ

CHECKPOINT_FORMAT = "musiclm-eval/melody/1"
WINDOW_SECONDS = 4


class MelodyError(InputError):
    """A melody checkpoint or input that cannot be used; the message names the file or the problem."""


@dataclass(frozen=True)
class MelodyConfig:
    dim: int = 192
    sample_rate: int = 16000
    n_mels: int = 96
    f_min: float = 60.0
    f_max: float = 4000.0
    n_fft: int = 1024
    win: int = 640
    hop: int = 640
    channels: int = 16
    rvq_levels: int = 24
    rvq_codebook: int = 512  # the paper's 24 × 512; the tiny shipped model uses a smaller codebook


class MelodyEmbedder(nn.Module):
    def __init__(self, cfg: MelodyConfig = MelodyConfig()):
        super().__init__()
        import torchaudio

        self.cfg = cfg
        self.melspec = torchaudio.transforms.MelSpectrogram(
            cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win, hop_length=cfg.hop, f_min=cfg.f_min,
            f_max=cfg.f_max, n_mels=cfg.n_mels, power=2.0, norm="slaney", mel_scale="slaney")
        c = cfg.channels
        self.convs = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1, stride=(2, 1)), nn.GELU(),
            nn.Conv2d(c, c, 3, padding=1), nn.GELU(), nn.MaxPool2d((2, 2)),
            nn.Conv2d(c, c, 3, padding=1), nn.GELU(), nn.MaxPool2d((1, 2)),
        )
        self.frame = nn.Linear(c * (cfg.n_mels // 4), 128)
        self.temporal = nn.Conv1d(128, 128, 5, padding=2)
        self.attn = nn.Linear(128, 1)
        self.out = nn.Linear(128, cfg.dim)
        self.rvq: ResidualVQ | None = None

    def features(self, wave16: Tensor) -> Tensor:
        """[B, N] at 16 kHz → [B, 1, frames, mels] log-mel, each frame relative to its own maximum."""
        m = torch.log(self.melspec(wave16) + 1e-6)  # [B, mels, frames]
        m = m - m.amax(dim=1, keepdim=True)
        return rearrange(m.clamp(min=-12.0) / 12.0 + 1.0, "b f t -> b 1 t f")

    def forward(self, wave16: Tensor) -> Tensor:
        """4 s windows [B, N] at 16 kHz → [B, dim] L2-normalized."""
        h = self.convs(self.features(wave16))  # [B, C, T/4, F/4]
        h = F.gelu(self.frame(rearrange(h, "b c t f -> b t (c f)")))
        h = h + F.gelu(self.temporal(h.transpose(1, 2)).transpose(1, 2))
        w = self.attn(h).softmax(dim=1)
        return F.normalize(self.out((w * h).sum(1)), dim=-1)

    @property
    def device(self) -> torch.device:
        return self.out.weight.device

    # -- inference on whole clips -----------------------------------------------------------------
    def windows(self, wave: np.ndarray, sr: int, starts_seconds: list[int] | None = None) -> Tensor:
        """4 s windows at the given whole-second starts (default: every second) of a clip, at 16 kHz.

        A clip shorter than 4 s is tiled (a melody is a loop); a window past the end wraps around.
        """
        from metrics.audio import resample

        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise MelodyError(f"melody audio must be non-empty 1-D mono, got shape {wave.shape}")
        if not np.isfinite(wave).all():
            raise MelodyError("melody audio contains NaN/Inf samples")
        w = resample(wave, sr, self.cfg.sample_rate) if sr != self.cfg.sample_rate else wave
        size = WINDOW_SECONDS * self.cfg.sample_rate
        seconds = len(w) / self.cfg.sample_rate
        if starts_seconds is None:
            starts_seconds = list(range(0, max(1, int(math.floor(seconds)) - WINDOW_SECONDS + 1)))
        reps = math.ceil((max(starts_seconds) * self.cfg.sample_rate + size) / len(w)) + 1
        tiled = np.tile(w, reps)
        return torch.from_numpy(np.stack([tiled[s * self.cfg.sample_rate : s * self.cfg.sample_rate + size] for s in starts_seconds]))

    @torch.no_grad()
    def embed(self, wave: np.ndarray, sr: int, starts_seconds: list[int] | None = None) -> np.ndarray:
        """[windows, dim] embeddings of 4 s windows of a clip."""
        self.eval()
        x = self.windows(wave, sr, starts_seconds).to(self.device)
        return torch.cat([self(chunk) for chunk in x.split(32)]).cpu().numpy()

    def tokens(self, wave: np.ndarray, sr: int, starts_seconds: list[int] | None = None) -> Tensor:
        """[windows, rvq_levels] melody tokens (the RVQ must be fitted: ``fit_rvq`` or a loaded checkpoint)."""
        if self.rvq is None:
            raise MelodyError("this melody model has no fitted RVQ (call fit_rvq or load a trained checkpoint)")
        return self.rvq.encode(torch.from_numpy(self.embed(wave, sr, starts_seconds)))

    def fit_rvq(self, embeddings: np.ndarray, codebook: int | None = None, iters: int = 20, seed: int = 0) -> ResidualVQ:
        self.rvq = ResidualVQ(self.cfg.dim, self.cfg.rvq_levels, codebook or self.cfg.rvq_codebook).fit(
            torch.as_tensor(embeddings), iters=iters, seed=seed)
        return self.rvq


# -- checkpoints -------------------------------------------------------------------------------------


def save_melody(model: MelodyEmbedder, path: str | Path, metadata: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith(("melspec.", "rvq."))}
    torch.save({"format": CHECKPOINT_FORMAT, "config": asdict(model.cfg), "state_dict": state,
                "rvq": model.rvq.to_dict() if model.rvq is not None else None, "metadata": dict(metadata or {})}, path)
    return path


def load_melody(path: str | Path, device: str = "cpu") -> MelodyEmbedder:
    path = Path(path)
    if path.is_dir():
        path = path / "melody.pt"
    ckpt, sha = read_checkpoint(path, CHECKPOINT_FORMAT, "a melody checkpoint", MelodyError,
                           missing="melody checkpoint not found (train one with `musiclm-eval train melody`)", unreadable="unreadable checkpoint")
    model = MelodyEmbedder(MelodyConfig(**ckpt["config"]))
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    missing = [k for k in missing if not k.startswith("melspec.")]
    if missing or unexpected:
        raise MelodyError(f"{path}: weights do not fit the stored config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if ckpt.get("rvq") is not None:
        model.rvq = ResidualVQ.from_dict(ckpt["rvq"])
    model.metadata = dict(ckpt.get("metadata", {}))
    model.weights_sha256 = sha
    return model.eval().to(device)


# -- training on timbre pairs ------------------------------------------------------------------------


def render_triplets(n: int, seed: int = 0, seconds: float = 8.0, sample_rate: int = 16000) -> dict[str, Tensor]:
    """``n`` specs, each rendered in two timbres: waves [n, 2, samples] (same melody per row)."""
    from musiclm_ref.data import synth

    rng = np.random.default_rng(seed)
    timbres = [t for t in synth.TIMBRES if t != "bass"]
    out = np.zeros((n, 2, int(seconds * sample_rate)), np.float32)
    for i in range(n):
        spec = synth.sample_spec(seed + 7919, i)
        a, b = rng.choice(timbres, 2, replace=False)
        for j, t in enumerate((a, b)):
            out[i, j] = synth.render(synth.with_timbre(spec, str(t)), seconds, sample_rate)
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


def train_melody(model: MelodyEmbedder, train_waves: Tensor, steps: int = 600, batch: int = 24, lr: float = 2e-3,
                 seed: int = 0, progress: bool = True) -> list[float]:
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("rvq")], lr=lr)
    losses = []
    model.train()
    for step in tqdm(range(steps), desc="melody", disable=not progress):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = triplet_loss(model, *triplet_batch(train_waves, batch, model.cfg.sample_rate, g))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses

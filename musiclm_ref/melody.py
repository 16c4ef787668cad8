"""Melody embedding for melody conditioning (MusicLM §3.5): one 192-d vector per 4 s of audio.

The paper trains a small model on pairs of audio with the same melody but different acoustics
(hummed, sung, played) with a triplet loss, then quantizes each embedding with a 24-level RVQ and
concatenates those tokens with the MuLan tokens. Here the pairs come from the procedural corpus: the
same ``ClipSpec`` rendered with two timbres (``musiclm_ref.data.specs.with_timbre``) is a positive
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

from metrics.artifacts import read_checkpoint, save_checkpoint
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

    def to_checkpoint(self, metadata: dict | None = None) -> dict:
        """The checkpoint dict: config, weights (not the mel frontend), the fitted RVQ."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items() if not k.startswith(("melspec.", "rvq."))}
        return {"format": CHECKPOINT_FORMAT, "config": asdict(self.cfg), "state_dict": state,
                "rvq": self.rvq.to_dict() if self.rvq is not None else None, "metadata": dict(metadata or {})}

    @classmethod
    def from_checkpoint(cls, ckpt: dict, source: str = "<dict>") -> MelodyEmbedder:
        """The model of a ``to_checkpoint`` dict (``load_melody`` reads and checks the file)."""
        model = cls(MelodyConfig(**ckpt["config"]))
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
        missing = [k for k in missing if not k.startswith("melspec.")]
        if missing or unexpected:
            raise MelodyError(f"{source}: weights do not fit the stored config (missing {missing[:3]}, unexpected {unexpected[:3]})")
        if ckpt.get("rvq") is not None:
            model.rvq = ResidualVQ.from_dict(ckpt["rvq"])
        model.metadata = dict(ckpt.get("metadata", {}))
        return model


# -- checkpoints -------------------------------------------------------------------------------------


def save_melody(model: MelodyEmbedder, path: str | Path, metadata: dict | None = None) -> Path:
    return save_checkpoint(model.to_checkpoint(metadata), path)


def load_melody(path: str | Path, device: str = "cpu") -> MelodyEmbedder:
    path = Path(path)
    if path.is_dir():
        path = path / "melody.pt"
    ckpt, sha = read_checkpoint(path, CHECKPOINT_FORMAT, "a melody checkpoint", MelodyError,
                           missing="melody checkpoint not found (train one with `musiclm-eval train melody`)", unreadable="unreadable checkpoint")
    model = MelodyEmbedder.from_checkpoint(ckpt, str(path))
    model.weights_sha256 = sha
    return model.eval().to(device)

"""``mel``: a weight-free, deterministic log-mel statistics embedder.

Why it exists: it works everywhere (no TensorFlow, no downloaded weights), so tests, CI and
offline users always have an embedder. Each 1 s window (0.5 s hop) of 16 kHz audio becomes the
per-band mean and standard deviation of its 64-band log-mel spectrogram → 128 dims. Its FAD
values are NOT comparable to published VGGish/TRILL FAD numbers; use it for relative comparisons.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from metrics.embedders import Embedder, EmbedderError


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0
    window_seconds: float = 1.0
    hop_seconds: float = 0.5
    log_floor: float = 1e-6


class MelEmbedder(Embedder):
    name = "mel"

    def __init__(self, cfg: MelConfig = MelConfig(), device: str = "cpu"):
        import torchaudio

        self.cfg = cfg
        self.device = device
        self.sample_rate = cfg.sample_rate
        self.dim = 2 * cfg.n_mels
        self.min_seconds = cfg.window_seconds
        digest = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]
        self.id = f"mel-{digest}"
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
            f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, center=False, power=2.0,
        ).to(device)

    def embed(self, wave: np.ndarray) -> np.ndarray:
        import torch

        win = int(round(self.cfg.window_seconds * self.sample_rate))
        hop = int(round(self.cfg.hop_seconds * self.sample_rate))
        if len(wave) < win:
            return np.zeros((0, self.dim), np.float32)
        x = torch.as_tensor(np.ascontiguousarray(wave, dtype=np.float32), device=self.device)
        windows = x.unfold(0, win, hop)  # [frames, win]
        with torch.no_grad():
            logmel = torch.log(self._mel(windows) + self.cfg.log_floor)  # [frames, n_mels, t]
            out = torch.cat([logmel.mean(-1), logmel.std(-1, unbiased=False)], dim=-1)
        return out.cpu().numpy().astype(np.float32)


def factory(path: str | None = None, device: str = "cpu") -> MelEmbedder:
    if path:
        raise EmbedderError(f"the mel embedder has no weights; --embedder-path {path} does not apply to it")
    return MelEmbedder(device=device)

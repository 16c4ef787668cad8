"""Any torch model as an embedder, from a small self-describing checkpoint.

Checkpoint format (``torch.save`` of a plain dict, read back with ``torch.load(weights_only=True)``
so loading a file never runs code from it)::

    {"format": "musiclm-eval/torch-embedder/1",
     "embedder": {"name": str, "model": "module:Class", "method": "embed_frames",
                  "sample_rate": int, "dim": int, "min_seconds": float, "pad_to_seconds": float | None},
     "config": {...},          # constructor arguments (Class.Config(**config) when Class has a Config)
     "state_dict": {...}}

``model`` must live in a trusted package (``metrics.``/``musiclm_ref.``, see ``TRUSTED_PREFIXES``): the
module is imported by name, and importing is code execution. ``method`` maps ``wave [batch, samples]``
at ``sample_rate`` to ``[batch, frames, dim]`` — a classifier's penultimate layer, an audio tower.
The weights hash in ``id`` is the sha256 of the checkpoint file.

``LogMelConvNet`` is a compact log-mel CNN tagger defined here so tests (and users without a trained
project model) have a real trainable torch embedder.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio
from einops import rearrange
from torch import nn

from metrics.artifacts import read_checkpoint, save_checkpoint
from metrics.embedders import Embedder, EmbedderError

FORMAT = "musiclm-eval/torch-embedder/1"
TRUSTED_PREFIXES = ("metrics.", "musiclm_ref.")


class TorchEmbedder(Embedder):
    """Wrap an ``nn.Module`` whose ``method(wave[b, n]) -> [b, frames, dim]`` gives frame embeddings."""

    def __init__(self, module, *, name: str, id: str, sample_rate: int, dim: int, min_seconds: float = 0.0,
                 pad_to_seconds: float | None = None, method: str = "embed_frames", device: str = "cpu"):
        self.module = module.to(device).eval()
        self.fn = getattr(self.module, method)
        self.name, self.id, self.sample_rate, self.dim = name, id, sample_rate, dim
        self.min_seconds, self.pad_to_seconds, self.device = min_seconds, pad_to_seconds, device

    def embed_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Clips of equal length go through the model together; others one by one."""
        out: list[np.ndarray | None] = [None] * len(waves)
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            by_len.setdefault(len(w), []).append(i)
        with torch.no_grad():
            for idx in by_len.values():
                x = torch.from_numpy(np.stack([np.asarray(waves[i], dtype=np.float32) for i in idx])).to(self.device)
                emb = self.fn(x).float().cpu().numpy()
                if emb.ndim != 3 or emb.shape[-1] != self.dim:
                    raise EmbedderError(f"{self.name}: model returned shape {emb.shape}, expected [batch, frames, {self.dim}]")
                for j, i in enumerate(idx):
                    out[i] = emb[j]
        return out  # type: ignore[return-value]

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.embed_batch([wave])[0]


def _import_model(ref: str):
    module, _, attr = ref.partition(":")
    if not module.startswith(TRUSTED_PREFIXES) or not attr:
        raise EmbedderError(f"model {ref!r} is not in a trusted package ({', '.join(TRUSTED_PREFIXES)}); "
                            "refusing to import it from a checkpoint")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise EmbedderError(f"model class {ref!r} named in the checkpoint cannot be imported: {e}") from e


def build_model(ref: str, config: dict):
    cls = _import_model(ref)
    cfg_cls = getattr(cls, "Config", None)
    return cls(cfg_cls(**config)) if cfg_cls is not None else cls(**config)


def save_embedder_checkpoint(path: str | Path, model, *, name: str, model_ref: str, sample_rate: int, dim: int,
                             min_seconds: float = 0.0, pad_to_seconds: float | None = None,
                             method: str = "embed_frames") -> Path:
    """Write ``model`` in the format above; ``model.cfg`` (a dataclass) is stored as ``config``."""
    cfg = getattr(model, "cfg", {})
    ckpt = {
        "format": FORMAT,
        "embedder": {"name": name, "model": model_ref, "method": method, "sample_rate": int(sample_rate),
                     "dim": int(dim), "min_seconds": float(min_seconds), "pad_to_seconds": pad_to_seconds},
        "config": asdict(cfg) if is_dataclass(cfg) else dict(cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return save_checkpoint(ckpt, path)


def load_torch_embedder(path: str | Path, device: str = "cpu") -> TorchEmbedder:
    path = Path(path)
    ckpt, sha = read_checkpoint(path, FORMAT, "a musiclm-eval embedder checkpoint", EmbedderError,
                                missing="checkpoint not found", unreadable="not a loadable torch checkpoint")
    meta = ckpt["embedder"]
    model = build_model(meta["model"], ckpt.get("config", {}))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise EmbedderError(f"{path}: weights do not fit {meta['model']}: {e}") from None
    return TorchEmbedder(
        model, name=meta["name"], id=f"{meta['name']}-{sha[:16]}", sample_rate=meta["sample_rate"],
        dim=meta["dim"], min_seconds=meta.get("min_seconds", 0.0), pad_to_seconds=meta.get("pad_to_seconds"),
        method=meta.get("method", "embed_frames"), device=device,
    )


def factory(path: str | None = None, device: str = "cpu") -> TorchEmbedder:
    if not path:
        raise EmbedderError("the torch embedder needs a checkpoint: --embedder torch --embedder-path CKPT.pt "
                            "(or --embedder torch:CKPT.pt)")
    return load_torch_embedder(path, device)


# ----------------------------------------------------------------------------- a small trainable model


@dataclass
class LogMelConvConfig:
    sample_rate: int = 16000
    n_mels: int = 64
    window_seconds: float = 1.0
    hop_seconds: float = 0.5
    channels: int = 16
    dim: int = 32
    n_classes: int = 8


class LogMelConvNet(nn.Module):
    """1 s log-mel windows (0.5 s hop) → small CNN → ``dim``-d embedding (penultimate) → tag logits."""

    Config = LogMelConvConfig

    def __init__(self, cfg: LogMelConvConfig):
        super().__init__()
        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=512, win_length=400, hop_length=160, n_mels=cfg.n_mels, center=False)
        c = cfg.channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.to_embed = nn.Linear(2 * c, cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.n_classes)

    @property
    def window(self) -> int:
        return int(round(self.cfg.window_seconds * self.cfg.sample_rate))

    def windows(self, wave: torch.Tensor) -> torch.Tensor:  # [b, n] -> [b, frames, win]
        return wave.unfold(-1, self.window, int(round(self.cfg.hop_seconds * self.cfg.sample_rate)))

    def embed_windows(self, win: torch.Tensor) -> torch.Tensor:  # [b, win] -> [b, dim]
        logmel = torch.log(self.mel(win) + 1e-6)
        h = self.net(rearrange(logmel, "b m t -> b 1 m t"))
        return self.to_embed(rearrange(h, "b c 1 1 -> b c"))

    def embed_frames(self, wave: torch.Tensor) -> torch.Tensor:  # [b, n] -> [b, frames, dim]
        w = self.windows(wave)
        emb = self.embed_windows(rearrange(w, "b f n -> (b f) n"))
        return rearrange(emb, "(b f) d -> b f d", b=w.shape[0])

    def forward(self, win: torch.Tensor) -> torch.Tensor:  # [b, win] -> logits [b, n_classes]
        return self.head(torch.relu(self.embed_windows(win)))

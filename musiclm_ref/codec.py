"""SoundStream-style neural audio codec: the acoustic tokens of MusicLM.

24 kHz mono → convolutional encoder (strides 3·4·5·8 = 480 → exactly 50 frames per second) →
residual VQ with 12 levels (levels 1–4 = MusicLM's coarse tokens, 5–12 = fine) → mirrored
transposed-conv decoder. Trained (``musiclm_ref.train.codec``) with SoundStream's multi-scale mel reconstruction loss plus the RVQ
commitment loss, and SoundStream's *quantizer dropout* (each step uses only the first n_q ~ U{1..12}
levels) so that decoding with fewer levels is meaningful — which is what lets the coarse stage's
output already be listened to.

Not in the tiny training: SoundStream's adversarial (STFT + wave discriminator) and feature-matching
losses. They buy perceptual sharpness at a cost a 2-core CPU cannot pay; the architecture and the
token interface are unaffected. See docs/protocol.md "Reference MusicLM: codec and semantic tokens".
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from metrics.artifacts import (
    read_checkpoint,
)
from metrics.cache import module_sha256
from metrics.errors import InputError
from musiclm_ref.presets import get_preset
from musiclm_ref.quantize import ResidualVQ, RVQConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "musiclm-eval/codec/1"
RESUME_FORMAT = "musiclm-eval/codec-resume/1"  # codec_last.pt: model, optimizer, step, RNG states
SHIPPED_CODEC = Path(__file__).parent / "checkpoints" / "tiny" / "codec.pt"
COARSE_LEVELS = 4  # MusicLM: levels 1–4 coarse, 5–12 fine


class CodecError(InputError):
    """A codec checkpoint or input that cannot be used; the message names the file or the problem."""


@dataclass
class CodecConfig:
    sample_rate: int = 24000
    channels: int = 32  # C: width of the first/last conv; doubles at every stride
    latent_dim: int = 128  # D: the vectors the RVQ quantizes
    strides: tuple[int, ...] = (3, 4, 5, 8)  # product 480 → 50 Hz at 24 kHz
    num_quantizers: int = 12
    codebook_size: int = 1024
    dilations: tuple[int, ...] = (1, 3, 9)
    causal: bool = True  # SoundStream is causal (streamable)
    commitment_weight: float = 1.0
    rvq_decay: float = 0.99
    rvq_dead_threshold: float = 2.0  # EMA vectors/step; SoundStream's 2 assumes large batches
    quantizer_dropout: bool = True
    latent_norm: bool = False  # standardize latents with running statistics before the RVQ (see LatentNorm)
    stft_scales: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    n_mels: int = 64

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def __post_init__(self):
        self.strides = tuple(self.strides)
        self.dilations = tuple(self.dilations)
        self.stft_scales = tuple(self.stft_scales)


def preset(name: str) -> CodecConfig:
    """The codec of a named size (``musiclm_ref.presets``)."""
    return CodecConfig(**get_preset(name, "codec", CodecError).codec)


# -- building blocks ----------------------------------------------------------------------------


class PadConv(nn.Module):
    """Conv1d whose output has exactly ceil(len / stride) frames; causal pads only on the left."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, causal: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation)
        self.pad = dilation * (kernel - 1) - (stride - 1)
        self.causal = causal

    def forward(self, x: Tensor) -> Tensor:
        left = self.pad if self.causal else self.pad // 2
        return self.conv(F.pad(x, (left, self.pad - left)))


class PadConvT(nn.Module):
    """ConvTranspose1d producing exactly len * stride samples (the overhang is trimmed)."""

    def __init__(self, cin: int, cout: int, stride: int, causal: bool = True):
        super().__init__()
        self.conv = nn.ConvTranspose1d(cin, cout, 2 * stride, stride=stride)
        self.stride, self.causal = stride, causal

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)  # (L - 1) * s + 2s = L*s + s
        left = 0 if self.causal else self.stride // 2
        return y[..., left : y.shape[-1] - (self.stride - left)]


class ResidualUnit(nn.Module):
    def __init__(self, ch: int, dilation: int, causal: bool):
        super().__init__()
        self.net = nn.Sequential(PadConv(ch, ch, 7, dilation=dilation, causal=causal), nn.ELU(), nn.Conv1d(ch, ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def encoder_block(cin: int, cout: int, stride: int, cfg: CodecConfig) -> nn.Module:
    units = [ResidualUnit(cin, d, cfg.causal) for d in cfg.dilations]
    return nn.Sequential(*units, nn.ELU(), PadConv(cin, cout, 2 * stride, stride=stride, causal=cfg.causal))


def decoder_block(cin: int, cout: int, stride: int, cfg: CodecConfig) -> nn.Module:
    units = [ResidualUnit(cout, d, cfg.causal) for d in cfg.dilations]
    return nn.Sequential(nn.ELU(), PadConvT(cin, cout, stride, cfg.causal), *units)


class LatentNorm(nn.Module):
    """Per-channel standardization of the latents with running (EMA) mean and variance.

    Why: without it the tiny encoder drifted to latents that were a large constant offset plus a
    small variation (|mean| 4.4 vs std 0.15 per channel after 900 steps); the EMA codebooks lagged
    the drift, all frames fell on 2–3 codes and every level after the first decoded identically.
    Standardized, the drift is absorbed by the statistics and shrinking the variation no longer
    lowers the commitment loss. The statistics move only while the encoder is being trained
    (training mode with gradients on), so a frozen-encoder fine-tune keeps the tokens bit-identical.
    """

    def __init__(self, dim: int, momentum: float = 0.01, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("initted", torch.tensor(False))

    def forward(self, z: Tensor) -> Tensor:  # [B, T, D]
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                m, v = z.mean(dim=(0, 1)), z.var(dim=(0, 1), unbiased=False)
                w = 1.0 if not bool(self.initted) else self.momentum
                self.mean.lerp_(m, w)
                self.var.lerp_(v, w)
                self.initted.fill_(True)
        return (z - self.mean) * torch.rsqrt(self.var + self.eps)


class Encoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        widths = [cfg.channels * 2**i for i in range(len(cfg.strides) + 1)]
        blocks = [encoder_block(a, b, s, cfg) for a, b, s in zip(widths, widths[1:], cfg.strides)]
        self.net = nn.Sequential(
            PadConv(1, cfg.channels, 7, causal=cfg.causal), *blocks, nn.ELU(),
            PadConv(widths[-1], cfg.latent_dim, 3, causal=cfg.causal),
        )
        self.norm = LatentNorm(cfg.latent_dim) if cfg.latent_norm else nn.Identity()

    def forward(self, wave: Tensor) -> Tensor:  # [B, N] → [B, T, D]
        return self.norm(rearrange(self.net(wave[:, None]), "b d t -> b t d"))


class Decoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        widths = [cfg.channels * 2**i for i in range(len(cfg.strides) + 1)][::-1]
        blocks = [decoder_block(a, b, s, cfg) for a, b, s in zip(widths, widths[1:], cfg.strides[::-1])]
        self.net = nn.Sequential(
            PadConv(cfg.latent_dim, widths[0], 7, causal=cfg.causal), *blocks, nn.ELU(),
            PadConv(cfg.channels, 1, 7, causal=cfg.causal),
        )

    def forward(self, z: Tensor) -> Tensor:  # [B, T, D] → [B, T * hop]
        return self.net(rearrange(z, "b t d -> b d t"))[:, 0]


# -- the codec ----------------------------------------------------------------------------------


class Codec(nn.Module):
    """``encode(wave [B, N]) -> codes [B, ceil(N/480), 12]``; ``decode(codes [B, T, n_q]) -> [B, T*480]``."""

    def __init__(self, cfg: CodecConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or CodecConfig()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.rvq = ResidualVQ(config=RVQConfig(
            dim=cfg.latent_dim, num_quantizers=cfg.num_quantizers, codebook_size=cfg.codebook_size,
            decay=cfg.rvq_decay, commitment_weight=cfg.commitment_weight, dead_threshold=cfg.rvq_dead_threshold,
        ))
        self.metadata: dict = {}
        for m in self.modules():  # zero biases: at default init they swamp the signal in the latents
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) and m.bias is not None and not m.bias.is_meta:
                nn.init.zeros_(m.bias)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def num_quantizers(self) -> int:
        return self.cfg.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def device(self) -> torch.device:
        return self.rvq.layers[0].codebook.device

    def _wave(self, wave) -> tuple[Tensor, int]:
        """Validate, batch and right-pad a waveform to whole frames; returns (padded [B, T*hop], T)."""
        wave = torch.as_tensor(wave)
        if wave.ndim == 1:
            wave = wave[None]
        if wave.ndim != 2:
            raise CodecError(f"wave must be [samples] or [batch, samples] mono audio, got shape {tuple(wave.shape)}")
        if not wave.is_floating_point():
            raise CodecError(f"wave must be floating point audio in [-1, 1], got dtype {wave.dtype}")
        if wave.shape[-1] == 0:
            raise CodecError("wave has zero samples")
        if not torch.isfinite(wave).all():
            raise CodecError("wave contains NaN/Inf samples")
        frames = math.ceil(wave.shape[-1] / self.hop_length)
        wave = F.pad(wave.float(), (0, frames * self.hop_length - wave.shape[-1]))
        return wave.to(self.device), frames

    def forward(self, wave: Tensor, n_q: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass: (reconstruction [B, T*hop], codes [B, T, n_q], commitment loss)."""
        wave, _ = self._wave(wave)
        z = self.encoder(wave)
        q, codes, commit = self.rvq(z, n_q=n_q)
        return self.decoder(q), codes, commit

    @torch.no_grad()
    def encode(self, wave, n_q: int | None = None) -> Tensor:
        """wave [B, N] (or [N]) at 24 kHz → codes [B, ceil(N / 480), n_q] long (n_q defaults to 12)."""
        wave, _ = self._wave(wave)
        return self.rvq.encode(self.encoder(wave), n_q=n_q)

    @torch.no_grad()
    def decode(self, codes) -> Tensor:
        """codes [B, T, n_q ≤ 12] (or [T, n_q]) → wave [B, T * 480]; fewer levels = the first levels only."""
        codes = torch.as_tensor(codes)
        if codes.ndim == 2:
            codes = codes[None]
        if codes.ndim != 3:
            raise CodecError(f"codes must be [batch, frames, levels], got shape {tuple(codes.shape)}")
        if codes.is_floating_point():
            raise CodecError(f"codes must be integers, got dtype {codes.dtype}")
        if not 1 <= codes.shape[-1] <= self.num_quantizers:
            raise CodecError(f"codes have {codes.shape[-1]} levels; this codec decodes 1..{self.num_quantizers}")
        if codes.shape[1] == 0:
            raise CodecError("codes have zero frames")
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise CodecError(f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")
        return self.decoder(self.rvq.decode(codes.to(self.device)))

    @torch.no_grad()
    def reconstruct(self, wave, n_q: int | None = None) -> Tensor:
        n = torch.as_tensor(wave).shape[-1]
        return self.decode(self.encode(wave, n_q=n_q))[..., :n]

    # -- checkpoints ----------------------------------------------------------------------------
    def _hash(self, skip_prefix: str | None = None) -> str:
        return module_sha256(self, self.cfg, skip_prefix)

    def weights_hash(self) -> str:
        return self._hash()

    def tokens_hash(self) -> str:
        """sha256 of what decides the tokens and their codewords: config, encoder and codebooks, not
        the decoder. Stages trained on this codec's tokens stay valid after a decoder-only fine-tune."""
        return self._hash(skip_prefix="decoder.")

    @property
    def id(self) -> str:
        return f"codec-{self.weights_hash()[:12]}"

    def to_checkpoint(self, metadata: dict | None = None) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(self.cfg),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "metadata": dict(metadata or self.metadata),
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict, source: str = "<dict>") -> Codec:
        """The codec of a ``to_checkpoint`` dict (``load_codec`` reads and checks the file)."""
        model = cls(CodecConfig(**ckpt["config"]))
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            raise CodecError(f"{source}: weights do not match its config ({e})") from None
        model.metadata = dict(ckpt.get("metadata", {}))
        return model.eval()


def load_codec(path: str | Path | None = None, device: str = "cpu") -> Codec:
    """The codec at ``path`` (a ``codec.pt`` file or a directory holding one); default: the shipped tiny codec."""
    path = Path(path) if path is not None else SHIPPED_CODEC
    if path.is_dir():
        path = path / "codec.pt"
    hint = " (train one with `musiclm-eval train codec`)" if path == SHIPPED_CODEC else ""
    ckpt, _ = read_checkpoint(path, CHECKPOINT_FORMAT, "a codec checkpoint", CodecError,
                              missing=f"codec checkpoint not found{hint}", unreadable="unreadable checkpoint")
    return Codec.from_checkpoint(ckpt, str(path)).to(device)


def count_parameters(cfg: CodecConfig) -> int:
    """Parameters of a codec config, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = Codec(cfg)
    return sum(p.numel() for p in model.parameters())

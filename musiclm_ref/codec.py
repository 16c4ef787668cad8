"""SoundStream-style neural audio codec: the acoustic tokens of MusicLM.

24 kHz mono → convolutional encoder (strides 3·4·5·8 = 480 → exactly 50 frames per second) →
residual VQ with 12 levels (levels 1–4 = MusicLM's coarse tokens, 5–12 = fine) → mirrored
transposed-conv decoder. Trained with SoundStream's multi-scale mel reconstruction loss plus the RVQ
commitment loss, and SoundStream's *quantizer dropout* (each step uses only the first n_q ~ U{1..12}
levels) so that decoding with fewer levels is meaningful — which is what lets the coarse stage's
output already be listened to.

Not in the tiny training: SoundStream's adversarial (STFT + wave discriminator) and feature-matching
losses. They buy perceptual sharpness at a cost a 2-core CPU cannot pay; the architecture and the
token interface are unaffected. See docs/protocol.md "Reference MusicLM: codec and semantic tokens".
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from metrics.artifacts import (
    clips_hash,
    manifest_entry,
    read_checkpoint,
    save_checkpoint,
    split_held_out,
    write_manifest_entry,
)
from metrics.errors import InputError
from metrics.io import file_sha256
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


PRESETS: dict[str, CodecConfig] = {
    # SoundStream's published width (C=32), MusicLM's 12 x 1024 RVQ.
    "paper": CodecConfig(latent_norm=True),
    # Trainable on 2 CPU cores in ~35 min and ships in ~11 MB: half SoundStream's width, codebook 256. The
    # structure (480 hop, 50 Hz, 12 levels, coarse/fine split) is the paper's. Non-causal: MusicLM
    # decodes whole windows, and seeing both sides helps a model this small. A batch holds ~130
    # latents for 256 codes (< 1 per code), so the dead-code threshold scales down with it, and the
    # commitment weight is VQ-VAE's 0.25: at 1.0 the small encoder collapsed to near-constant latents.
    "tiny": CodecConfig(channels=16, latent_dim=64, codebook_size=256, causal=False, commitment_weight=0.25,
                        rvq_dead_threshold=0.05, latent_norm=True),
}


def preset(name: str) -> CodecConfig:
    if name not in PRESETS:
        raise CodecError(f"unknown codec preset {name!r}; choose one of {', '.join(PRESETS)}")
    return CodecConfig(**asdict(PRESETS[name]))


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


class MelLoss(nn.Module):
    """SoundStream's multi-scale spectral reconstruction loss on mel spectrograms.

    For each window length s: L1 on mel magnitudes + sqrt(s/2)·L2 (over bands, mean over frames)
    on log-mels, averaged over scales. Also used (single-scale, as a distance) for evaluation.
    """

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        import torchaudio.functional as AF

        self.scales = cfg.stft_scales
        for s in self.scales:
            n_mels = min(cfg.n_mels, s // 4)
            fb = AF.melscale_fbanks(s // 2 + 1, 0.0, cfg.sample_rate / 2, n_mels, cfg.sample_rate, norm="slaney", mel_scale="slaney")
            self.register_buffer(f"fb{s}", fb, persistent=False)
            self.register_buffer(f"win{s}", torch.hann_window(s), persistent=False)

    def mel(self, x: Tensor, s: int) -> Tensor:
        spec = torch.stft(x, s, hop_length=s // 4, window=getattr(self, f"win{s}"), return_complex=True).abs()
        return rearrange(spec, "b f t -> b t f") @ getattr(self, f"fb{s}")

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = x.new_zeros(())
        for s in self.scales:
            mx, my = self.mel(x, s), self.mel(y, s)
            l1 = (mx - my).abs().mean()
            l2 = (torch.log(mx + 1e-5) - torch.log(my + 1e-5)).pow(2).sum(-1).clamp(min=1e-8).sqrt().mean()
            total = total + l1 + math.sqrt(s / 2) * l2 / mx.shape[-1] ** 0.5
        return total / len(self.scales)


def log_mel_distance(x: Tensor, y: Tensor, sample_rate: int = 24000, n_fft: int = 1024, n_mels: int = 64) -> Tensor:
    """Mean absolute difference of natural-log mel spectrograms (dB-free, floor 1e-5) per batch item.

    The codec's quality figure: 0 for a perfect reconstruction; ~1 means an average factor e
    (≈ 8.7 dB) error per time-frequency bin.
    """
    import torchaudio.functional as AF

    fb = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney").to(x)
    win = torch.hann_window(n_fft, device=x.device)

    def lm(w):
        spec = torch.stft(w, n_fft, hop_length=n_fft // 4, window=win, return_complex=True).abs()
        return torch.log(rearrange(spec, "b f t -> b t f") @ fb + 1e-5)

    return (lm(x) - lm(y)).abs().mean(dim=(1, 2))


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
        h = hashlib.sha256(json.dumps(asdict(self.cfg), sort_keys=True).encode())
        for k, v in sorted(self.state_dict().items()):
            if skip_prefix is None or not k.startswith(skip_prefix):
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

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


# -- training -----------------------------------------------------------------------------------


@dataclass
class CodecTrainConfig:
    steps: int = 2000
    batch_size: int = 8
    crop_seconds: float = 0.32  # 16 frames
    warmup_steps: int = 300  # steps without quantization before the k-means init (0 = init at step 0)
    init_crops: int = 64  # crops whose latents initialise the codebooks (k-means)
    lr: float = 5e-4  # at 2e-3 the C=16 encoder's output scale jumped by 100x within 250 steps
    seed: int = 0
    checkpoint_every: int = 50
    eval_clips: int = 8  # held-out clips scored per level (the first by id; the held-out rule picks them)
    threads: int = 1
    # Optional second phase (fine-tuning): start from an existing codec's weights (``init``); with
    # ``decoder_only`` the encoder, its latent statistics and the codebooks are frozen and only the
    # decoder learns, on the quantized latents with quantizer dropout. The tokens stay the same, so
    # stages trained on them stay valid. ``cosine`` decays the learning rate to 0 over the steps
    # (the shipped codec uses it in its single phase).
    init: str | None = None
    decoder_only: bool = False
    cosine: bool = False
    extra: dict = field(default_factory=dict)


def random_crops(waves: list[Tensor], n: int, length: int, g: torch.Generator) -> Tensor:
    """``n`` random ``length``-sample crops (zero-padded if a clip is shorter) from random clips."""
    out = torch.zeros(n, length)
    for i in range(n):
        w = waves[int(torch.randint(len(waves), (1,), generator=g))]
        start = int(torch.randint(max(1, len(w) - length + 1), (1,), generator=g))
        piece = w[start : start + length]
        out[i, : len(piece)] = piece
    return out


@torch.no_grad()
def evaluate_levels(codec: Codec, waves: list[Tensor], levels=None) -> dict[int, float]:
    """Mean log-mel distance of reconstructions using the first n levels, for each n in ``levels``."""
    codec.eval()
    levels = levels or range(1, codec.num_quantizers + 1)
    out = {}
    codes = [codec.encode(w) for w in waves]
    for n in levels:
        d = [float(log_mel_distance(w[None].to(codec.device), codec.decode(c[..., :n])[..., : len(w)], codec.sample_rate)[0])
             for w, c in zip(waves, codes)]
        out[int(n)] = float(np.mean(d))
    return out


def train_codec(
    data_dir: str | Path,
    out_dir: str | Path,
    preset_name: str = "tiny",
    train: CodecTrainConfig | None = None,
    device: str = "cpu",
    on_error: str = "raise",
    progress: bool = True,
    command: str = "",
    config: CodecConfig | None = None,
) -> dict:
    """Train (or resume) a codec on the clips of ``data_dir``; writes ``out_dir/codec.pt`` + ``manifest.json``.

    Resumes from ``out_dir/codec_last.pt`` (model, optimizer, step, RNG state) when it exists, so an
    interrupted run continues to the same result. ``config`` overrides the preset (tests use a
    micro codec). Returns the manifest entry.
    """
    from tqdm.auto import tqdm

    from metrics.audio import load_dir

    tc = train or CodecTrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(tc.threads)
    report = load_dir(data_dir, sr=24000, on_error=on_error)
    for s in report.skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    clips = report.clips
    train_ids, held_ids = split_held_out(c.id for c in clips)  # the one held-out rule (metrics.artifacts)
    eval_ids = held_ids[: tc.eval_clips]  # never trained on; the first few are scored
    by_id = {c.id: torch.from_numpy(c.wave) for c in clips}
    train_waves = [by_id[i] for i in train_ids]
    eval_waves = [by_id[i] for i in eval_ids]

    last = out / "codec_last.pt"
    g = torch.Generator().manual_seed(tc.seed)
    cfg = config or preset(preset_name)
    if last.exists():
        state, _ = read_checkpoint(last, RESUME_FORMAT, "a codec resume state", CodecError)
        codec = Codec.from_checkpoint(state["model"], str(last)).train()
        if state["model"]["config"] != asdict(cfg):
            raise CodecError(f"{last}: was trained with another config; use a fresh --out or the same --preset")
        step = int(state["step"])
        g.set_state(state["rng"])
        for layer, st in zip(codec.rvq.layers, state["rvq_rng"]):
            layer.generator.set_state(st)
        log.info("resuming from %s at step %d", last, step)
    elif tc.init:
        codec = load_codec(tc.init).train()
        if asdict(codec.cfg) != asdict(cfg):
            raise CodecError(f"{tc.init}: its config differs from preset {preset_name!r}; fine-tune with the same --preset")
        if not bool(codec.rvq.layers[0].initted):
            raise CodecError(f"{tc.init}: its codebooks were never initialised; train it further instead of fine-tuning")
        torch.manual_seed(tc.seed)
        codec.rvq.seed(tc.seed)
        state, step = None, 0
    else:
        torch.manual_seed(tc.seed)
        codec = Codec(cfg).train()
        codec.rvq.seed(tc.seed)
        state, step = None, 0
    warmup = 0 if tc.init else tc.warmup_steps  # an initialised codec needs no autoencoder warm-up
    codec.to(device)
    if tc.decoder_only:
        codec.encoder.requires_grad_(False)
    length = int(round(tc.crop_seconds * codec.sample_rate / codec.hop_length)) * codec.hop_length

    def kmeans_init():  # SoundStream's k-means init, on more latents than one batch holds
        with torch.no_grad():
            z = codec.encoder(random_crops(train_waves, tc.init_crops, length, g).to(device))
        codec.rvq.fit(z.reshape(-1, z.shape[-1]), iters=10, seed=tc.seed)
    opt = torch.optim.Adam([p for p in codec.parameters() if p.requires_grad], lr=tc.lr, betas=(0.9, 0.99))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    loss_fn = MelLoss(codec.cfg).to(device)
    history: list[dict] = list(state["history"]) if state is not None else []

    def save_last():
        save_checkpoint({"format": RESUME_FORMAT, "model": codec.to_checkpoint(), "optimizer": opt.state_dict(), "step": step,
                         "rng": g.get_state(), "rvq_rng": [layer.generator.get_state() for layer in codec.rvq.layers],
                         "history": history}, last)  # fmt: skip

    bar = tqdm(total=tc.steps, initial=step, desc="codec", disable=not progress)
    while step < tc.steps:
        codec.train()
        if tc.cosine:
            for group in opt.param_groups:
                group["lr"] = tc.lr * 0.5 * (1 + math.cos(math.pi * step / tc.steps))
        x = random_crops(train_waves, tc.batch_size, length, g).to(device)
        if tc.decoder_only:
            n_q = int(torch.randint(1, codec.num_quantizers + 1, (1,), generator=g))
            with torch.no_grad():
                q = codec.rvq.decode(codec.rvq.encode(codec.encoder(x), n_q=n_q))
            recon, commit = codec.decoder(q), x.new_zeros(())
        elif step < warmup:  # plain autoencoder first: the RVQ is initialised on informative latents
            recon, commit, n_q = codec.decoder(codec.encoder(x)), x.new_zeros(()), 0
        else:
            if not bool(codec.rvq.layers[0].initted):
                kmeans_init()
            n_q = int(torch.randint(1, codec.num_quantizers + 1, (1,), generator=g)) if codec.cfg.quantizer_dropout else None
            recon, _, commit = codec(x, n_q=n_q)
        rec = loss_fn(recon, x)
        loss = rec + commit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 10.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(rec=f"{rec.item():.3f}", commit=f"{commit.item():.3f}", n_q=n_q)
        if step % 50 == 0:
            history.append({"step": step, "rec": round(rec.item(), 4), "commit": round(commit.item(), 4)})
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            save_last()
    bar.close()
    if not bool(codec.rvq.layers[0].initted):  # stopped inside the warm-up
        kmeans_init()

    codec.eval()
    metrics = {}
    if eval_waves:
        lv = evaluate_levels(codec, eval_waves)
        metrics = {"held_out_clips": len(eval_waves), "log_mel_distance_by_levels": {str(k): round(v, 4) for k, v in lv.items()}}
    entry = manifest_entry(command, tc.seed, clips_hash(clips), metrics=metrics, preset=preset_name, steps=step,
                           data_clips=len(clips), skipped=[f"{s.path}: {s.reason}" for s in report.skipped],
                           train_config=asdict(tc), history=history[-5:],
                           parameters=sum(p.numel() for p in codec.parameters()))
    if tc.init:  # the lineage of a fine-tune: which weights it started from
        entry["init_sha256"] = file_sha256(tc.init)
    codec.metadata = entry
    save_checkpoint(codec.cpu().to_checkpoint(entry), out / "codec.pt")
    entry["weights_sha256"] = codec.weights_hash()
    write_manifest_entry(out / "manifest.json", "codec.pt", entry)
    return entry

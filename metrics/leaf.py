"""LEAF: a learnable audio frontend (Zeghidour et al., ICLR 2021), in compact PyTorch.

The MusicLM paper's KLD classifier sits on LEAF, so the project ships a real one rather than a
mel spectrogram under that name. Four learnable stages, each initialised to behave like a
log-mel frontend so training starts from a sensible place:

1. ``GaborFilterbank`` — complex Gabor 1-D convolution; per filter a centre frequency ``mu`` and
   a bandwidth ``sigma`` (the only parameters), initialised on the mel scale.
2. squared modulus of the complex response (energy per band, like a power spectrogram).
3. ``GaussianLowpass`` — per-channel Gaussian low-pass pooling with a learnable width, strided to
   a 10 ms hop.
4. ``SPCEN`` — per-channel energy normalisation with per-channel learnable smoothing (sPCEN),
   in place of the log.

Parameter constraints (clamps) follow the reference implementation (google-research/leaf-audio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LeafConfig:
    sample_rate: int = 16000
    n_filters: int = 40
    window_len: int = 401  # 25 ms at 16 kHz
    hop: int = 160  # 10 ms at 16 kHz
    # Evaluate the filterbank every ``filter_stride`` samples (1 = textbook LEAF). The squared modulus
    # is a baseband envelope of a few hundred Hz at most and the pooling keeps only ~30 Hz of it, so
    # sampling it at 16 kHz / 4 before pooling changes the output very little
    # (tests/test_classifier.py bounds the difference) and cuts the CPU cost of the 401-tap
    # complex convolution — the dominant cost — by the stride.
    filter_stride: int = 1
    min_freq: float = 60.0
    max_freq: float = 7800.0
    pool_init: float = 0.4  # Gaussian pooling width, relative to half the window
    pcen_alpha: float = 0.96
    pcen_delta: float = 2.0
    pcen_root: float = 2.0
    pcen_smooth: float = 0.04
    pcen_floor: float = 1e-12


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_gabor_init(n_filters: int, sample_rate: int, min_freq: float, max_freq: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre frequencies (rad/sample) and time-domain widths (samples) matching a mel filterbank.

    Filter k of a triangular mel bank spans [f_{k-1}, f_{k+1}], so its full width at half maximum
    is (f_{k+1} - f_{k-1}) / 2. A Gabor filter with time width sigma is a Gaussian of std 1/sigma in
    angular frequency, whose FWHM is 2·sqrt(2 ln 2)/sigma; equating the two gives sigma.
    """
    mels = torch.linspace(hz_to_mel(torch.tensor(min_freq)), hz_to_mel(torch.tensor(max_freq)), n_filters + 2)
    hz = mel_to_hz(mels).double()
    centers = 2 * math.pi * hz[1:-1] / sample_rate
    fwhm = 2 * math.pi * (hz[2:] - hz[:-2]) / 2 / sample_rate
    sigmas = 2 * math.sqrt(2 * math.log(2)) / fwhm
    return centers.float(), sigmas.float()


class GaborFilterbank(nn.Module):
    """Complex Gabor filters phi_k(t) = exp(-t²/2σ_k²)/(√(2π)σ_k) · exp(i μ_k t), t centred on the window."""

    def __init__(self, cfg: LeafConfig):
        super().__init__()
        self.window_len, self.stride = cfg.window_len, cfg.filter_stride
        mu, sigma = mel_gabor_init(cfg.n_filters, cfg.sample_rate, cfg.min_freq, cfg.max_freq)
        self.mu = nn.Parameter(mu)
        self.sigma = nn.Parameter(sigma)
        half = (cfg.window_len - 1) / 2
        self.register_buffer("t", torch.arange(-half, half + 1), persistent=False)
        # Clamps of the reference implementation: centres in [0, π]; widths so that the filter
        # neither exceeds the window nor becomes wider in frequency than the Nyquist band.
        self.sigma_min = 4 * math.sqrt(2 * math.log(2)) / math.pi
        self.sigma_max = cfg.window_len * math.sqrt(2 * math.log(2)) / math.pi

    def kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary impulse responses, each [n_filters, window_len]."""
        mu = self.mu.clamp(0.0, math.pi)[:, None]
        sigma = self.sigma.clamp(self.sigma_min, self.sigma_max)[:, None]
        t = self.t[None, :]
        envelope = torch.exp(-0.5 * (t / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
        return envelope * torch.cos(mu * t), envelope * torch.sin(mu * t)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[batch, samples] → squared modulus [batch, n_filters, ceil(samples / filter_stride)].

        The same sums as ``conv1d(wave, [real; imag], padding=window_len // 2, stride)``, folded:
        the real kernel is even and the imaginary one odd about the centre tap, so each output is
        ``real·(x[+t] + x[-t])`` and ``imag·(x[+t] - x[-t])`` over the half window — half the
        multiply-adds of the convolution, as GEMMs over strided frames (a view, no copy). Time is
        cut into blocks of ~2k frames so the folded frames stay in cache; this runs ~2.5× faster
        than the convolution on CPU, and equals it to float32 rounding (tests/test_classifier.py).
        """
        real, imag = self.kernels()
        h = self.window_len // 2
        centre, even, odd = real[:, h], real[:, h + 1 :].T, imag[:, h + 1 :].T  # taps t = 1..h
        frames = F.pad(wave, (h, h)).unfold(-1, self.window_len, self.stride)  # [batch, out, window]
        block = max(64, 2048 // max(frames.shape[0], 1))
        out = []
        for a in range(0, frames.shape[1], block):
            f = frames[:, a : a + block]
            after, before = f[..., h + 1 :], f[..., :h].flip(-1)  # x[n + t], x[n - t] for t = 1..h
            re = (after + before) @ even + f[..., h : h + 1] * centre
            im = (after - before) @ odd
            out.append(re**2 + im**2)
        return torch.cat(out, dim=1).transpose(1, 2)


class GaussianLowpass(nn.Module):
    """Depthwise Gaussian low-pass pooling with a learnable width per channel, strided to the hop.

    Runs at the filterbank's output rate: with ``filter_stride`` s the window has
    ``window_len // s`` taps (odd) and the stride is ``hop / s``, the same span in seconds.
    """

    def __init__(self, cfg: LeafConfig):
        super().__init__()
        if cfg.hop % cfg.filter_stride:
            raise ValueError(f"hop ({cfg.hop}) must be a multiple of filter_stride ({cfg.filter_stride})")
        self.window_len = (cfg.window_len // cfg.filter_stride) | 1
        self.hop = cfg.hop // cfg.filter_stride
        self.width = nn.Parameter(torch.full((cfg.n_filters,), cfg.pool_init))
        self.register_buffer("n", torch.arange(self.window_len, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = (self.window_len - 1) / 2
        width = self.width.clamp(2.0 / self.window_len, 0.5)[:, None]
        kernel = torch.exp(-0.5 * ((self.n[None, :] - half) / (width * half)) ** 2)
        kernel = kernel / kernel.sum(-1, keepdim=True)  # unit DC gain: the stride does not change the level
        return F.conv1d(x, kernel[:, None, :], stride=self.hop, padding=self.window_len // 2, groups=x.shape[1])


def ema(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Per-channel exponential moving average over time, started at the first frame (as LEAF does).

    M_t = (1 - s) M_{t-1} + s x_t with M_{-1} = x_0. Written as an IIR filter on x - x_0 (zero
    initial state) plus x_0, so torchaudio's C++ ``lfilter`` does the recursion and its gradient
    with respect to the per-channel ``coef`` too.
    """
    import torchaudio.functional as AF

    x0 = x[..., :1]
    s = coef.clamp(0.0, 1.0)
    b = torch.stack([s, torch.zeros_like(s)], dim=-1)
    a = torch.stack([torch.ones_like(s), s - 1.0], dim=-1)
    return AF.lfilter(x - x0, a, b, clamp=False, batching=True) + x0


class SPCEN(nn.Module):
    """sPCEN: (x / (ε + M)^α + δ)^(1/r) - δ^(1/r), with M a per-channel learnable-rate EMA of x."""

    def __init__(self, cfg: LeafConfig):
        super().__init__()
        c = cfg.n_filters
        self.alpha = nn.Parameter(torch.full((c,), cfg.pcen_alpha))
        self.delta = nn.Parameter(torch.full((c,), cfg.pcen_delta))
        self.root = nn.Parameter(torch.full((c,), cfg.pcen_root))
        self.smooth = nn.Parameter(torch.full((c,), cfg.pcen_smooth))
        self.floor = cfg.pcen_floor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.clamp(max=1.0)[:, None]
        root = self.root.clamp(min=1.0)[:, None]
        delta = self.delta[:, None]
        # The EMA of non-negative energies is non-negative, but the IIR form can round to -1e-9,
        # and a negative base to a fractional power is NaN.
        smoothed = ema(x, self.smooth).clamp(min=0.0)
        one_over_root = 1.0 / root
        return (x / (self.floor + smoothed) ** alpha + delta) ** one_over_root - delta**one_over_root


class Leaf(nn.Module):
    """Waveform [batch, samples] at ``cfg.sample_rate`` → [batch, n_filters, frames] (10 ms hop)."""

    def __init__(self, cfg: LeafConfig | None = None):
        super().__init__()
        self.cfg = cfg or LeafConfig()
        self.filterbank = GaborFilterbank(self.cfg)
        self.pooling = GaussianLowpass(self.cfg)
        self.compression = SPCEN(self.cfg)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.compression(self.pooling(self.filterbank(wave)))

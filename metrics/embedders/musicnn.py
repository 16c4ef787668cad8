"""musicnn (Pons & Serra, ISMIR 2019 LBD) in PyTorch: real music taggers that install offline.

Why it exists: every other default model of this project was trained on its own synthetic corpus.
The ``musicnn==0.1.0`` wheel (ISC licence) ships TF1 checkpoints of two taggers trained on real
music — MagnaTagATune (``MTT_musicnn``) and the Million Song Dataset (``MSD_musicnn``), 50 tags
each. ``python -m metrics.convert_musicnn`` turns them into the state dicts shipped under
``metrics/checkpoints/musicnn/``; this module is the exact port of the graph
(``musicnn/models.py: build_musicnn``) and of its pre-processing (``musicnn/extractor.py``).

Front end (as musicnn was trained, librosa 0.7): 16 kHz, periodic Hann STFT (n_fft 512, hop 256,
``center=True`` with *reflect* padding — librosa's default then; it became constant padding in
0.10), power spectrum through librosa's Slaney mel filterbank (96 bands, 0–8 kHz, area
normalization), rounded to float16 as musicnn stores its features, then ``log10(10000·x + 1)``.
musicnn itself multiplies by 10000 *in float16*, which overflows to ``inf`` where the mel power
exceeds 6.55 and poisons the whole patch; we keep the float16 rounding but take the log in float32
(docs/protocol.md). The model sees non-overlapping 3 s patches of 187 frames (``input_length=3``).

Registry names: embedders ``musicnn-mtt`` / ``musicnn-msd`` (the 200-d penultimate layer, one frame
per patch) and classifiers of the same names (50 sigmoid tags, one row of logits per patch).
``Musicnn.frame_features`` / ``run_frames``: the 753 frame-level channels the temporal pooling sees, for a
log-mel sequence of any length (the semantic tokenizer's ``musicnn-msd`` / ``musicnn-mtt`` features).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metrics.embedders import Embedder, EmbedderError

CHECKPOINT_FORMAT = "musiclm-eval/musicnn/1"
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "musicnn"
MODELS = {"musicnn-mtt": "MTT_musicnn", "musicnn-msd": "MSD_musicnn"}  # registry name -> wheel folder
FRONTEND_VERSION = 1  # bump when the front end changes: it is part of the id, hence of cache keys

SR, N_FFT, HOP, N_MELS, PATCH_FRAMES = 16000, 512, 256, 96, 187
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default, read back from the graph


# ---------------------------------------------------------------------------------------- front end


def hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    """Slaney's Auditory Toolbox mel scale (librosa ``htk=False``): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def slaney_filterbank(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS, f_min: float = 0.0,
                      f_max: float | None = None) -> np.ndarray:
    """[n_mels, 1 + n_fft/2] triangular filters on the Slaney mel scale, each scaled to unit area
    (``librosa.filters.mel(norm="slaney")``, which musicnn's ``melspectrogram`` call used)."""
    f_max = sr / 2 if f_max is None else f_max
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(f_min), hz_to_mel_slaney(f_max), n_mels + 2))
    ramps = mel_f[:, None] - fft_freqs[None, :]
    fdiff = np.diff(mel_f)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]


_FILTERBANK = slaney_filterbank()
_WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann (scipy fftbins=True)


def mel_power(wave: np.ndarray) -> np.ndarray:
    """[frames, 96] power mel spectrogram, ``center=True`` with reflect padding (librosa 0.7)."""
    y = np.asarray(wave, dtype=np.float64)
    if y.ndim != 1 or len(y) <= N_FFT // 2:
        raise ValueError(f"musicnn front end needs a mono clip longer than {N_FFT // 2} samples, got shape {y.shape}")
    y = np.pad(y, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2
    return power @ _FILTERBANK.T


def log_mel(wave: np.ndarray) -> np.ndarray:
    """[frames, 96] float32 musicnn input: float16-rounded power mel, log10(10000·x + 1) in float32."""
    rounded = mel_power(wave).astype(np.float32).astype(np.float16).astype(np.float32)
    return np.log10(10000.0 * rounded + 1.0).astype(np.float32)


def patches(logmel: np.ndarray, hop: int = PATCH_FRAMES) -> np.ndarray:
    """[n, 187, 96] patches as musicnn's ``batch_data``: starts 0, hop, … while a whole patch fits
    (the tail shorter than a patch is dropped; a clip shorter than one patch yields none)."""
    starts = range(0, len(logmel) - PATCH_FRAMES + 1, hop)
    if len(starts) == 0:
        return np.zeros((0, PATCH_FRAMES, logmel.shape[1]), np.float32)
    return np.stack([logmel[s : s + PATCH_FRAMES] for s in starts])


MIN_SAMPLES = (PATCH_FRAMES - 1) * HOP  # 1 + len // hop frames must reach 187: 2.976 s


# ---------------------------------------------------------------------------------------- model


def _bn(c: int, dims: int = 2) -> nn.Module:
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(c, eps=BN_EPS)


class ConvBN(nn.Module):
    """conv → ReLU → batch norm, in that order (musicnn puts the BN after the activation)."""

    def __init__(self, conv: nn.Module, channels: int, dims: int):
        super().__init__()
        self.conv, self.bn = conv, _bn(channels, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


@dataclass(frozen=True)
class MusicnnConfig:
    n_classes: int = 50
    n_mels: int = N_MELS
    timbral_filters: int = 204  # int(1.6 * 128)
    temporal_filters: int = 51  # int(1.6 * 32)
    midend_filters: int = 64
    backend_units: int = 200


class Musicnn(nn.Module):
    """``build_musicnn`` with ``7774timbraltemporal`` front end, dense mid-end, global-pool back end.

    Input [batch, 187, 96] log-mel patches; output (logits [batch, classes], penultimate [batch, 200]).
    Module names map one to one onto the TF variables (``convert_musicnn.TF_NAMES``).
    """

    def __init__(self, cfg: MusicnnConfig = MusicnnConfig()):
        super().__init__()
        self.cfg = cfg
        f, t, m = cfg.timbral_filters, cfg.temporal_filters, cfg.midend_filters
        self.bn_input = _bn(1)
        # timbral: (7 × 0.4·96) and (7 × 0.7·96) kernels, time padded by 3, max over frequency
        self.timbral = nn.ModuleList([ConvBN(nn.Conv2d(1, f, (7, int(k * cfg.n_mels))), f, 2) for k in (0.4, 0.7)])
        # temporal: (128|64|32 × 1) kernels, TF "same" padding in time, max over frequency
        self.temporal = nn.ModuleList([ConvBN(nn.Conv2d(1, t, (k, 1)), t, 2) for k in (128, 64, 32)])
        front = 2 * f + 3 * t
        # mid-end: the TF conv2d over [time, features, 1] with kernel [7, features] is a Conv1d
        self.midend = nn.ModuleList([ConvBN(nn.Conv1d(c, m, 7), m, 1) for c in (front, m, m)])
        pooled = 2 * (front + 3 * m)
        self.bn_pool = _bn(pooled, 1)
        self.dense = nn.Linear(pooled, cfg.backend_units)
        self.bn_dense = _bn(cfg.backend_units, 1)
        self.out = nn.Linear(cfg.backend_units, cfg.n_classes)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """[b, 753, time] frame-level features of log-mels [b, time, 96] of any length (62.5 Hz frames):
        what the temporal pooling sees — the front end (2 timbral × 204 + 3 temporal × 51 = 561 channels,
        each max over frequency) followed by the three mid-end layers (3 × 64). Every layer before the
        pooling is a "same"-padded convolution in time, so the sequence keeps its length."""
        x = self.bn_input(x.unsqueeze(1))  # [b, 1, time, freq]
        feats = [blk(F.pad(x, (0, 0, 3, 3))).amax(dim=-1) for blk in self.timbral]
        for blk in self.temporal:
            k = blk.conv.kernel_size[0]
            feats.append(blk(F.pad(x, (0, 0, (k - 1) // 2, k // 2))).amax(dim=-1))
        front = torch.cat(feats, dim=1)  # [b, 561, time]
        layers = [front]
        h = self.midend[0](F.pad(front, (3, 3)))
        layers.append(h)
        for blk in self.midend[1:]:
            h = blk(F.pad(h, (3, 3))) + h
            layers.append(h)
        return torch.cat(layers, dim=1)  # [b, 753, time]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mid = self.frame_features(x)  # [b, 753, time]
        # TF concatenates [max, mean] on a trailing axis, then flattens: interleaved max0, mean0, max1, …
        pooled = torch.stack([mid.amax(dim=-1), mid.mean(dim=-1)], dim=-1).flatten(1)
        penultimate = self.bn_dense(F.relu(self.dense(self.bn_pool(pooled))))
        return self.out(penultimate), penultimate


# ---------------------------------------------------------------------------------------- weights


@dataclass
class LoadedMusicnn:
    name: str
    model: Musicnn
    labels: tuple[str, ...]
    path: str
    weights_sha256: str
    meta: dict


def checkpoint_path(name: str) -> Path:
    if name not in MODELS:
        raise EmbedderError(f"unknown musicnn model {name!r}; expected one of {', '.join(MODELS)}")
    return CHECKPOINT_DIR / f"{MODELS[name]}.pt"


def load_musicnn(name: str, path: str | Path | None = None, device: str = "cpu") -> LoadedMusicnn:
    """The shipped converted checkpoint of ``name`` (or ``path``); errors name the file."""
    from metrics.artifacts import read_checkpoint

    p = Path(path) if path else checkpoint_path(name)
    ckpt, sha = read_checkpoint(p, CHECKPOINT_FORMAT, "a converted musicnn checkpoint", EmbedderError,
                                missing="musicnn checkpoint not found (run `python -m metrics.convert_musicnn`)")
    model = Musicnn(MusicnnConfig(**ckpt["config"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise EmbedderError(f"{p}: weights do not fit the musicnn architecture ({e})") from None
    labels = tuple(ckpt["labels"])
    if len(labels) != model.cfg.n_classes:
        raise EmbedderError(f"{p}: {len(labels)} labels for {model.cfg.n_classes} outputs")
    return LoadedMusicnn(name, model.eval().to(device), labels, str(p), sha, ckpt.get("meta", {}))


@torch.no_grad()
def run_patches(loaded: LoadedMusicnn, x: np.ndarray, device: str = "cpu", batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(logits [n, classes], penultimate [n, 200]) of log-mel patches [n, 187, 96], float32."""
    outs = [loaded.model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])).to(device)) for i in range(0, len(x), batch)]
    if not outs:
        return np.zeros((0, loaded.model.cfg.n_classes), np.float32), np.zeros((0, loaded.model.cfg.backend_units), np.float32)
    return tuple(torch.cat([o[j] for o in outs]).cpu().numpy() for j in (0, 1))  # type: ignore[return-value]


@torch.no_grad()
def run_frames(loaded: LoadedMusicnn, logmel: np.ndarray, device: str = "cpu") -> np.ndarray:
    """[frames, 753] float32 frame-level features (``Musicnn.frame_features``) of one whole log-mel sequence [frames, 96]."""
    x = torch.from_numpy(np.ascontiguousarray(logmel, dtype=np.float32))[None].to(device)
    return loaded.model.frame_features(x)[0].T.contiguous().cpu().numpy()


def clip_log_mel(wave: np.ndarray, sr: int = SR) -> np.ndarray:
    """[frames, 96] musicnn log-mels of a clip at ``sr``, resampled to 16 kHz first (the project's filter)."""
    from metrics.audio import resample

    return log_mel(resample(np.asarray(wave, np.float32), sr, SR))


def clip_patches(wave: np.ndarray, sr: int = SR) -> np.ndarray:
    """Resample (the project's filter) and cut a clip into log-mel patches [n, 187, 96]."""
    return patches(clip_log_mel(wave, sr))


# ---------------------------------------------------------------------------------------- registry


class MusicnnHeads(Embedder):
    """What the embedder and the tagger share: one checkpoint, one front end, one forward per batch of clips
    giving both heads (``shared_forward``), so a run that uses musicnn-mtt in both roles pays for it once."""

    sample_rate = SR
    min_seconds = MIN_SAMPLES / SR

    def __init__(self, name: str, path: str | None = None, device: str = "cpu"):
        self.loaded = load_musicnn(name, path, device)
        self.name, self.device = name, device
        self.shared_forward = f"musicnn:{self.loaded.weights_sha256}:fe{FRONTEND_VERSION}:{device}"

    def embed_heads(self, waves: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        """``{"logits": [[patches, classes]], "penultimate": [[patches, 200]]}``, the clips' patches in one batch."""
        cut = [patches(log_mel(w)) for w in waves]
        heads = run_patches(self.loaded, np.concatenate(cut), self.device)
        bounds = np.cumsum([0] + [len(c) for c in cut])
        return {head: [out[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
                for head, out in zip(("logits", "penultimate"), heads)}

    def embed_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return self.embed_heads(waves)[self.head]


class MusicnnEmbedder(MusicnnHeads):
    """``musicnn-mtt`` / ``musicnn-msd``: the 200-d penultimate layer of each 3 s patch."""

    head = "penultimate"

    def __init__(self, name: str, path: str | None = None, device: str = "cpu"):
        super().__init__(name, path, device)
        self.dim = self.loaded.model.cfg.backend_units
        self.id = f"{name}-{self.loaded.weights_sha256[:16]}-fe{FRONTEND_VERSION}"

    @property
    def config(self) -> dict:
        return {**super().config, "layer": "penultimate", "patch_seconds": PATCH_FRAMES * HOP / SR, "patch_hop_frames": PATCH_FRAMES}

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.embed_batch([wave])[0]


class MusicnnTagger(MusicnnHeads):
    """``musicnn-mtt`` / ``musicnn-msd`` as a KLD classifier: one row of 50 tag logits per 3 s patch.

    The shape of the pipeline's classifiers (``metrics.classifier.ClassifierLogits``): ``embed`` gives
    window logits ``[patches, labels]`` with ``labels``, ``label_space``, ``activation`` ("sigmoid":
    musicnn's output layer) and ``weights_sha256``; KLD takes the sigmoid of each row and averages
    over the clip's patches (the window mean). ``tag`` is that mean, by tag name.
    """

    activation = "sigmoid"
    head = "logits"

    def __init__(self, name: str, path: str | None = None, device: str = "cpu"):
        from metrics.classifier import LabelSpace

        super().__init__(name, path, device)
        self.path, self.weights_sha256 = self.loaded.path, self.loaded.weights_sha256
        self.labels = self.loaded.labels
        self.label_space = LabelSpace(name, self.labels)
        self.dim = len(self.labels)
        self.window_seconds = PATCH_FRAMES * HOP / SR
        self.id = f"{name}-logits-{self.weights_sha256[:16]}-fe{FRONTEND_VERSION}"

    def embed(self, wave: np.ndarray) -> np.ndarray:
        """Mono float32 at 16 kHz → [patches, 50] logits (no patch for a clip under 2.976 s)."""
        return run_patches(self.loaded, patches(log_mel(wave)), self.device)[0]

    def window_logits(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """[patches, 50] logits of a clip at ``sr`` (resampled to 16 kHz first)."""
        x = clip_patches(wave, sr)
        if len(x) == 0:
            raise ValueError(f"{self.name}: the clip is shorter than one {MIN_SAMPLES / SR:.3f} s patch")
        return run_patches(self.loaded, x, self.device)[0]

    def tag(self, wave: np.ndarray, sr: int) -> dict[str, float]:
        """Mean sigmoid probability of each tag over the clip's patches."""
        return self.probabilities(self.window_logits(wave, sr))

    def probabilities(self, logits: np.ndarray) -> dict[str, float]:
        """``tag``'s answer from window logits already computed (e.g. the cached outputs of a ``compare``)."""
        z = np.asarray(logits, dtype=np.float64)
        return dict(zip(self.labels, map(float, (1.0 / (1.0 + np.exp(-z))).mean(axis=0))))


def mtt(path: str | None = None, device: str = "cpu") -> MusicnnEmbedder:
    return MusicnnEmbedder("musicnn-mtt", path, device)


def msd(path: str | None = None, device: str = "cpu") -> MusicnnEmbedder:
    return MusicnnEmbedder("musicnn-msd", path, device)


def load_tagger(name: str, path: str | None = None, device: str = "cpu") -> MusicnnTagger:
    return MusicnnTagger(name, path, device)


def mtt_logits(path: str | None = None, device: str = "cpu") -> MusicnnTagger:
    """Classifier-registry factory for ``musicnn-mtt``."""
    return MusicnnTagger("musicnn-mtt", path, device)


def msd_logits(path: str | None = None, device: str = "cpu") -> MusicnnTagger:
    """Classifier-registry factory for ``musicnn-msd``."""
    return MusicnnTagger("musicnn-msd", path, device)


def tag_files(paths: list[str], name: str = "musicnn-mtt", device: str = "cpu", on_error: str = "raise",
              path: str | None = None) -> tuple[dict[str, dict[str, float]], list[tuple[str, str]]]:
    """``{file: {tag: mean probability}}`` for each audio file, and the ``(file, problem)`` pairs skipped.

    Behind ``musiclm-eval tag``. A file that cannot be decoded, or is shorter than one 2.976 s patch,
    is an ``AudioError`` naming it, or (``on_error="skip"``) a skipped entry the caller reports.
    """
    from metrics.audio import AudioError, load_audio

    tagger = load_tagger(name, path, device)
    out, skipped = {}, []
    for p in paths:
        try:
            clip = load_audio(p, sr=SR, min_seconds=MIN_SAMPLES / SR)
        except AudioError as e:
            if on_error != "skip":
                raise
            skipped.append((str(p), e.problem))
            continue
        out[str(p)] = tagger.tag(clip.wave, SR)
    return out, skipped

"""Semantic tokens: 25 Hz frames of a feature extractor → nearest of K k-means centroids.

MusicLM takes w2v-BERT's 7th-layer activations at 25 Hz and quantizes them with k-means (K = 1024).
Three feature extractors implement that interface here:

* ``HFFeatures(path, layer)`` — the real path: any local ``transformers`` speech model
  (wav2vec2, HuBERT, w2v-BERT, …) loaded with ``AutoModel.from_pretrained(dir)``; the chosen hidden
  state (``output_hidden_states``), audio resampled to 16 kHz, frames average-pooled to 25 Hz.
* ``LogMelFeatures`` — the offline default: a fixed 64-band log-mel spectrogram (80 ms window,
  40 ms hop at 16 kHz → 25 Hz) stacked with its deltas (128-d). Why: it needs no weights, so a fresh
  clone tokenizes with nothing downloaded; it is deterministic and exactly reproducible; and it keeps
  what k-means needs to form a useful vocabulary on the procedural corpus (spectral envelope =
  timbre and register, deltas = onsets and note changes). What it is not: *semantic* in the
  w2v-BERT sense — its tokens are closer to coarse acoustic units. Numbers computed with it are
  labelled by the tokenizer ``id`` and must not be compared with w2v-BERT-token results.
* ``MusicnnFeatures(name)`` — ``musicnn-msd`` / ``musicnn-mtt``: the frame-level activations of musicnn
  (``metrics/embedders/musicnn.py``, weights shipped), the 753 channels its temporal pooling sees (front
  end 561 + mid-end 3 × 64) at 62.5 Hz over the whole clip, average-pooled to 25 Hz. Why: a network trained
  to tag real music (the Million Song Dataset / MagnaTagATune) carries structure — instrument, genre,
  rhythm — that k-means over raw log-mels does not, and the max over frequency of its front-end filters
  makes those largely pitch-invariant, which is what "semantic" tokens should be (the melody and the exact
  spectrum are the acoustic tokens' job). What it is not: w2v-BERT — a small supervised tagger, not a
  self-supervised model of audio; its tokens are labelled ``semantic-musicnn-…`` in every id.

Features are centred (per-dimension mean of the training frames) and scaled by one standard
deviation per feature group (log-mels, deltas; all of a hidden state) before k-means, so neither
group dominates the distance while near-silent bands are not blown up to the level of loud ones
(musicnn: front end, mid-end). The memorization audit resolves ``semantic-ref`` to ``load_tokenizer``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metrics.artifacts import read_checkpoint, save_checkpoint
from metrics.audio import resample
from metrics.errors import InputError
from musiclm_ref.quantize import nearest

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "musiclm-eval/semantic/1"
SHIPPED_TOKENIZER = Path(__file__).parent / "checkpoints" / "tiny" / "semantic_tokenizer.pt"
FRAME_RATE = 25
FEATURE_SR = 16000
HOP = FEATURE_SR // FRAME_RATE  # 640 samples at 16 kHz

# The log-mel tokenizer: the model's until issue 31, kept as what the memorization audit's ``semantic-ref`` means
# (its calibration and committed figures were measured with it; the model's musicnn tokenizer is `--tokenizer PATH`).
MEMORIZATION_TOKENIZER = SHIPPED_TOKENIZER.with_name("semantic_tokenizer_logmel.pt")
# What the memorization audit resolves lazily under the name ``semantic-ref``.
MEMORIZATION = "musiclm_ref.semantic:load_memorization_tokenizer"


class SemanticError(InputError):
    """A tokenizer checkpoint, model directory or input that cannot be used; names the file/problem."""


def n_frames(n_samples: int, sr: int) -> int:
    """Tokens for ``n_samples`` at ``sr``: ceil(duration × 25) — 250 for 10 s, the codec's 500 / 2."""
    return max(1, -(-n_samples * FRAME_RATE // sr))


def check_wave(wave, sr) -> np.ndarray:
    wave = np.asarray(wave)
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise SemanticError(f"sample rate must be a positive integer, got {sr!r}")
    if wave.ndim != 1:
        raise SemanticError(f"wave must be a 1-D mono array, got shape {wave.shape}")
    if wave.size == 0:
        raise SemanticError("wave has zero samples")
    if not np.issubdtype(wave.dtype, np.floating):
        raise SemanticError(f"wave must be floating point audio in [-1, 1], got dtype {wave.dtype}")
    if not np.isfinite(wave).all():
        raise SemanticError("wave contains NaN/Inf samples")
    return wave.astype(np.float32, copy=False)


def _to_frames(wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """Resample to 16 kHz and zero-pad to exactly T × 640 samples."""
    t = n_frames(len(wave), sr)
    w16 = resample(wave, sr, FEATURE_SR)[: t * HOP]
    return np.pad(w16, (0, t * HOP - len(w16))), t


# -- feature extractors -------------------------------------------------------------------------


@dataclass(frozen=True)
class LogMelConfig:
    n_fft: int = 1280  # 80 ms: each frame sees its 40 ms hop plus half of each neighbour
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 8000.0
    delta_win: int = 5
    log_floor: float = 1e-5


class LogMelFeatures:
    """Fixed log-mel + delta stack at 25 Hz (the offline default; see the module docstring)."""

    kind = "logmel"

    def __init__(self, cfg: LogMelConfig = LogMelConfig()):
        import torchaudio

        self.cfg = cfg
        self.dim = 2 * cfg.n_mels
        self.groups = (cfg.n_mels, cfg.n_mels)
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=FEATURE_SR, n_fft=cfg.n_fft, hop_length=HOP, f_min=cfg.f_min, f_max=cfg.f_max,
            n_mels=cfg.n_mels, center=True, pad_mode="constant", power=2.0,
        )
        self.id = "logmel-" + hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:8]

    @torch.no_grad()
    def __call__(self, wave: np.ndarray, sr: int) -> np.ndarray:
        import torchaudio.functional as AF

        w16, t = _to_frames(wave, sr)
        x = F.pad(torch.from_numpy(w16), (HOP // 2, 0))  # frame t is centred on its 40 ms segment
        logmel = torch.log(self._mel(x) + self.cfg.log_floor)[:, :t]  # [n_mels, T]
        delta = AF.compute_deltas(logmel[None], win_length=self.cfg.delta_win)[0]
        return torch.cat([logmel, delta]).T.contiguous().numpy()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "config": asdict(self.cfg)}


def _pool(frames: torch.Tensor, t: int) -> np.ndarray:
    """[T_model, D] features at the model's frame rate → [t, D] float32 at 25 Hz (average pooling)."""
    return F.adaptive_avg_pool1d(frames.T[None].float(), t)[0].T.cpu().contiguous().numpy()


class MusicnnFeatures:
    """musicnn's frame-level activations (front end + mid-end, 753 channels) pooled to 25 Hz (module docstring).

    The clip is resampled to 16 kHz and passed whole through musicnn's own front end (``clip_log_mel``: what
    ``clip_patches`` cuts into 3 s patches) and its convolutions, then average-pooled to ``n_frames`` frames.
    """

    kind = "musicnn"

    def __init__(self, name: str = "musicnn-msd", device: str = "cpu"):
        from metrics.embedders import EmbedderError
        from metrics.embedders.musicnn import FRONTEND_VERSION, load_musicnn

        try:
            self.loaded = load_musicnn(name, device=device)
        except EmbedderError as e:
            raise SemanticError(f"musicnn features {name!r}: {e}") from None
        cfg = self.loaded.model.cfg
        front = 2 * cfg.timbral_filters + 3 * cfg.temporal_filters
        self.name, self.device, self.frontend_version = name, device, FRONTEND_VERSION
        self.groups = (front, 3 * cfg.midend_filters)  # (561, 192): front end, mid-end
        self.dim = sum(self.groups)
        self.weights_sha256 = self.loaded.weights_sha256
        self.id = f"{name}-frames-{self.weights_sha256[:16]}-fe{FRONTEND_VERSION}"

    def __call__(self, wave: np.ndarray, sr: int) -> np.ndarray:
        from metrics.embedders.musicnn import N_FFT, SR, clip_log_mel, run_frames

        n16 = -(-len(wave) * SR // sr)  # the resampler's output length
        if n16 <= N_FFT // 2:
            raise SemanticError(f"{self.name}: a clip of {len(wave)} samples at {sr} Hz is too short for musicnn's STFT: "
                                f"its {N_FFT}-sample window with reflect padding needs more than {N_FFT // 2} samples at "
                                f"{SR} Hz ({N_FFT // 2 / SR * 1000:.0f} ms)")
        frames = run_frames(self.loaded, clip_log_mel(wave, sr), self.device)  # [1 + n16 // 256, 753]
        return _pool(torch.from_numpy(frames), n_frames(len(wave), sr))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "weights_sha256": self.weights_sha256,
                "frontend_version": self.frontend_version}


def _hash_model_dir(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin") or f.name.endswith(".model")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


class HFFeatures:
    """Hidden state ``layer`` of a local ``transformers`` speech model, pooled to 25 Hz.

    ``layer`` indexes ``output_hidden_states`` (0 = the input embeddings, i = after block i), so the
    paper's "7th layer of w2v-BERT" is ``layer=7``. If the directory has a feature-extractor config
    it is used (w2v-BERT needs its fbank front end); otherwise raw 16 kHz samples normalized to zero
    mean / unit variance go in as ``input_values`` (wav2vec2's convention).
    """

    kind = "hf"

    def __init__(self, path: str | Path, layer: int = 7, device: str = "cpu"):
        path = Path(path)
        if not path.is_dir():
            raise SemanticError(f"{path}: not a directory holding a transformers model (config.json + weights)")
        if not (path / "config.json").exists():
            raise SemanticError(f"{path}: no config.json; expected a directory written by save_pretrained")
        try:
            from transformers import AutoModel
        except ImportError as e:
            raise SemanticError(f"{path}: the transformers package is needed for HF features ({e})") from None
        try:
            self.model = AutoModel.from_pretrained(str(path)).eval().to(device)
        except Exception as e:
            raise SemanticError(f"{path}: cannot load transformers model ({type(e).__name__}: {e})") from None
        n_layers = int(getattr(self.model.config, "num_hidden_layers", 0))
        if not isinstance(layer, (int, np.integer)) or not 0 <= layer <= n_layers:
            raise SemanticError(f"{path}: layer {layer!r} out of range; this model has hidden states 0..{n_layers}")
        self.extractor = None
        if (path / "preprocessor_config.json").exists():
            from transformers import AutoFeatureExtractor

            self.extractor = AutoFeatureExtractor.from_pretrained(str(path))
        self.path, self.layer, self.device = path, int(layer), device
        self.dim = int(self.model.config.hidden_size)
        self.groups = (self.dim,)
        self.weights_sha256 = _hash_model_dir(path)
        self.id = f"hf-{self.model.config.model_type}-L{self.layer}-{self.weights_sha256[:12]}"

    @torch.no_grad()
    def __call__(self, wave: np.ndarray, sr: int) -> np.ndarray:
        w16, t = _to_frames(wave, sr)
        if self.extractor is not None:
            inputs = dict(self.extractor(w16, sampling_rate=FEATURE_SR, return_tensors="pt"))
        else:
            x = torch.from_numpy(w16)
            inputs = {"input_values": ((x - x.mean()) / (x.std() + 1e-7))[None]}
        inputs = {k: v.to(self.device) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        hidden = self.model(**inputs, output_hidden_states=True).hidden_states[self.layer][0]  # [T_model, D]
        return _pool(hidden, t)  # model frame rate → 25 Hz

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "layer": self.layer, "weights_sha256": self.weights_sha256}


def features_from_dict(d: dict, hf_path: str | Path | None = None, device: str = "cpu"):
    if d["kind"] == "logmel":
        return LogMelFeatures(LogMelConfig(**d["config"]))
    if d["kind"] == "hf":
        path = Path(hf_path or d["path"])
        feats = HFFeatures(path, d["layer"], device)
        if feats.weights_sha256 != d["weights_sha256"]:
            raise SemanticError(f"{path}: model weights differ from the ones this tokenizer was fitted on "
                                f"(sha256 {feats.weights_sha256[:12]} ≠ {d['weights_sha256'][:12]})")
        return feats
    if d["kind"] == "musicnn":
        feats = MusicnnFeatures(d["name"], device)
        for what, have, want in (("weights", feats.weights_sha256, d["weights_sha256"]),
                                 ("front end version", str(feats.frontend_version), str(d["frontend_version"]))):
            if have != want:
                raise SemanticError(f"{feats.loaded.path}: musicnn {what} differ from the ones this tokenizer was fitted on "
                                    f"({have[:12]} ≠ {want[:12]})")
        return feats
    raise SemanticError(f"unknown feature extractor kind {d['kind']!r}")


# -- the tokenizer ------------------------------------------------------------------------------


class SemanticTokenizer:
    """``tokenize(wave, sr) -> int64 [ceil(seconds × 25)]`` in ``[0, vocab_size)``."""

    frame_rate = FRAME_RATE

    def __init__(self, features, centroids: np.ndarray, mean: np.ndarray, std: np.ndarray, metadata: dict | None = None):
        self.features = features
        self.centroids = np.asarray(centroids, dtype=np.float32)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.centroids.ndim != 2 or self.centroids.shape[1] != features.dim:
            raise SemanticError(f"centroids must be [K, {features.dim}], got {self.centroids.shape}")
        self.metadata = dict(metadata or {})
        self._c = torch.from_numpy(self.centroids)
        h = hashlib.sha256(features.id.encode())
        for a in (self.centroids, self.mean, self.std):
            h.update(np.ascontiguousarray(a).tobytes())
        self.weights_sha256 = h.hexdigest()
        self.id = f"semantic-{features.id}-k{self.vocab_size}-{self.weights_sha256[:12]}"

    @property
    def vocab_size(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def embed(self, wave, sr: int) -> np.ndarray:
        """Standardized features [T, D] at 25 Hz (what k-means clusters)."""
        return ((self.features(check_wave(wave, sr), int(sr)) - self.mean) / self.std).astype(np.float32)

    def tokenize(self, wave, sr: int) -> np.ndarray:
        """Mono wave (any sample rate) → int64 token ids, one per 40 ms."""
        feats = torch.from_numpy(self.embed(wave, sr))
        return nearest(feats, self._c).numpy().astype(np.int64)

    __call__ = tokenize

    def save(self, path: str | Path) -> Path:
        return save_checkpoint({
            "format": CHECKPOINT_FORMAT, "features": self.features.to_dict(),
            "centroids": torch.from_numpy(self.centroids), "mean": torch.from_numpy(self.mean),
            "std": torch.from_numpy(self.std), "metadata": self.metadata,
        }, path)

    @classmethod
    def load(cls, path: str | Path, hf_path: str | Path | None = None, device: str = "cpu") -> SemanticTokenizer:
        path = Path(path)
        if path.is_dir():
            path = path / "semantic_tokenizer.pt"
        d, _ = read_checkpoint(path, CHECKPOINT_FORMAT, "a semantic tokenizer checkpoint", SemanticError,
                               unreadable="unreadable checkpoint")
        feats = features_from_dict(d["features"], hf_path, device)
        return cls(feats, d["centroids"].numpy(), d["mean"].numpy(), d["std"].numpy(), d.get("metadata"))

    def __repr__(self) -> str:
        return f"SemanticTokenizer(id={self.id!r}, vocab_size={self.vocab_size}, frame_rate={self.frame_rate})"


def load_tokenizer(path: str | Path | None = None, hf_path: str | Path | None = None, device: str = "cpu") -> SemanticTokenizer:
    """The tokenizer at ``path`` (file or checkpoint directory); default: the shipped tiny one."""
    path = Path(path) if path is not None else SHIPPED_TOKENIZER
    if path in (SHIPPED_TOKENIZER, MEMORIZATION_TOKENIZER) and not path.exists():
        raise SemanticError(f"{path}: shipped semantic tokenizer not found (train one with `musiclm-eval train semantic`)")
    return SemanticTokenizer.load(path, hf_path, device)


def load_memorization_tokenizer(path: str | Path | None = None, hf_path: str | Path | None = None,
                                device: str = "cpu") -> SemanticTokenizer:
    """``semantic-ref``: the tokenizer at ``path``, default the shipped log-mel one (``MEMORIZATION_TOKENIZER``)."""
    return load_tokenizer(MEMORIZATION_TOKENIZER if path is None else path, hf_path, device)

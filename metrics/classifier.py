"""The KLD classifier: LEAF frontend + compact CNN, multi-label (sigmoid) heads, with its label space.

The paper's classifier weights are not public, so the project trains this one on its procedural
corpus (``musiclm-eval train classifier``) and ships it; a user with an AudioSet-trained checkpoint of
the same architecture loads it with the 527-class label space. Every checkpoint stores its label
space, and loading checks it against the one the caller expects — scoring with a classifier whose
outputs mean different classes than you think would be a silent wrong number.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from metrics.artifacts import read_checkpoint, save_checkpoint
from metrics.embedders import Embedder
from metrics.errors import InputError
from metrics.leaf import Leaf, LeafConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "musiclm-eval/leaf-classifier/1"
SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "classifier-tiny.pt"
WINDOW_SECONDS = 10.0


class ClassifierError(InputError):
    """A checkpoint or label file that cannot be used; the message names the file."""


class LabelSpaceError(ClassifierError):
    """A checkpoint whose classes are not the ones the caller expects."""


# ---------------------------------------------------------------- label spaces


@dataclass(frozen=True)
class LabelSpace:
    """An ordered list of class names with a name; output unit i of a classifier means ``labels[i]``."""

    name: str
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.labels).encode()).hexdigest()[:16]

    def multihot(self, tags: Sequence[str], source: str = "") -> np.ndarray:
        index = {t: i for i, t in enumerate(self.labels)}
        out = np.zeros(len(self.labels), dtype=np.float32)
        for t in tags:
            if t not in index:
                raise LabelSpaceError(f"{source}: tag {t!r} is not in label space {self.name!r}")
            out[index[t]] = 1.0
        return out


def corpus_label_space() -> LabelSpace:
    """The procedural corpus tags, as stored in the shipped classifier checkpoint.

    The vocabulary travels inside the checkpoint (``label_space``), so ``metrics`` never needs the
    corpus generator to know it; ``tests/test_synth.py`` checks it equals the generator's vocabulary.
    """
    ckpt, _ = read_checkpoint(SHIPPED_CHECKPOINT, CHECKPOINT_FORMAT, "a LEAF classifier checkpoint", ClassifierError,
                              missing="shipped classifier checkpoint not found")
    return LabelSpace("corpus", tuple(ckpt["label_space"]["labels"]))


def audioset_label_space(path: str | Path) -> LabelSpace:
    """The 527 AudioSet classes from ``class_labels_indices.csv``, for AudioSet-trained checkpoints."""
    from metrics.musiccaps import CaptionsError, load_audioset_labels

    try:
        return LabelSpace("audioset", tuple(load_audioset_labels(path)))
    except CaptionsError as e:
        raise ClassifierError(str(e)) from None


def resolve_label_space(spec: LabelSpace | str | None, audioset_csv: str | Path | None = None) -> LabelSpace | None:
    """``"corpus"``, ``"audioset"`` (needs ``audioset_csv``), a LabelSpace, or None (accept any)."""
    if spec is None or isinstance(spec, LabelSpace):
        return spec
    if spec == "corpus":
        return corpus_label_space()
    if spec == "audioset":
        if audioset_csv is None:
            raise ClassifierError("label space 'audioset' needs the path of class_labels_indices.csv")
        return audioset_label_space(audioset_csv)
    raise ClassifierError(f"unknown label space {spec!r}; expected 'corpus' or 'audioset'")


# ---------------------------------------------------------------- model


@dataclass
class ClassifierConfig:
    n_labels: int
    # filter_stride 4: the trained/shipped model evaluates the 16 kHz filterbank every 4 samples (see LeafConfig)
    leaf: LeafConfig = field(default_factory=lambda: LeafConfig(filter_stride=4))
    channels: tuple[int, ...] = (16, 32, 64, 128)
    embed_dim: int = 128
    dropout: float = 0.1

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        d = dict(d)
        d["leaf"] = LeafConfig(**d["leaf"])
        d["channels"] = tuple(d["channels"])
        return cls(**d)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2, ceil_mode=True)`` as two strided ``torch.maximum``: the same values, ~5× faster on CPU.

    Odd sizes are padded with -inf, which is what ceil mode's partial last window means.
    """
    x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), value=float("-inf"))
    x = torch.maximum(x[..., 0::2], x[..., 1::2])
    return torch.maximum(x[..., 0::2, :], x[..., 1::2, :])


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class LeafClassifier(nn.Module):
    """Waveform → LEAF [bands, frames] → four conv blocks → mean+max pool → embedding → sigmoid heads."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = Leaf(cfg.leaf)
        self.norm = nn.BatchNorm1d(cfg.leaf.n_filters)
        chans = (1, *cfg.channels)
        self.blocks = nn.ModuleList([conv_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.to_embed = nn.Sequential(nn.Linear(2 * cfg.channels[-1], cfg.embed_dim), nn.ReLU())
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.embed_dim, cfg.n_labels)

    @property
    def sample_rate(self) -> int:
        return self.cfg.leaf.sample_rate

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """[batch, samples] → penultimate-layer embedding [batch, embed_dim] (the registry's ``classifier``)."""
        x = self.norm(self.frontend(wave))
        x = rearrange(x, "b f t -> b 1 f t")
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.blocks) - 1:
                x = max_pool_2x2(x)
        x = x.mean(dim=2)  # over frequency
        pooled = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=-1)
        return self.to_embed(pooled)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[batch, samples] → logits [batch, n_labels]."""
        return self.head(self.dropout(self.embed(wave)))


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- checkpoints


@dataclass
class LoadedClassifier:
    model: LeafClassifier
    label_space: LabelSpace
    meta: dict
    path: str
    weights_sha256: str


def save_classifier(model: LeafClassifier, label_space: LabelSpace, path: str | Path, meta: dict | None = None) -> Path:
    if len(label_space) != model.cfg.n_labels:
        raise LabelSpaceError(f"{path}: model has {model.cfg.n_labels} outputs but label space {label_space.name!r} has {len(label_space)}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save_checkpoint(
        {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(model.cfg),
            "label_space": {"name": label_space.name, "labels": list(label_space.labels)},
            "state_dict": state,
            "meta": meta or {},
        },
        path,
    )


def load_classifier(
    path: str | Path | None = None,
    expected: LabelSpace | str | None = None,
    device: str = "cpu",
    audioset_csv: str | Path | None = None,
) -> LoadedClassifier:
    """Load a checkpoint (None = the shipped one) and check its label space against ``expected``.

    ``expected`` is ``"corpus"``, ``"audioset"``, a LabelSpace, or None to accept whatever the
    checkpoint declares. A mismatch is a ``LabelSpaceError`` naming the file and both spaces.
    """
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    ckpt, sha = read_checkpoint(path, CHECKPOINT_FORMAT, "a LEAF classifier checkpoint", ClassifierError,
                                missing="classifier checkpoint not found")
    ls = ckpt["label_space"]
    stored = LabelSpace(ls["name"], tuple(ls["labels"]))
    want = resolve_label_space(expected, audioset_csv)
    if want is not None and stored.labels != want.labels:
        diff = sorted(set(want.labels) ^ set(stored.labels))
        detail = f"; differing labels: {', '.join(diff[:8])}{' …' if len(diff) > 8 else ''}" if diff else "; same labels in a different order"
        raise LabelSpaceError(
            f"{path}: checkpoint label space {stored.name!r} ({len(stored)} labels) does not match "
            f"expected {want.name!r} ({len(want)} labels){detail}"
        )
    cfg = ClassifierConfig.from_dict(ckpt["config"])
    model = LeafClassifier(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ClassifierError(f"{path}: weights do not fit the stored config ({e})") from None
    model.eval().to(device)
    return LoadedClassifier(model, stored, ckpt.get("meta", {}), str(path), sha)


# ---------------------------------------------------------------- inference


def windows(wave: np.ndarray, sr: int, seconds: float = WINDOW_SECONDS) -> np.ndarray:
    """Split a clip into non-overlapping windows [n, samples]; a short clip is one window as it is.

    A tail shorter than a window is covered by one more window anchored at the end of the clip,
    so every sample is seen and no window is zero-padded (padding would change the probabilities).
    """
    size = int(round(seconds * sr))
    if len(wave) <= size:
        return wave[None, :]
    starts = list(range(0, len(wave) - size + 1, size))
    if starts[-1] + size < len(wave):
        starts.append(len(wave) - size)
    return np.stack([wave[s : s + size] for s in starts])


@torch.no_grad()
def window_logits(model: LeafClassifier, wave: np.ndarray, sr: int, device: str = "cpu") -> np.ndarray:
    """Logits of each 10 s window of a clip, [n_windows, n_labels]; resamples to the model rate."""
    from metrics.audio import resample

    wave = resample(wave, sr, model.sample_rate)
    x = torch.from_numpy(windows(wave, model.sample_rate)).to(device)
    return model.eval()(x).cpu().double().numpy()


@torch.no_grad()
def window_embeddings(model: LeafClassifier, wave: np.ndarray, sr: int, device: str = "cpu") -> np.ndarray:
    from metrics.audio import resample

    wave = resample(wave, sr, model.sample_rate)
    x = torch.from_numpy(windows(wave, model.sample_rate)).to(device)
    return model.eval().embed(x).cpu().numpy()


# ---------------------------------------------------------------- registry factory


class ClassifierEmbedder(Embedder):
    """The penultimate layer as an embedder (registry name ``classifier``): one frame per 10 s window."""

    name = "classifier"

    def __init__(self, loaded: LoadedClassifier, device: str = "cpu"):
        self.loaded, self.device = loaded, device
        self.sample_rate = loaded.model.sample_rate
        self.dim = loaded.model.cfg.embed_dim
        self.min_seconds = loaded.model.cfg.leaf.window_len / self.sample_rate
        self.id = f"classifier-leaf:{loaded.label_space.name}:{loaded.weights_sha256[:16]}"

    def embed(self, wave: np.ndarray) -> np.ndarray:
        """Mono float32 at ``sample_rate`` → [windows, dim]."""
        return window_embeddings(self.loaded.model, wave, self.sample_rate, self.device)


def embedder(path: str | None = None, device: str = "cpu") -> ClassifierEmbedder:
    """Registry factory: the shipped checkpoint when ``path`` is None."""
    return ClassifierEmbedder(load_classifier(path, device=device), device)


class ClassifierLogits(Embedder):
    """The classifier as a model of the pipeline (registry ``leaf-corpus``): window logits [windows, labels].

    KLD reads these through the same extraction and cache as every embedder; the pooling into one
    class distribution per clip (and the activation) is the KLD convention's job, not the model's.
    """

    activation = "sigmoid"  # multi-label: trained with binary cross-entropy

    def __init__(self, loaded: LoadedClassifier, device: str = "cpu"):
        self.loaded, self.device = loaded, device
        self.name = "leaf-corpus" if Path(loaded.path) == SHIPPED_CHECKPOINT else f"leaf:{Path(loaded.path).name}"
        self.sample_rate = loaded.model.sample_rate
        self.dim = len(loaded.label_space)
        self.labels = loaded.label_space.labels
        self.label_space = loaded.label_space
        self.weights_sha256 = loaded.weights_sha256
        self.min_seconds = loaded.model.cfg.leaf.window_len / self.sample_rate
        self.id = f"classifier-leaf-logits:{loaded.label_space.name}:{loaded.weights_sha256[:16]}"

    def embed(self, wave: np.ndarray) -> np.ndarray:
        """Mono float32 at ``sample_rate`` → [10 s windows, labels] logits."""
        return window_logits(self.loaded.model, wave, self.sample_rate, self.device)


def logits_model(path: str | None = None, device: str = "cpu", expected: str | None = None,
                 audioset_csv: str | None = None) -> ClassifierLogits:
    """Registry factory (``metrics.models.CLASSIFIERS``): the shipped checkpoint when ``path`` is None."""
    return ClassifierLogits(load_classifier(path, expected=expected, device=device, audioset_csv=audioset_csv), device)

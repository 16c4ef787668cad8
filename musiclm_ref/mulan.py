"""MuLan-style joint music/text embedding (Huang et al. 2022), compact enough to train on CPU.

Two towers map into one shared 128-d space, trained with a symmetric contrastive (InfoNCE) loss:

- audio tower: log-mel (16 kHz, 64 bands, 20 ms hop) → small CNN → 128-d. A clip's embedding is
  the mean of the embeddings of its 10 s windows at 1 s stride (as in the paper), L2-normalized.
- text tower: a hashing tokenizer (word unigrams, word bigrams and character trigrams of each word,
  hashed into a fixed table), so any English caption — typos, rare words, emoji — tokenizes without
  out-of-vocabulary failures; one Transformer layer over words, masked mean pool, 128-d.

The API the rest of the project uses is deliberately small: ``embed_text(list[str]) -> [n, 128]``,
``embed_audio(wave, sr) -> [n, 128]``, both L2-normalized. MCC reaches it through the embedder
registry name ``mulan-ref`` (``audio_embedder``) or ``load_mulan``.
"""

from __future__ import annotations

import logging
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metrics.artifacts import read_checkpoint, save_checkpoint
from metrics.embedders import Embedder
from metrics.errors import InputError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "musiclm-eval/mulan/1"
SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "mulan-tiny.pt"


class MulanError(InputError):
    """A checkpoint or corpus that cannot be used; the message names the file."""


@dataclass
class MulanConfig:
    dim: int = 128
    sample_rate: int = 16000
    n_mels: int = 64
    n_fft: int = 1024
    hop: int = 320  # 20 ms
    window_seconds: float = 10.0
    stride_seconds: float = 1.0
    audio_channels: tuple[int, ...] = (96, 128, 128, 128)
    buckets: int = 4096
    text_dim: int = 64
    max_words: int = 64
    text_heads: int = 4


# ---------------------------------------------------------------- tokenizer

WORD_RE = re.compile(r"\w+", re.UNICODE)


class HashTokenizer:
    """Caption → per-word lists of hashed token ids; never fails on unseen words.

    Each word contributes its own hash, the hash of the bigram it ends, and the hashes of its
    character trigrams (with ``<``/``>`` boundary marks), fastText-style. crc32 keeps the hashing
    identical across processes and Python versions (``hash()`` is salted per process). Bucket 0 is
    reserved for padding; a caption with no word at all becomes the single token ``<empty>``.
    """

    def __init__(self, buckets: int = 4096, max_words: int = 64):
        self.buckets, self.max_words = buckets, max_words

    def _id(self, token: str) -> int:
        return 1 + zlib.crc32(token.encode("utf-8")) % (self.buckets - 1)

    def words(self, text: str) -> list[str]:
        return WORD_RE.findall(str(text).lower())[: self.max_words] or ["<empty>"]

    def word_tokens(self, word: str, prev: str | None) -> list[int]:
        marked = f"<{word}>"
        ids = [self._id("w:" + word)]
        if prev is not None:
            ids.append(self._id(f"b:{prev} {word}"))
        ids += [self._id("c:" + marked[i : i + 3]) for i in range(max(1, len(marked) - 2))]
        return ids

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """→ token ids [batch, words, tokens_per_word] (0 = padding) and a word mask [batch, words]."""
        if isinstance(texts, str):
            raise TypeError("embed_text takes a list of captions, not a single string")
        per_text = []
        for t in texts:
            words = self.words(t)
            per_text.append([self.word_tokens(w, words[i - 1] if i else None) for i, w in enumerate(words)])
        n_words = max(len(ws) for ws in per_text)
        n_tok = max(len(ids) for ws in per_text for ids in ws)
        out = torch.zeros(len(texts), n_words, n_tok, dtype=torch.long)
        for b, ws in enumerate(per_text):
            for w, ids in enumerate(ws):
                out[b, w, : len(ids)] = torch.tensor(ids)
        return out, out[..., 0] > 0


# ---------------------------------------------------------------- towers


class TextTower(nn.Module):
    def __init__(self, cfg: MulanConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.buckets, cfg.text_dim, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(cfg.max_words, cfg.text_dim))
        self.layer = nn.TransformerEncoderLayer(cfg.text_dim, cfg.text_heads, 2 * cfg.text_dim, dropout=0.1, batch_first=True, norm_first=True)
        self.out = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, cfg.dim))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        counts = (tokens > 0).sum(-1, keepdim=True).clamp(min=1)
        words = self.embed(tokens).sum(dim=2) / counts  # mean of a word's hashed pieces
        words = words + self.pos[: words.shape[1]]
        h = self.layer(words, src_key_padding_mask=~mask)
        m = mask[..., None].float()
        return self.out((h * m).sum(1) / m.sum(1).clamp(min=1))


class AudioTower(nn.Module):
    """Log-mel [batch, mels, frames] → [batch, dim]: a 1-D CNN over time with the mel bands as channels.

    1-D (not 2-D) convolutions keep a training epoch to seconds on a shared CPU; each block halves
    the frame rate, then mean+max pooling over time.
    """

    def __init__(self, cfg: MulanConfig):
        super().__init__()
        self.norm = nn.BatchNorm1d(cfg.n_mels)
        chans = (cfg.n_mels, *cfg.audio_channels)
        self.blocks = nn.Sequential(*[
            nn.Sequential(nn.Conv1d(a, b, 5 if i == 0 else 3, stride=2, padding=2 if i == 0 else 1, bias=False), nn.BatchNorm1d(b), nn.GELU())
            for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))
        ])  # fmt: skip
        self.out = nn.Sequential(nn.Linear(2 * chans[-1], cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.norm(mel))
        return self.out(torch.cat([x.mean(-1), x.amax(-1)], dim=-1))


class MuLan(nn.Module):
    def __init__(self, cfg: MulanConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MulanConfig()
        self.tokenizer = HashTokenizer(cfg.buckets, cfg.max_words)
        self.text = TextTower(cfg)
        self.audio = AudioTower(cfg)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        import torchaudio

        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop, n_mels=cfg.n_mels, f_min=30.0, f_max=cfg.sample_rate / 2
        )

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """[batch, samples] at ``cfg.sample_rate`` → [batch, mels, frames]."""
        return torch.log(self.melspec(wave) + 1e-6)

    def text_latent(self, texts: Sequence[str]) -> torch.Tensor:
        tokens, mask = self.tokenizer(texts)
        return F.normalize(self.text(tokens.to(self.device), mask.to(self.device)), dim=-1)

    def audio_latent(self, mel: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio(mel), dim=-1)

    def loss(self, mel: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Symmetric InfoNCE over the batch (text i ↔ audio i are the positives)."""
        a, t = self.audio_latent(mel), self.text_latent(texts)
        logits = self.logit_scale.clamp(max=math.log(100)).exp() * t @ a.T
        target = torch.arange(len(texts), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))

    # -------- the small public API

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Captions → [n, dim] float32, L2-normalized."""
        self.eval()
        if len(texts) == 0:
            return np.zeros((0, self.cfg.dim), np.float32)
        return self.text_latent(list(texts)).cpu().numpy()

    def windows(self, wave: np.ndarray) -> np.ndarray:
        """10 s windows at 1 s stride [n, samples]; a clip of 10 s or less is one window as it is."""
        size = int(self.cfg.window_seconds * self.cfg.sample_rate)
        if len(wave) <= size:
            return wave[None, :]
        stride = int(self.cfg.stride_seconds * self.cfg.sample_rate)
        starts = list(range(0, len(wave) - size + 1, stride))
        if starts[-1] + size < len(wave):
            starts.append(len(wave) - size)
        return np.stack([wave[s : s + size] for s in starts])

    @torch.no_grad()
    def window_embeddings(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """One clip → per-window audio embeddings [windows, dim], each L2-normalized."""
        from metrics.audio import resample

        self.eval()
        w = resample(np.asarray(wave, dtype=np.float32), sr, self.cfg.sample_rate)
        x = torch.from_numpy(self.windows(w)).to(self.device)
        return torch.cat([self.audio_latent(self.logmel(chunk)) for chunk in x.split(16)]).cpu().numpy()

    def embed_audio(self, wave: np.ndarray | Sequence[np.ndarray], sr: int) -> np.ndarray:
        """One clip (1-D) or several (list / 2-D) → [n, dim]: mean of window embeddings, L2-normalized."""
        waves = [wave] if isinstance(wave, np.ndarray) and wave.ndim == 1 else list(wave)
        out = np.stack([self.window_embeddings(w, sr).mean(0) for w in waves])
        return (out / np.linalg.norm(out, axis=-1, keepdims=True).clip(1e-12)).astype(np.float32)

    def to_checkpoint(self, meta: dict | None = None) -> dict:
        """The checkpoint dict (the mel frontend is rebuilt from the config, not stored)."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items() if not k.startswith("melspec.")}
        return {"format": CHECKPOINT_FORMAT, "config": asdict(self.cfg), "state_dict": state, "meta": meta or {}}

    @classmethod
    def from_checkpoint(cls, ckpt: dict, source: str = "<dict>") -> MuLan:
        """The model of a ``to_checkpoint`` dict (``load_mulan`` reads and checks the file)."""
        cfg = dict(ckpt["config"])
        cfg["audio_channels"] = tuple(cfg["audio_channels"])
        model = cls(MulanConfig(**cfg))
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
        missing = [k for k in missing if not k.startswith("melspec.")]
        if missing or unexpected:
            raise MulanError(f"{source}: weights do not fit the stored config (missing {missing[:5]}, unexpected {unexpected[:5]})")
        model.meta = ckpt.get("meta", {})
        return model


# ---------------------------------------------------------------- checkpoints


def save_mulan(model: MuLan, path: str | Path, meta: dict | None = None) -> Path:
    return save_checkpoint(model.to_checkpoint(meta), path)


def load_mulan(path: str | Path | None = None, device: str = "cpu") -> MuLan:
    """Load a MuLan checkpoint (None = the shipped one); errors name the file and the problem."""
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    ckpt, sha = read_checkpoint(path, CHECKPOINT_FORMAT, "a MuLan checkpoint", MulanError)
    model = MuLan.from_checkpoint(ckpt, str(path))
    model.weights_sha256 = sha
    model.checkpoint_path = str(path)
    return model.eval().to(device)


class MulanAudioEmbedder(Embedder):
    """Registry entry ``mulan-ref``: per-window (10 s, 1 s stride) audio embeddings [windows, 128]."""

    name = "mulan-ref"

    def __init__(self, model: MuLan):
        self.model = model
        self.sample_rate = model.cfg.sample_rate
        self.dim = model.cfg.dim
        self.min_seconds = model.cfg.n_fft / model.cfg.sample_rate
        self.id = f"mulan-ref:{model.weights_sha256[:16]}"

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.model.window_embeddings(wave, self.sample_rate)


def audio_embedder(path: str | None = None, device: str = "cpu") -> MulanAudioEmbedder:
    """Registry factory (``mulan-ref``): the shipped checkpoint when ``path`` is None."""
    return MulanAudioEmbedder(load_mulan(path, device))


def joint_model(path: str | None = None, device: str = "cpu"):
    """Registry factory (``metrics.models.JOINT`` entry point ``mulan-ref``): audio windows + caption side."""
    from metrics.models import Joint

    model = load_mulan(path, device)
    audio = MulanAudioEmbedder(model)
    return Joint(audio.id, audio, model.embed_text)

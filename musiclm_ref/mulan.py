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
import time
import zlib
from collections.abc import Callable, Sequence
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


# ---------------------------------------------------------------- checkpoints


def save_mulan(model: MuLan, path: str | Path, meta: dict | None = None) -> Path:
    cfg = asdict(model.cfg)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("melspec.")}
    return save_checkpoint({"format": CHECKPOINT_FORMAT, "config": cfg, "state_dict": state, "meta": meta or {}}, path)


def load_mulan(path: str | Path | None = None, device: str = "cpu") -> MuLan:
    """Load a MuLan checkpoint (None = the shipped one); errors name the file and the problem."""
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    ckpt, sha = read_checkpoint(path, CHECKPOINT_FORMAT, "a MuLan checkpoint", MulanError)
    cfg = dict(ckpt["config"])
    cfg["audio_channels"] = tuple(cfg["audio_channels"])
    model = MuLan(MulanConfig(**cfg))
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    missing = [k for k in missing if not k.startswith("melspec.")]
    if missing or unexpected:
        raise MulanError(f"{path}: weights do not fit the stored config (missing {missing[:5]}, unexpected {unexpected[:5]})")
    model.meta = ckpt.get("meta", {})
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


# ---------------------------------------------------------------- training and evaluation


@dataclass
class MulanCorpus:
    ids: list[str]
    splits: list[str]
    captions: list[str]
    mels: torch.Tensor  # [n, mels, frames] of each clip's first 10 s window


def load_corpus(data_dir: str | Path, model: MuLan) -> MulanCorpus:
    """Captions, splits and log-mels of a corpus made by ``musiclm-eval synth``; each clip decoded once."""
    from metrics.audio import load_dir, pair_ids
    from metrics.classifier import ClassifierError
    from metrics.classifier_training import read_tag_labels
    from metrics.musiccaps import CaptionsError, load_captions

    data_dir = Path(data_dir)
    try:
        caps = load_captions(data_dir / "captions.csv", require_all_columns=False)
        rows = read_tag_labels(data_dir)
    except (CaptionsError, ClassifierError) as e:
        raise MulanError(str(e)) from None
    split = {r[0]: r[1] for r in rows}
    report = load_dir(data_dir, sr=model.cfg.sample_rate)
    waves = {c.id: c.wave for c in report.clips}
    ids = pair_ids({"audio": waves, "captions": caps.index, "labels": split})
    size = int(model.cfg.window_seconds * model.cfg.sample_rate)
    with torch.no_grad():
        mels = [model.logmel(torch.from_numpy(waves[i][:size])[None])[0] for i in ids]
    frames = min(m.shape[-1] for m in mels)
    return MulanCorpus(ids, [split[i] for i in ids], [str(caps.loc[i, "caption"]) for i in ids], torch.stack([m[:, :frames] for m in mels]))


def recall_at_k(text_emb: np.ndarray, audio_emb: np.ndarray, k: int = 10, n_candidates: int = 100, seed: int = 0) -> float:
    """Caption → audio retrieval: fraction of captions whose clip ranks in the top k among
    itself and ``n_candidates - 1`` other clips drawn at random (seeded) from the same set.
    Ties are counted against the query, so a constant model scores 0, not 1."""
    n = len(text_emb)
    rng = np.random.default_rng(seed)
    sims = text_emb @ audio_emb.T
    hits = 0
    for i in range(n):
        others = np.delete(np.arange(n), i)
        pool = rng.choice(others, size=min(n_candidates - 1, n - 1), replace=False)
        hits += int((sims[i, pool] >= sims[i, i]).sum() < k)  # ties count against the query
    return hits / n


def evaluate(model: MuLan, corpus: MulanCorpus, split: str = "eval", seed: int = 0) -> dict:
    """Held-out figures: recall@10 among 100, MCC with own captions, with shuffled captions, the gap."""
    idx = [i for i, s in enumerate(corpus.splits) if s == split]
    if len(idx) < 2:
        return {}
    model.eval()
    with torch.no_grad():
        a = torch.cat([model.audio_latent(corpus.mels[idx][j : j + 32].to(model.device)) for j in range(0, len(idx), 32)]).cpu().numpy()
    t = model.embed_text([corpus.captions[i] for i in idx])
    perm = np.random.default_rng(seed).permutation(len(idx))
    while len(idx) > 1 and (perm == np.arange(len(idx))).any():  # a derangement: no caption stays with its clip
        perm = np.random.default_rng(int(perm[0]) + seed + 1).permutation(len(idx))
    own = float((a * t).sum(-1).mean())
    shuffled = float((a * t[perm]).sum(-1).mean())
    return {
        "split": split,
        "n": len(idx),
        "recall_at_10_of_100": recall_at_k(t, a, 10, 100, seed),
        "n_candidates": min(100, len(idx)),
        "mcc_own": own,
        "mcc_shuffled": shuffled,
        "mcc_gap": own - shuffled,
    }


@dataclass
class MulanTrainResult:
    model: MuLan
    losses: list[float]
    metrics: dict
    n_train: int
    data_hash: str


def train_mulan(
    data_dir: str | Path,
    epochs: int = 40,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
    lr: float = 2e-3,
    crop_frames: int = 400,
    max_steps: int | None = None,
    config: MulanConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> MulanTrainResult:
    """Contrastive training on the ``train`` split (random crops of the precomputed log-mels)."""
    from metrics.classifier_training import corpus_hash

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MuLan(config)
    corpus = load_corpus(data_dir, model)
    model.to(device)
    train_idx = np.array([i for i, s in enumerate(corpus.splits) if s == "train"])
    if len(train_idx) < 2:
        raise MulanError(f"{Path(data_dir) / 'labels.csv'}: need at least 2 clips with split 'train'")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    bs = min(batch_size, len(train_idx))
    steps_per_epoch = max(1, len(train_idx) // bs)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1), pct_start=0.1)
    frames = corpus.mels.shape[-1]
    crop = min(crop_frames, frames)
    losses: list[float] = []
    step, t0 = 0, time.time()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(train_idx)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            batch = order[b * bs : (b + 1) * bs]
            starts = rng.integers(0, frames - crop + 1, size=len(batch))
            mel = torch.stack([corpus.mels[i, :, s : s + crop] for i, s in zip(batch, starts)]).to(device)
            loss = model.loss(mel, [corpus.captions[i] for i in batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            step += 1
        if progress:
            progress(f"epoch {epoch + 1}/{epochs} loss {np.mean(losses[-steps_per_epoch:]):.4f} ({time.time() - t0:.0f} s)")
    metrics = evaluate(model, corpus, "eval", seed)
    model.eval()
    return MulanTrainResult(model, losses, metrics, len(train_idx), corpus_hash(data_dir))

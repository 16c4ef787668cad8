"""MCC: MuLan cycle consistency — mean cosine similarity between each caption's text embedding and the
audio embedding of the music generated from it (MusicLM paper, section 5).

Pairs are matched by id (file stem = MusicCaps ``ytid``), never by order. Backends:

- ``mulan-ref`` (default): the project's MuLan-style model (``musiclm_ref.mulan``), shipped and
  trained on the procedural corpus; reached lazily so ``metrics`` never imports ``musiclm_ref`` at
  import time. A path to another checkpoint of that model works too.
- ``clap:<checkpoint.pt>``: LAION-CLAP (music checkpoint) through the ``laion_clap`` package, when
  it can build its model offline. CLAP-based MCC is a different embedding space than the paper's
  MuLan and its values are *not comparable* to the paper's MCC.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from metrics.audio import Clip, PairingError, pair_ids
from metrics.result import MetricResult, bootstrap_ci


class JointModel(Protocol):
    def embed_text(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_audio(self, wave: np.ndarray | Sequence[np.ndarray], sr: int) -> np.ndarray: ...


class JointModelError(RuntimeError):
    """A joint text/audio model that cannot be built; the message says which and why."""


def _unit(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected [n, dim] embeddings, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN/Inf")
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if (norm == 0).any():
        raise ValueError(f"{name}: zero-length embedding in row(s) {np.flatnonzero(norm[:, 0] == 0)[:10].tolist()}")
    return x / norm


def cycle_consistency(
    text_emb: Mapping[str, np.ndarray] | np.ndarray,
    audio_emb: Mapping[str, np.ndarray] | np.ndarray,
    ids: Sequence[str] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
) -> MetricResult:
    """Mean cosine similarity over caption/clip pairs, with per-clip values and a bootstrap 95% CI.

    Mappings (id → vector) are paired by id (an id missing on either side is a ``PairingError``);
    arrays are paired row by row and named by ``ids`` (default ``"0".."n-1"``).
    """
    if isinstance(text_emb, Mapping) or isinstance(audio_emb, Mapping):
        if not (isinstance(text_emb, Mapping) and isinstance(audio_emb, Mapping)):
            raise TypeError("pass both embeddings as id → vector mappings, or both as arrays")
        ids = pair_ids({"captions": text_emb.keys(), "audio": audio_emb.keys()})
        t = np.stack([np.asarray(text_emb[i]).reshape(-1) for i in ids])
        a = np.stack([np.asarray(audio_emb[i]).reshape(-1) for i in ids])
    else:
        t, a = np.asarray(text_emb), np.asarray(audio_emb)
        if t.shape != a.shape:
            raise ValueError(f"text and audio embeddings differ in shape: {t.shape} vs {a.shape}")
        ids = list(ids) if ids is not None else [str(i) for i in range(len(t))]
        if len(ids) != len(t):
            raise ValueError(f"{len(ids)} ids for {len(t)} embeddings")
    cos = (_unit(t, "text embeddings") * _unit(a, "audio embeddings")).sum(-1)
    return MetricResult("mcc", float(cos.mean()), bootstrap_ci(cos, n_boot=n_boot, seed=seed), dict(zip(ids, map(float, cos))), {"n_pairs": len(ids)})


class ClapJoint:
    """LAION-CLAP from a local checkpoint (e.g. ``music_audioset_epoch_15_esc_90.14.pt``, HTSAT-base).

    Not comparable with the paper's MuLan MCC: a different model, training set and embedding space.
    """

    sample_rate = 48000

    def __init__(self, checkpoint: str | Path, amodel: str = "HTSAT-base", device: str = "cpu"):
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise JointModelError(f"{checkpoint}: CLAP checkpoint not found")
        try:
            import laion_clap
        except ImportError as e:
            raise JointModelError(f"the clap backend needs the laion_clap package ({e})") from None
        try:
            self.model = laion_clap.CLAP_Module(enable_fusion=False, amodel=amodel, device=device)
            self.model.load_ckpt(str(checkpoint))
        except Exception as e:  # it fetches its text tokenizer from the Hugging Face hub
            raise JointModelError(f"{checkpoint}: laion_clap could not build the model offline ({type(e).__name__}: {e})") from None

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.get_text_embedding(list(texts), use_tensor=False), dtype=np.float32)

    def embed_audio(self, wave: np.ndarray | Sequence[np.ndarray], sr: int) -> np.ndarray:
        from metrics.audio import resample

        waves = [wave] if isinstance(wave, np.ndarray) and wave.ndim == 1 else list(wave)
        out = [self.model.get_audio_embedding_from_data(resample(w, sr, self.sample_rate)[None, :], use_tensor=False)[0] for w in waves]
        return np.stack(out).astype(np.float32)


def load_joint(spec: str | None = "mulan-ref", device: str = "cpu") -> JointModel:
    """``mulan-ref`` (shipped), a MuLan checkpoint path, or ``clap:<checkpoint.pt>``."""
    spec = spec or "mulan-ref"
    if spec.startswith("clap:"):
        return ClapJoint(spec[len("clap:") :], device=device)
    path = None if spec == "mulan-ref" else spec
    if path is not None and not Path(path).exists():
        raise JointModelError(f"unknown joint model {spec!r}: not 'mulan-ref', 'clap:<ckpt>' or an existing checkpoint file")
    mulan = importlib.import_module("musiclm_ref.mulan")  # lazy: metrics does not import musiclm_ref at import time
    try:
        return mulan.load_mulan(path, device=device)
    except mulan.MulanError as e:
        raise JointModelError(str(e)) from None


def mcc_for_clips(clips: Sequence[Clip], captions: Mapping[str, str], joint: JointModel, seed: int = 0) -> MetricResult:
    """MCC of generated clips against the captions they were generated from, paired by id."""
    # A captions file may cover more clips than were generated (the whole MusicCaps CSV); every
    # generated clip must have its caption, though.
    lacking = sorted(c.id for c in clips if c.id not in captions)
    if lacking:
        raise PairingError(f"{len(lacking)} generated clip(s) have no caption: {', '.join(lacking[:20])}{' …' if len(lacking) > 20 else ''}")
    ids = sorted(c.id for c in clips)
    by_id = {c.id: c for c in clips}
    text = joint.embed_text([captions[i] for i in ids])
    audio = np.concatenate([joint.embed_audio(by_id[i].wave, by_id[i].sr) for i in ids])
    return cycle_consistency(dict(zip(ids, text)), dict(zip(ids, audio)), seed=seed)

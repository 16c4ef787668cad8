"""MCC: MuLan cycle consistency — mean cosine similarity between each caption's text embedding and the
audio embedding of the music generated from it (MusicLM paper, section 5).

Pairs are matched by id (file stem = MusicCaps ``ytid``), never by order. Backends:

- ``mulan-ref`` (default): the project's MuLan-style model, shipped and trained on the procedural
  corpus; it registers itself as the ``joint`` entry point ``mulan-ref`` (``metrics.registry``), so
  ``metrics`` never imports the reference model. A path to another checkpoint of it works too.
- ``clap:<checkpoint.pt>``: LAION-CLAP (music checkpoint) through the ``laion_clap`` package, when
  it can build its model offline. CLAP-based MCC is a different embedding space than the paper's
  MuLan and its values are *not comparable* to the paper's MCC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from metrics.audio import Clip, PairingError, pair_ids
from metrics.errors import UnavailableError
from metrics.intervals import bootstrap_ci
from metrics.metric import PerClipOutputs
from metrics.result import MetricResult


class JointModel(Protocol):
    def embed_text(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_audio(self, wave: np.ndarray | Sequence[np.ndarray], sr: int) -> np.ndarray: ...


class JointModelError(UnavailableError):
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


def clap_joint(path: str | None = None, device: str = "cpu"):
    """Registry factory (``clap``): LAION-CLAP's music checkpoint as a pipeline ``Joint``.

    A ``transformers`` CLAP folder (or ``laion/larger_clap_music`` from the Hugging Face cache when
    ``path`` is None) goes through ``metrics.embedders.clap`` — it builds offline; a laion_clap ``.pt``
    checkpoint goes through ``laion_clap`` (``ClapJoint``), which needs the hub for its tokenizer.
    """
    from metrics.embedders import Embedder
    from metrics.models import Joint

    if path is None or not str(path).endswith(".pt"):
        from metrics.embedders.clap import joint

        return joint(path, device)
    clap = ClapJoint(path, device=device)

    class ClapAudio(Embedder):
        name, sample_rate, dim = "clap", ClapJoint.sample_rate, 512
        id = f"clap:{Path(path).name}"

        def embed(self, wave: np.ndarray) -> np.ndarray:
            return clap.embed_audio(wave, self.sample_rate)

    return Joint(f"clap:{Path(path).name}", ClapAudio(), clap.embed_text)


def parse_joint_spec(spec: str | None) -> tuple[str | None, str | None]:
    """``--joint`` value → (registry name, weights path): a registered name (``mulan-ref``), ``NAME:CKPT``
    (``clap:<checkpoint.pt>``) or a MuLan checkpoint path; None stays None (no MCC)."""
    from metrics.models import JOINT

    if spec is None:
        return None, None
    name, sep, path = spec.partition(":")
    if sep and name in JOINT:
        return name, path
    if spec in JOINT:
        return spec, None
    if Path(spec).exists():
        return "mulan-ref", spec
    raise JointModelError(f"unknown joint model {spec!r}: not 'mulan-ref', 'clap:<ckpt>' or an existing checkpoint file")


def load_joint(spec: str | None = "mulan-ref", device: str = "cpu"):
    """``mulan-ref`` (shipped), a MuLan checkpoint path, or ``clap:<checkpoint.pt>`` → a ``metrics.models.Joint``.

    Resolved through the ``joint`` registry (``mulan-ref`` is the reference model's entry point), so
    ``metrics`` names no module of the reference model.
    """
    from metrics.models import ModelError, ModelSpec

    name, path = parse_joint_spec(spec or "mulan-ref")
    try:
        return ModelSpec(name, path, device, kind="joint").build()
    except (ModelError, RuntimeError, ValueError) as e:
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


class MCC(PerClipOutputs):
    """MuLan Cycle Consistency as a ``Metric``: caption embeddings (reference side) vs audio (generated side).

    The reference side holds each caption's text embedding ``[dim]``; the generated side each clip's
    window embeddings ``[windows, dim]`` from the joint model's audio tower. A clip's audio embedding
    is the mean of its windows, L2-normalized (the paper's MuLan protocol); MCC is the mean cosine
    over clips paired by id, with per-clip values.
    """

    name = "mcc"
    output = "joint"
    higher_is_better = True  # a cosine between caption and audio embeddings
    bounds = (-1.0, 1.0)

    def __init__(self, joint_id: str = "", n_boot: int = 1000, seed: int = 0):
        self.joint_id = joint_id
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        return {"joint": self.joint_id}

    def cosines(self) -> dict[str, float]:
        ids = self.paired_ids()
        lacking = sorted(set(self.outputs["generated"]) - set(self.outputs["reference"]))
        if lacking:
            raise PairingError(f"{len(lacking)} generated clip(s) have no caption: {', '.join(lacking[:20])}"
                               f"{' …' if len(lacking) > 20 else ''}")
        if not ids:
            raise PairingError("MCC: no clip has both a caption and audio")
        text = _unit(np.stack([np.asarray(self.outputs["reference"][i], np.float64).reshape(-1) for i in ids]),
                     "text embeddings")
        audio = _unit(np.stack([np.asarray(self.outputs["generated"][i], np.float64).reshape(-1, text.shape[1]).mean(0)
                                for i in ids]), "audio embeddings")
        return dict(zip(ids, map(float, (text * audio).sum(-1))))

    def ids(self, side: str) -> list[str]:
        return sorted(self.outputs["generated"])

    def value_on_counts(self, ref_counts: np.ndarray, gen_counts: np.ndarray) -> np.ndarray:
        cos = self.cosines()
        c = np.array([cos[i] for i in self.ids("generated")])
        w = np.asarray(gen_counts, dtype=np.float64)
        return (w @ c) / w.sum(axis=1)

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float:
        cos = self.cosines()
        return float(np.mean([cos[i] for i in gen_ids]))

    def compute(self) -> MetricResult:
        cos = self.cosines()
        value = float(np.mean(list(cos.values())))
        return self.result(value, cos, {"n_pairs": len(cos), "joint": self.joint_id})

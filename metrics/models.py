"""The models an evaluation runs, by kind, and the picklable specs that rebuild them anywhere.

Three kinds, one shape: every model is an ``Embedder`` (mono clip at ``sample_rate`` in, a
``[frames, dim]`` float32 array out), so every one of them goes through the same streaming
extraction and the same content-hashed cache (``metrics.extract``):

- ``embedder``   — frame embeddings for FAD/KAD (``mel``, ``vggish``, ``trill``, ``musicnn-*``, …);
- ``classifier`` — window *logits* ``[windows, n_labels]`` for KLD, with ``labels`` and the
  ``activation`` the classifier was trained with (``leaf-corpus``, ``musicnn-mtt``, …);
- ``joint``      — a text/audio joint embedding for MCC: its ``audio`` embedder gives window
  embeddings ``[windows, dim]`` and ``embed_text`` the caption side (``mulan-ref``, ``clap``).

A ``ModelSpec`` (kind, name, weights path, device) is what crosses process boundaries: a Ray worker
builds its own model from it, because live models (TF-Hub ones) do not pickle and a model built on
the driver would sit on the driver's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from metrics.embedders import Embedder, EmbedderError, get_embedder
from metrics.registry import Registry

KINDS = ("embedder", "classifier", "joint")


class ModelError(EmbedderError):
    """A model that cannot be built (unknown name, missing weights, missing package)."""


class JointModel(Protocol):
    """What MCC needs: caption embeddings and an audio embedder in the same space (``Joint`` is one; the
    pipeline runs ``audio`` over the clips like any embedder and ``MCC`` pools its windows)."""

    id: str
    audio: Embedder

    def embed_text(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class Joint:
    """A joint model as the pipeline uses it (the registry factories return one)."""

    id: str
    audio: Embedder
    text_fn: Any

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.text_fn(list(texts)), dtype=np.float32)


# factory(path=None, device="cpu") -> an Embedder of window logits with ``labels`` and ``activation``
CLASSIFIERS = Registry("classifiers", {
    "leaf-corpus": "metrics.classifier:logits_model",
    # real music taggers (musicnn 0.1.0, converted): 50 sigmoid tags, one row of logits per 3 s patch
    "musicnn-mtt": "metrics.embedders.musicnn:mtt_logits",
    "musicnn-msd": "metrics.embedders.musicnn:msd_logits",
}, error=ModelError)
# factory(path=None, device="cpu") -> Joint; ``mulan-ref`` arrives through its entry point
JOINT = Registry("joint", {"clap": "metrics.embedders.clap:joint"}, error=ModelError)


class FixedLength(Embedder):
    """A model that sees every clip cropped or zero-padded to ``seconds`` (``--clip-seconds``).

    The paper's evaluation clips are 10 s; a system that generates 30 s would otherwise be scored on
    more audio than the reference. The length is part of ``id``, so the cache never mixes lengths.
    Everything else (labels, activation, …) is the wrapped model's.
    """

    def __init__(self, inner: Embedder, seconds: float):
        if not seconds > 0:
            raise ModelError(f"clip length must be > 0 seconds, got {seconds}")
        if seconds < inner.min_seconds:
            raise ModelError(f"clip length {seconds:g} s is shorter than one frame of {inner.name} "
                             f"({inner.min_seconds:g} s)")
        self.inner, self.seconds = inner, float(seconds)
        self.name, self.sample_rate, self.dim = inner.name, inner.sample_rate, inner.dim
        self.min_seconds, self.pad_to_seconds = 0.0, None  # every clip becomes exactly `seconds` long
        self.id = f"{inner.id};clip_seconds={self.seconds:g}"
        # set here, not looked up on the inner model: heads of one network share a pass only at one length
        self.head = inner.head
        self.shared_forward = f"{inner.shared_forward};clip_seconds={self.seconds:g}" if inner.shared_forward else None

    def __getattr__(self, attr: str) -> Any:  # labels, activation, label_space, weights_sha256, …
        return getattr(self.__dict__["inner"], attr)

    def _fix(self, wave: np.ndarray) -> np.ndarray:
        n = int(round(self.seconds * self.sample_rate))
        wave = np.asarray(wave)[:n]
        return np.pad(wave, (0, n - len(wave))) if len(wave) < n else wave

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.inner.embed(self._fix(wave))

    def embed_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return self.inner.embed_batch([self._fix(w) for w in waves])

    def embed_heads(self, waves: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        return self.inner.embed_heads([self._fix(w) for w in waves])

    @property
    def config(self) -> dict[str, Any]:
        return {**self.inner.config, "id": self.id, "clip_seconds": self.seconds}


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model: registry name, optional weights path, device, and the clip length it
    sees (None: clips as they are); picklable and hashable."""

    name: str
    path: str | None = None
    device: str = "cpu"
    kind: str = "embedder"
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ModelError(f"unknown model kind {self.kind!r}; expected one of {', '.join(KINDS)}")

    @property
    def key(self) -> str:
        """How results name the model's outputs (``embedder:mel``, ``classifier:leaf-corpus``)."""
        return f"{self.kind}:{self.name}"

    def build_audio(self) -> Embedder:
        """The embedder that runs over the audio (a joint model's audio tower); what a Ray worker builds."""
        return audio_model(self.build())

    def build(self) -> Any:
        """An ``Embedder`` (embedder, classifier) or a ``Joint``."""
        model = self._build()
        if self.seconds is None:
            return model
        if isinstance(model, Joint):
            return Joint(model.id, FixedLength(model.audio, self.seconds), model.text_fn)
        return FixedLength(model, self.seconds)

    def _build(self) -> Any:
        if self.kind == "embedder":
            return get_embedder(self.name, self.path, self.device)
        registry = CLASSIFIERS if self.kind == "classifier" else JOINT
        if self.name not in registry and self.path is None and self.kind == "classifier":
            # a checkpoint path given as the name: the LEAF architecture, whatever its label space
            return registry.factory("leaf-corpus")(path=self.name, device=self.device)
        return registry.factory(self.name)(path=self.path, device=self.device)


def audio_model(built: Any) -> Embedder:
    """The embedder that runs over the audio: the model itself, or a joint model's audio side."""
    return built.audio if isinstance(built, Joint) else built

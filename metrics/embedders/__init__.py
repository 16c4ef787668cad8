"""The one embedder registry: name → factory, resolved lazily.

Every metric that needs audio embeddings (FAD, the harness, MCC's audio side) asks
``get_embedder(name, path, device)`` and gets an ``Embedder``: one mono clip at ``sample_rate`` in,
``[frames, dim]`` float32 out. Entries are either callables or ``"module:factory"`` strings imported
only when asked, so ``metrics`` never imports ``musiclm_ref`` (or TensorFlow) at import time and a
model another package owns (``mulan-ref``, ``classifier``) registers itself by name.

A factory is called as ``factory(path=None, device="cpu") -> Embedder``; ``path`` overrides where
the weights come from (a SavedModel directory, a checkpoint file).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np


class EmbedderError(RuntimeError):
    """An embedder that cannot be built (unknown name, missing weights, missing package)."""


class Embedder:
    """Base class / protocol of an embedder.

    ``id`` is name + weights hash and goes into cache keys and result metadata, so two different
    checkpoints of one architecture never share cached embeddings. ``pad_to_seconds``: when set,
    ``metrics.extract`` zero-pads every clip to a whole multiple of it before ``embed`` (Google's
    VGGish/TRILL evaluation pads to whole seconds). ``min_seconds``: clips shorter than this (after
    padding) yield no frame and are an error naming the file.
    """

    name: str = ""
    id: str = ""
    sample_rate: int = 16000
    dim: int = 0
    min_seconds: float = 0.0
    pad_to_seconds: float | None = None

    def embed(self, wave: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Embed several clips; the default loops, subclasses batch when the model allows."""
        return [self.embed(w) for w in waves]

    @property
    def config(self) -> dict[str, Any]:
        """What results record about this embedder (and what, with ``id``, keys the cache)."""
        return {"name": self.name, "id": self.id, "sample_rate": self.sample_rate, "dim": self.dim,
                "pad_to_seconds": self.pad_to_seconds}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, sample_rate={self.sample_rate}, dim={self.dim})"


Factory = Callable[..., Embedder]

_REGISTRY: dict[str, Factory | str] = {
    "mel": "metrics.embedders.mel:factory",
    "vggish": "metrics.embedders.tfhub:vggish",
    "trill": "metrics.embedders.tfhub:trill",
    "torch": "metrics.embedders.torch_ckpt:factory",
    # models that live elsewhere register lazily by name; resolved only when asked
    "classifier": "metrics.classifier:embedder",
    "mulan-ref": "musiclm_ref.mulan:audio_embedder",
}


def register_embedder(name: str, factory: Factory | str) -> None:
    """Add (or replace) an entry: a callable ``factory(path, device)`` or a ``"module:attr"`` string."""
    if not name or ":" in name:
        raise ValueError(f"embedder names must be non-empty and contain no ':' (got {name!r})")
    _REGISTRY[name] = factory


def available_embedders() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(name: str, entry: Factory | str) -> Factory:
    if callable(entry):
        return entry
    module, _, attr = entry.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise EmbedderError(f"embedder {name!r} is registered as {entry} but it cannot be imported: {e}") from e


def get_embedder(name: str, path: str | None = None, device: str = "cpu") -> Embedder:
    """Build the embedder ``name``; ``torch:<checkpoint>`` loads a generic torch checkpoint."""
    if name.startswith("torch:"):
        name, path = "torch", name[len("torch:"):]
    if name not in _REGISTRY:
        raise EmbedderError(f"unknown embedder {name!r}; available: {', '.join(available_embedders())} "
                            "(or torch:<checkpoint.pt>)")
    return _resolve(name, _REGISTRY[name])(path=path, device=device)


__all__ = ["Embedder", "EmbedderError", "available_embedders", "get_embedder", "register_embedder"]

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

from collections.abc import Callable
from typing import Any

import numpy as np

from metrics.control import extractors as _control_extractors
from metrics.errors import UnavailableError
from metrics.registry import Registry


class EmbedderError(UnavailableError):
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
    # Bump when the embedding *code* changes (front end, framing, pooling) while name and weights stay: every
    # cache entry records it (``metrics.extract.code_version``), so entries of the old code are misses.
    code_version: str = "1"
    # Several registry entries can be heads of one network (musicnn-mtt's 200-d layer as an embedder and its
    # tag logits as a classifier). Such models name the same ``shared_forward`` (network, weights and front
    # end) and the ``head`` they read; ``metrics.extract`` then runs one forward pass per clip for all of them
    # through ``embed_heads`` instead of one per role. None: the model runs alone.
    shared_forward: str | None = None
    head: str = ""

    def embed(self, wave: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed_heads(self, waves: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        """Every head of the shared forward for several clips → ``{head: [per-clip array]}`` (one pass)."""
        return {self.head: self.embed_batch(waves)}

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

# Models other packages own (``mulan-ref``) come in through the ``musiclm_eval.embedders`` entry points.
EMBEDDERS = Registry("embedders", {
    "mel": "metrics.embedders.mel:factory",
    "vggish": "metrics.embedders.tfhub:vggish",
    "trill": "metrics.embedders.tfhub:trill",
    "torch": "metrics.embedders.torch_ckpt:factory",
    # real music taggers converted from the musicnn==0.1.0 wheel (200-d penultimate layer per 3 s patch)
    "musicnn-mtt": "metrics.embedders.musicnn:mtt",
    "musicnn-msd": "metrics.embedders.musicnn:msd",
    "classifier": "metrics.classifier:embedder",
    # MAD's embedder (metrics/mad.py): MERT-v1-330M hidden_states[24]; weights and MERT's code from the user
    "mert-v1-330m": "metrics.embedders.mert:factory",
    # melody adherence features (metrics/melody_adherence.py; the optional `melody` extra)
    "crepe-pitch": "metrics.melody_adherence:crepe_pitch",
    "chroma": "metrics.melody_adherence:chroma",
    # control features (metrics/control/__init__.py's registry: melody, key, chords, dynamics, rhythm)
    **_control_extractors(),
}, error=EmbedderError)


def refuse_weights(name: str, path: str | None) -> None:
    """Signal-processing extractors (chroma, loudness) have no weights: a path given for one is a mistake to
    report, not a setting to ignore silently."""
    if path:
        raise EmbedderError(f"{name} has no weights; a path ({path}) does not apply to it")


def register_embedder(name: str, factory: Factory | str) -> None:
    """Add (or replace) an entry: a callable ``factory(path, device)`` or a ``"module:attr"`` string."""
    EMBEDDERS.register(name, factory)


def available_embedders() -> list[str]:
    return EMBEDDERS.names()


def get_embedder(name: str, path: str | None = None, device: str = "cpu") -> Embedder:
    """Build the embedder ``name``; ``torch:<checkpoint>`` loads a generic torch checkpoint."""
    if name.startswith("torch:"):
        name, path = "torch", name[len("torch:"):]
    if name not in EMBEDDERS:
        raise EmbedderError(f"unknown embedder {name!r}; available: {', '.join(available_embedders())} "
                            "(or torch:<checkpoint.pt>)")
    return EMBEDDERS.factory(name)(path=path, device=device)


__all__ = ["EMBEDDERS", "Embedder", "EmbedderError", "available_embedders", "get_embedder", "register_embedder"]

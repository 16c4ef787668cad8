"""Where the heavy stages run: in this process (``local``, the default) or on a Ray cluster (``ray``).

Why an engine object instead of a flag deep inside each metric: the commands (``stats``, ``fad``,
``score``, ``compare``, ``memorization audit``) all do the same two heavy things — clips → embeddings
(through the content-hashed cache) and, for FAD, embeddings → mergeable ``EmbeddingStats`` — so one
small protocol with two implementations keeps every command's numbers identical whichever engine
ran them. The local engine is exactly the code path the commands used before (``embed_clips``,
per-clip ``EmbeddingStats.update`` in id order); ``metrics.ray_engine`` is imported only when asked,
so Ray stays an optional extra.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from metrics.audio import Clip, Skipped
from metrics.cache import EmbeddingCache
from metrics.embedders import Embedder, get_embedder
from metrics.extract import EmbeddingSet, embed_clips, preprocessing_key
from metrics.fad import EmbeddingStats

ENGINES = ("local", "ray")
RAY_EXTRA_HINT = "pip install 'musiclm-eval[ray]'"

Items = Sequence[Clip] | Sequence[str | Path]


class EngineUnavailableError(RuntimeError):
    """The requested engine cannot run here (e.g. ``--engine ray`` without the ``ray`` extra)."""


@dataclass(frozen=True)
class EmbedderSpec:
    """How to rebuild an embedder on a worker (name, weights path, device) instead of pickling it.

    Remote workers build their own copy — on their GPU when ``device`` is a CUDA device and the
    cluster has GPUs — because some embedders (TF-Hub models) do not pickle and a model pickled on
    the driver would land on the driver's device.
    """

    name: str
    path: str | None = None
    device: str = "cpu"

    def build(self) -> Embedder:
        return get_embedder(self.name, self.path, self.device)


def empty_stats(embedder: Embedder) -> EmbeddingStats:
    """Statistics tagged with the embedder id and pre-processing (what ``stats``/``fad`` check on load)."""
    return EmbeddingStats(embedder=embedder.id, config={**embedder.config, "preprocessing": preprocessing_key(embedder)})


def stats_of(embs: EmbeddingSet, embedder: Embedder) -> EmbeddingStats:
    """Per-clip folds in id order: the reference the Ray engine's per-block merge is tested against."""
    s = empty_stats(embedder)
    for arr in embs.values():
        s.update(arr)
    return s


class Engine(Protocol):
    """What the commands need from an engine; both implementations return the same numbers."""

    name: str

    def embed(self, items: Items, embedder: Embedder, cache: EmbeddingCache | None = None, *, batch_size: int = 8,
              workers: int = 0, progress: bool = False, on_error: str = "raise",
              spec: EmbedderSpec | None = None) -> EmbeddingSet: ...

    def stats(self, items: Items, embedder: Embedder, cache: EmbeddingCache | None = None, *, batch_size: int = 8,
              workers: int = 0, progress: bool = False, on_error: str = "raise",
              spec: EmbedderSpec | None = None) -> tuple[EmbeddingStats, list[Skipped]]: ...

    def audit(self, generated, train, centroids, **kw): ...  # same signature/result as memorization.audit


class LocalEngine:
    """In-process: ``embed_clips`` (optionally with ``workers`` decode processes), then per-clip folds."""

    name = "local"

    def embed(self, items: Items, embedder: Embedder, cache: EmbeddingCache | None = None, *, batch_size: int = 8,
              workers: int = 0, progress: bool = False, on_error: str = "raise",
              spec: EmbedderSpec | None = None) -> EmbeddingSet:
        return embed_clips(items, embedder, cache, batch_size=batch_size, workers=workers, progress=progress,
                           on_error=on_error)

    def stats(self, items: Items, embedder: Embedder, cache: EmbeddingCache | None = None, *, batch_size: int = 8,
              workers: int = 0, progress: bool = False, on_error: str = "raise",
              spec: EmbedderSpec | None = None) -> tuple[EmbeddingStats, list[Skipped]]:
        embs = self.embed(items, embedder, cache, batch_size=batch_size, workers=workers, progress=progress,
                          on_error=on_error)
        return stats_of(embs, embedder), embs.skipped

    def audit(self, generated, train, centroids, **kw):
        """``metrics.memorization.audit`` in this process (the reference the Ray audit must equal)."""
        from metrics.memorization import audit

        return audit(generated, train, centroids, **kw)


LOCAL = LocalEngine()


def import_ray():
    """``import ray`` (and Ray Data), or an error that names the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise EngineUnavailableError(f"--engine ray needs Ray, which is not installed ({e}); install the extra: "
                                     f"{RAY_EXTRA_HINT}") from None
    return ray


def make_engine(name: str = "local", ray_address: str | None = None, num_cpus: int | None = None) -> Engine:
    """``local`` → the in-process engine; ``ray`` → connect to ``ray_address`` or start a local Ray."""
    if name == "local":
        if ray_address:
            raise EngineUnavailableError("--ray-address only applies to --engine ray")
        return LOCAL
    if name == "ray":
        import_ray()
        from metrics.ray_engine import RayEngine

        return RayEngine(address=ray_address, num_cpus=num_cpus or os.cpu_count() or 1)
    raise EngineUnavailableError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")

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
from pathlib import Path
from typing import Protocol

from metrics.audio import Clip, Skipped
from metrics.cache import EmbeddingCache
from metrics.embedders import Embedder
from metrics.errors import UnavailableError
from metrics.extract import EmbeddingSet, embed_clips, extract, preprocessing_key
from metrics.fad import EmbeddingStats
from metrics.models import ModelSpec
from metrics.registry import Registry

ENGINES = ("local", "ray")
RAY_EXTRA_HINT = "pip install 'musiclm-eval[ray]'"

Items = Sequence[Clip] | Sequence[str | Path]


class EngineUnavailableError(UnavailableError):
    """The requested engine cannot run here (e.g. ``--engine ray`` without the ``ray`` extra)."""




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
              spec: ModelSpec | None = None) -> EmbeddingSet: ...

    def stats(self, items: Items, embedder: Embedder, cache: EmbeddingCache | None = None, *, batch_size: int = 8,
              workers: int = 0, progress: bool = False, on_error: str = "raise",
              spec: ModelSpec | None = None) -> tuple[EmbeddingStats, list[Skipped]]: ...

    def extract(self, items: Items, models: dict[str, Embedder], specs: dict[str, ModelSpec],
                cache: EmbeddingCache | None = None, *, batch_size: int = 8, workers: int = 0,
                progress: bool = False, on_error: str = "raise") -> dict[str, EmbeddingSet]: ...

    def audit(self, generated, train, centroids, **kw): ...  # same signature/result as memorization.audit


class LocalEngine:
    """In-process: ``embed_clips`` (optionally with ``workers`` decode processes), then per-clip folds."""

    name = "local"

    def embed(self, items: Items, embedder: Embedder, cache: EmbeddingCache | None = None, *, batch_size: int = 8,
              workers: int = 0, progress: bool = False, on_error: str = "raise",
              spec: ModelSpec | None = None) -> EmbeddingSet:
        return embed_clips(items, embedder, cache, batch_size=batch_size, workers=workers, progress=progress,
                           on_error=on_error)

    def extract(self, items: Items, models: dict[str, Embedder], specs: dict[str, ModelSpec],
                cache: EmbeddingCache | None = None, *, batch_size: int = 8, workers: int = 0,
                progress: bool = False, on_error: str = "raise") -> dict[str, EmbeddingSet]:
        """Every model over the same clips in one streaming pass (each clip decoded once per rate)."""
        return extract(items, models, cache, batch_size=batch_size, workers=workers, progress=progress,
                       on_error=on_error)

    def stats(self, items: Items, embedder: Embedder, cache: EmbeddingCache | None = None, *, batch_size: int = 8,
              workers: int = 0, progress: bool = False, on_error: str = "raise",
              spec: ModelSpec | None = None) -> tuple[EmbeddingStats, list[Skipped]]:
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


# Engines are registered by name like models; ``ray`` is imported only when asked for.
ENGINE_REGISTRY = Registry("engines", {"local": "metrics.engine:local_engine", "ray": "metrics.ray_engine:RayEngine"},
                           error=EngineUnavailableError)


def local_engine(address: str | None = None, num_cpus: int | None = None) -> LocalEngine:
    if address:
        raise EngineUnavailableError("--ray-address only applies to --engine ray")
    return LOCAL


def make_engine(name: str = "local", ray_address: str | None = None, num_cpus: int | None = None) -> Engine:
    """``local`` → the in-process engine; ``ray`` → connect to ``ray_address`` or start a local Ray."""
    if name not in ENGINE_REGISTRY:
        raise EngineUnavailableError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_REGISTRY.names())}")
    if name == "ray":
        import_ray()
    return ENGINE_REGISTRY.factory(name)(address=ray_address, num_cpus=num_cpus or os.cpu_count() or 1)

"""Clips → embeddings: the one path every metric uses (through the cache, batched, with a progress bar).

For file paths the cache is consulted *before* decoding (the key needs only the file's sha256), so
a warm run decodes nothing. Misses are decoded and resampled to the embedder's rate by
``metrics.audio.load_audio`` — in ``workers`` spawned processes when asked, since decoding and
resampling are CPU work that would otherwise starve the embedder — then zero-padded to a whole
number of ``embedder.pad_to_seconds`` (Google's VGGish/TRILL pre-processing), embedded in batches
and written to the cache. A clip too short for one frame is an ``AudioError`` naming the file.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from metrics.audio import AudioError, Clip, OnError, Skipped, file_sha256, load_audio, preprocessing_id, resample
from metrics.cache import EmbeddingCache
from metrics.embedders import Embedder

log = logging.getLogger(__name__)


class EmbeddingSet(dict):
    """id → [frames, dim] float32, sorted by id; ``skipped`` lists clips left out under ``on_error='skip'``."""

    def __init__(self, *args, skipped: list[Skipped] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped: list[Skipped] = skipped or []

    @property
    def n_frames(self) -> int:
        return sum(len(v) for v in self.values())


def preprocessing_key(embedder: Embedder, via_sr: int | None = None) -> str:
    """Everything between the file bytes and the embedder input, as a string for cache keys/metadata."""
    key = f"{preprocessing_id(embedder.sample_rate)};pad_to_seconds={embedder.pad_to_seconds}"
    return key + (f";via_sr={via_sr}" if via_sr is not None else "")


def pad_to_whole(wave: np.ndarray, sr: int, seconds: float | None) -> np.ndarray:
    """Zero-pad to a whole multiple of ``seconds`` (so a 0.5 s clip becomes 1 s); no-op when None."""
    if not seconds:
        return wave
    unit = int(round(seconds * sr))
    target = max(1, -(-len(wave) // unit)) * unit
    return np.pad(wave, (0, target - len(wave))) if target > len(wave) else wave


def _load(path: str, sr: int) -> tuple:
    """Worker-side decode; returns plain tuples (AudioError does not survive pickling) and warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            clip = load_audio(path, sr=sr)
        except AudioError as e:
            return ("error", e.path, e.problem, [])
    return ("ok", clip.wave, clip.sr, [(w.category, str(w.message)) for w in caught])


def _one_thread_worker() -> None:
    """Pool initializer: each decode worker resamples on one thread. Left to the default, every worker's
    torch would start one thread per core, so N workers plus the embedder oversubscribe the machine."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def _decode_all(paths: list[str], sr: int, workers: int) -> Iterator[tuple]:
    if workers <= 0 or len(paths) < 2:
        for p in paths:
            yield _load(p, sr)
        return
    ctx = multiprocessing.get_context("spawn")  # fork after torch/TF threads can deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_one_thread_worker) as pool:
        yield from pool.map(_load, paths, [sr] * len(paths), chunksize=max(1, len(paths) // (4 * workers)))


def _wave_sha(clip: Clip) -> str:
    h = hashlib.sha256(f"wave:{clip.sr}:".encode())
    h.update(np.ascontiguousarray(clip.wave, dtype=np.float32).tobytes())
    return "wave-" + h.hexdigest()


def embed_clips(
    clips: Sequence[Clip] | Sequence[str | Path],
    embedder: Embedder,
    cache: EmbeddingCache | None = None,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = False,
    on_error: OnError = "raise",
) -> EmbeddingSet:
    """Embed clips (``Clip`` objects or audio file paths) → ``{id: [frames, dim] float32}``.

    ``Clip`` inputs not at the embedder's rate are resampled here; their cache key records the
    intermediate rate because resampling twice differs from resampling once.
    """
    from tqdm.auto import tqdm

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    skipped: list[Skipped] = []
    out: dict[str, np.ndarray] = {}
    # (id, source path for messages, cache key or None, wave or None-to-decode)
    todo: list[tuple[str, str, str | None, np.ndarray | None]] = []

    def fail(path: str, problem: str) -> None:
        if on_error == "raise":
            raise AudioError(path, problem)
        log.warning("skipping %s: %s", path, problem)
        skipped.append(Skipped(path, problem))

    seen: dict[str, str] = {}
    for item in clips:
        if isinstance(item, Clip):
            cid, src = item.id, item.path or f"<clip {item.id}>"
        else:
            cid, src = Path(item).stem, str(item)
        if cid in seen:
            raise AudioError(src, f"duplicate id {cid!r} (also {seen[cid]})")
        seen[cid] = src
        if isinstance(item, Clip):
            if not np.isfinite(item.wave).all():
                fail(src, "contains NaN/Inf samples")
                continue
            via = item.sr if item.sr != embedder.sample_rate else None
            sha = item.sha256 or _wave_sha(item)
            key = cache.key(sha, embedder.id, preprocessing_key(embedder, via)) if cache else None
            wave = resample(item.wave, item.sr, embedder.sample_rate) if via else item.wave
        else:
            try:
                sha = file_sha256(src) if cache else ""
            except OSError as e:
                fail(src, f"cannot read file ({e.strerror or e})")
                continue
            key = cache.key(sha, embedder.id, preprocessing_key(embedder)) if cache else None
            wave = None
        hit = cache.get(key) if cache else None
        if hit is not None:
            out[cid] = hit
        else:
            todo.append((cid, src, key, wave))

    bar = tqdm(total=len(seen), initial=len(out), desc=f"embed {embedder.name}", unit="clip", disable=not progress)
    decoded = _decode_all([src for _, src, _, w in todo if w is None], embedder.sample_rate, workers)
    batch: list[tuple[str, str, str | None, np.ndarray]] = []

    def flush() -> None:
        embs = embedder.embed_batch([w for *_, w in batch])
        for (cid, src, key, _), emb in zip(batch, embs):
            emb = np.asarray(emb, dtype=np.float32)
            if emb.ndim != 2 or emb.shape[1] != embedder.dim:
                raise AudioError(src, f"{embedder.name} returned shape {emb.shape}, expected [frames, {embedder.dim}]")
            if not len(emb):
                fail(src, f"yields no {embedder.name} frame")
                continue
            if not np.isfinite(emb).all():
                fail(src, f"{embedder.name} embedding contains NaN/Inf")
                continue
            out[cid] = emb
            if cache is not None and key is not None:
                cache.put(key, emb)
        bar.update(len(batch))
        batch.clear()

    for cid, src, key, wave in todo:
        if wave is None:
            status, *rest = next(decoded)
            if status == "error":
                fail(rest[0], rest[1])
                bar.update(1)
                continue
            wave, _, caught = rest
            for category, message in caught:
                warnings.warn(message, category, stacklevel=2)
        wave = pad_to_whole(wave, embedder.sample_rate, embedder.pad_to_seconds)
        seconds = len(wave) / embedder.sample_rate
        if seconds < embedder.min_seconds:
            fail(src, f"too short for {embedder.name}: {seconds:.3f} s < {embedder.min_seconds:.3f} s (one embedding frame)")
            bar.update(1)
            continue
        batch.append((cid, src, key, wave))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    bar.close()
    return EmbeddingSet(sorted(out.items()), skipped=skipped)

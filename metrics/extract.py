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
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from metrics.audio import AudioError, Clip, OnError, Skipped, load_audio, preprocessing_id, resample
from metrics.cache import EmbeddingCache
from metrics.embedders import Embedder
from metrics.io import file_sha256

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


# Bump when the decode / mono / resample / pad *code* changes: part of every cache entry's code version.
PREPROCESSING_VERSION = 1


def code_version(embedder: Embedder) -> str:
    """The code path behind an embedding, recorded in each cache entry and checked on every read:
    ``<embedder id>|code=<its declared code_version>|pre=<PREPROCESSING_VERSION>:<settings hash>``.
    The key already holds the weights and settings; this catches new code under an unchanged name and weights."""
    pre = hashlib.sha256(preprocessing_key(embedder).encode()).hexdigest()[:12]
    return f"{embedder.id}|code={embedder.code_version}|pre={PREPROCESSING_VERSION}:{pre}"


def pad_to_whole(wave: np.ndarray, sr: int, seconds: float | None) -> np.ndarray:
    """Zero-pad to a whole multiple of ``seconds`` (so a 0.5 s clip becomes 1 s); no-op when None."""
    if not seconds:
        return wave
    unit = int(round(seconds * sr))
    target = max(1, -(-len(wave) // unit)) * unit
    return np.pad(wave, (0, target - len(wave))) if target > len(wave) else wave


def load_in_worker(path: str, rates: int | Sequence[int]) -> tuple:
    """Decode one file once and resample it to each rate (``metrics.audio.load_audio``'s exact steps).

    Returns plain tuples, because ``AudioError`` does not survive pickling out of a worker process:
    ``("ok", {rate: wave}, file_sr, [(category, message)])`` or ``("error", path, problem, [])``.
    A single ``int`` rate returns the wave itself in place of the dict (what the Ray engine uses).
    """
    single = isinstance(rates, int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            clip = load_audio(path)
        except AudioError as e:
            return ("error", e.path, e.problem, [])
    waves = {r: (clip.wave if r == clip.sr else resample(clip.wave, clip.sr, r)) for r in ([rates] if single else rates)}
    return ("ok", waves[rates] if single else waves, clip.sr, [(w.category, str(w.message)) for w in caught])


def _one_thread_worker() -> None:
    """Pool initializer: each decode worker resamples on one thread. Left to the default, every worker's
    torch would start one thread per core, so N workers plus the embedder oversubscribe the machine."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def _decode_all(jobs: list[tuple[str, tuple[int, ...]]], workers: int, ahead: int) -> Iterator[tuple]:
    """Decoded clips in job order, at most ``ahead`` in flight: memory does not grow with the job count."""
    if workers <= 0 or len(jobs) < 2:
        for path, rates in jobs:
            yield load_in_worker(path, rates)
        return
    ctx = multiprocessing.get_context("spawn")  # fork after torch/TF threads can deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_one_thread_worker) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(load_in_worker, *job))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def wave_sha256(clip: Clip) -> str:
    """Content hash of an in-memory clip (its cache key when it did not come from a file)."""
    h = hashlib.sha256(f"wave:{clip.sr}:".encode())
    h.update(np.ascontiguousarray(clip.wave, dtype=np.float32).tobytes())
    return "wave-" + h.hexdigest()


def shared_passes(models: Mapping[str, Embedder]) -> list[tuple[str, ...]]:
    """The forward passes a run needs: model keys grouped by the network they are heads of.

    Models naming the same ``shared_forward`` and seeing the same input (rate, padding, minimum length)
    form one pass (``embed_heads``); every other model is a pass of its own. The progress line and the
    batches follow these passes, so a model in two roles is run — and listed — once.
    """
    groups: dict[tuple, list[str]] = {}
    for k, m in models.items():
        tag = (m.shared_forward, m.sample_rate, m.pad_to_seconds, m.min_seconds) if m.shared_forward else (k,)
        groups.setdefault(tag, []).append(k)
    return [tuple(g) for g in groups.values()]


def extract(
    clips: Sequence[Clip] | Sequence[str | Path],
    models: Mapping[str, Embedder],
    cache: EmbeddingCache | None = None,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = False,
    on_error: OnError = "raise",
    desc: str = "embed",
) -> dict[str, EmbeddingSet]:
    """Run several models over the same clips → ``{model key: {id: [frames, dim] float32}}``.

    Streaming: the cache is consulted first (a clip every model has cached is never decoded); the
    misses are decoded once per clip, resampled once per sample rate the models need, fed to each
    pass's batch and dropped, so memory holds only the per-clip outputs, never every waveform.
    Models that are heads of one network share one forward pass (``shared_passes``), and clips with
    the same content (the same cache key: e.g. one melody prompt copied under several ids) are
    computed once. ``Clip`` inputs not at a model's rate are resampled here; their cache key records
    the intermediate rate because resampling twice differs from resampling once.
    """
    from tqdm.auto import tqdm

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    out: dict[str, dict[str, np.ndarray]] = {k: {} for k in models}
    skipped: dict[str, list[Skipped]] = {k: [] for k in models}
    failed: dict[tuple[str, str], str] = {}  # (model key, source) → problem, for clips with the same content

    def fail(path: str, problem: str, keys) -> None:
        if on_error == "raise":
            raise AudioError(path, problem)
        log.warning("skipping %s: %s", path, problem)
        for k in keys:
            skipped[k].append(Skipped(path, problem))
            failed[(k, path)] = problem

    # 1. ids, content hashes and cache look-ups; what is left to compute per clip
    seen: dict[str, str] = {}
    planned: dict[str, tuple[str, str]] = {}  # cache key → (id, source) of the clip that computes it
    copies: list[tuple[str, str, str, tuple[str, str]]] = []  # (model key, id, source, planned clip)
    todo: list[tuple[str, str, Clip | None, dict[str, str | None]]] = []  # (id, src, clip, {model key: cache key})
    for item in clips:
        clip = item if isinstance(item, Clip) else None
        cid, src = (clip.id, clip.path or f"<clip {clip.id}>") if clip else (Path(item).stem, str(item))
        if cid in seen:
            raise AudioError(src, f"duplicate id {cid!r} (also {seen[cid]})")
        seen[cid] = src
        if clip is not None and not np.isfinite(clip.wave).all():
            fail(src, "contains NaN/Inf samples", models)
            continue
        sha = None
        if cache is not None:
            try:
                sha = (clip.sha256 or wave_sha256(clip)) if clip else file_sha256(src)
            except OSError as e:
                fail(src, f"cannot read file ({e.strerror or e})", models)
                continue
        missing: dict[str, str | None] = {}
        for k, m in models.items():
            via = clip.sr if (clip is not None and clip.sr != m.sample_rate) else None
            key = cache.key(sha, m.id, preprocessing_key(m, via)) if cache is not None else None
            hit = cache.get(key, code_version(m)) if key else None
            if hit is not None:
                out[k][cid] = hit
            elif key is not None and key in planned:
                copies.append((k, cid, src, planned[key]))
            else:
                missing[k] = key
                if key is not None:
                    planned[key] = (cid, src)
        if missing:
            todo.append((cid, src, clip, missing))

    # 2. decode each miss once (per sample rate), batch per forward pass, drop the waves
    passes = shared_passes(models)
    pass_of = {k: p for p in passes for k in p}
    n_done = len(seen) - len(todo)
    bar = tqdm(total=len(seen), initial=n_done, desc=f"{desc} {'+'.join(models[p[0]].name for p in passes)}",
               unit="clip", disable=not progress)
    jobs = [(src, tuple(sorted({models[k].sample_rate for k in miss}))) for _, src, clip, miss in todo if clip is None]
    decoded = _decode_all(jobs, workers, ahead=max(2 * workers, 1) + batch_size)
    # per pass: (id, source, wave, {model key of the pass: cache key}) for the clips it still has to run
    batches: dict[tuple[str, ...], list[tuple[str, str, np.ndarray, dict[str, str | None]]]] = {p: [] for p in passes}

    def keep(k: str, cid: str, src: str, key: str | None, emb: np.ndarray) -> None:
        m = models[k]
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != m.dim:
            raise AudioError(src, f"{m.name} returned shape {emb.shape}, expected [frames, {m.dim}]")
        if not len(emb):
            fail(src, f"yields no {m.name} frame", [k])
        elif not np.isfinite(emb).all():
            fail(src, f"{m.name} embedding contains NaN/Inf", [k])
        else:
            out[k][cid] = emb
            if cache is not None and key is not None:
                cache.put(key, emb, code_version(m))

    def flush(p: tuple[str, ...]) -> None:
        batch = batches[p]
        waves = [wave for _, _, wave, _ in batch]
        if len(p) == 1:
            outs = {p[0]: models[p[0]].embed_batch(waves)}
        else:
            heads = models[p[0]].embed_heads(waves)
            outs = {k: heads[models[k].head] for k in p}
        for i, (cid, src, _, keys) in enumerate(batch):
            for k, key in keys.items():
                keep(k, cid, src, key, outs[k][i])
        batch.clear()

    for cid, src, clip, missing in todo:
        if clip is None:
            status, *rest = next(decoded)
            if status == "error":
                fail(rest[0], rest[1], missing)
                bar.update(1)
                continue
            waves, _, caught = rest
            for category, message in caught:
                warnings.warn(message, category, stacklevel=2)
        else:
            rates = {models[k].sample_rate for k in missing}
            waves = {r: (clip.wave if r == clip.sr else resample(clip.wave, clip.sr, r)) for r in rates}
        entries: dict[tuple[str, ...], tuple[np.ndarray, dict[str, str | None]]] = {}
        for k, key in missing.items():
            m = models[k]
            wave = pad_to_whole(waves[m.sample_rate], m.sample_rate, m.pad_to_seconds)
            seconds = len(wave) / m.sample_rate
            if seconds < m.min_seconds:
                fail(src, f"too short for {m.name}: {seconds:.3f} s < {m.min_seconds:.3f} s (one embedding frame)", [k])
                continue
            entries.setdefault(pass_of[k], (wave, {}))[1][k] = key
        for p, (wave, keys) in entries.items():
            batches[p].append((cid, src, wave, keys))
            if len(batches[p]) >= batch_size:
                flush(p)
        bar.update(1)
    for p in passes:
        if batches[p]:
            flush(p)
    bar.close()
    for k, cid, src, (first, first_src) in copies:  # the same audio under another id: its outputs, or its problem
        if first in out[k]:
            out[k][cid] = out[k][first]
        else:
            fail(src, failed.get((k, first_src), f"same audio as {first_src}, which was skipped"), [k])
    return {k: EmbeddingSet(sorted(out[k].items()), skipped=skipped[k]) for k in models}


def embed_clips(
    clips: Sequence[Clip] | Sequence[str | Path],
    embedder: Embedder,
    cache: EmbeddingCache | None = None,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = False,
    on_error: OnError = "raise",
) -> EmbeddingSet:
    """Embed clips (``Clip`` objects or audio file paths) with one model → ``{id: [frames, dim] float32}``."""
    return extract(clips, {"model": embedder}, cache, batch_size=batch_size, workers=workers, progress=progress,
                   on_error=on_error)["model"]

"""The Ray engine: embedding extraction as a Ray Data pipeline, FAD statistics as merged partial states.

Pipeline (one ``ray.data`` dataset of clip rows, in input order, then sorted back by index):

1. ``_prepare`` — CPU work: hash the file, look the content-hashed key up in the *shared* cache
   directory (the same key ``metrics.extract`` uses, so local and Ray runs share one cache), and
   only on a miss decode + resample (``metrics.audio.load_audio``) and zero-pad. Separate CPU tasks
   when the embedders sit on GPUs; on a CPU-only cluster the same function runs inside the actor's
   call (1-CPU tasks beside 1-CPU actors can starve each other of CPUs).
2. ``_EmbedActor`` — an actor pool (one GPU per actor when the embedder spec asks for CUDA and the
   cluster has GPUs): builds the embedder once, embeds the misses in batches, validates them and
   writes each one to the cache as soon as it exists. A killed worker is restarted and its batch
   retried (``max_restarts``/``max_task_retries``); work already cached is not redone, and a driver
   that dies is resumed by simply running again (every finished clip is a cache hit).
3. ``_block_stats`` — for ``stats``, per batch and inside the actor, the mergeable ``EmbeddingStats``
   partial state (n, mean, M2); the driver merges the partials in index order, so only d + d²
   numbers per batch cross the network instead of every frame.

Problems with single clips travel back as rows (status + message) and the driver applies the same
``on_error`` policy and messages as the local path; infrastructure failures are what Ray retries.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence

import numpy as np

from metrics.audio import AudioError, Clip, Skipped, resample
from metrics.cache import EmbeddingCache
from metrics.embedders import Embedder
from metrics.engine import Items, empty_stats, import_ray
from metrics.extract import (
    EmbeddingSet,
    code_version,
    load_in_worker,
    pad_to_whole,
    preprocessing_key,
    shared_passes,
    wave_sha256,
)
from metrics.fad import EmbeddingStats
from metrics.io import file_sha256
from metrics.models import ModelSpec

MAX_RETRIES = 3  # per task / per actor restart: bounded, so a deterministic crash fails instead of looping


def _f32(buf: bytes, dim: int | None = None) -> np.ndarray:
    arr = np.frombuffer(buf, dtype=np.float32)
    return arr.reshape(-1, dim) if dim else arr


def _prepare(batch: dict, *, sr: int, pad: float | None, min_seconds: float, name: str, embedder_ids: list[str],
             pre: str, cache_root: str | None, codes: list[str]) -> dict:
    """Stage 1 (CPU tasks): cache lookup, then decode/resample/pad only the misses.

    A pass may serve several heads of one network (``metrics.extract.shared_passes``): column ``key{j}`` /
    ``emb{j}`` belongs to head ``j``, and a clip is a hit only when every head's entry is."""
    cache = EmbeddingCache(cache_root) if cache_root is not None else None
    heads = range(len(embedder_ids))
    cols = ("idx", "id", "src", "status", "problem", "warnings", "wave", *(f"{c}{j}" for c in ("key", "emb") for j in heads))
    out: dict[str, list] = {k: [] for k in cols}
    for i in range(len(batch["idx"])):
        src, status, problem, caught = str(batch["src"][i]), "todo", "", []
        keys = [str(batch[f"key{j}"][i]) for j in heads]
        wave, embs, wave_arr = b"", [b"" for _ in heads], None
        try:
            if batch["has_wave"][i]:  # a Clip: its keys were computed on the driver; resample here
                wave_arr, sr_in = _f32(batch["wave"][i]), int(batch["sr"][i])
                if sr_in != sr:
                    wave_arr = resample(wave_arr, sr_in, sr)
            elif cache is not None:
                sha = file_sha256(src)
                keys = [EmbeddingCache.key(sha, eid, pre) for eid in embedder_ids]
            hits = [cache.get(k, c) for k, c in zip(keys, codes)] if (cache is not None and all(keys)) else [None]
            if all(h is not None for h in hits):
                status, embs = "hit", [np.ascontiguousarray(h, dtype=np.float32).tobytes() for h in hits]
            else:
                if wave_arr is None:
                    res = load_in_worker(src, sr)
                    if res[0] == "error":
                        status, src, problem = "error", res[1], res[2]
                    else:
                        wave_arr, caught = res[1], res[3]
                if status == "todo":
                    wave_arr = pad_to_whole(wave_arr, sr, pad)
                    seconds = len(wave_arr) / sr
                    if seconds < min_seconds:
                        status = "error"
                        problem = f"too short for {name}: {seconds:.3f} s < {min_seconds:.3f} s (one embedding frame)"
                    else:
                        wave = np.ascontiguousarray(wave_arr, dtype=np.float32).tobytes()
        except OSError as e:
            status, problem = "error", f"cannot read file ({e.strerror or e})"
        out["idx"].append(int(batch["idx"][i]))
        out["id"].append(str(batch["id"][i]))
        out["src"].append(src)
        out["status"].append(status)
        out["problem"].append(problem)
        out["warnings"].append(json.dumps([[c.__module__ + ":" + c.__qualname__, m] for c, m in caught]))
        out["wave"].append(wave)
        for j in heads:
            out[f"key{j}"].append(keys[j])
            out[f"emb{j}"].append(embs[j])
    return {k: np.array(v, dtype=object) for k, v in out.items()}


class _EmbedActor:
    """Stage 2 (actor pool): one network per actor; embed misses, validate, write the cache.

    ``heads`` lists the models this pass serves as ``(head, dim, name, code version)``; with more than one,
    the network runs once per batch through ``embed_heads`` (a model in two roles is forwarded once).
    On a CPU-only cluster stage 1 runs here too, in the same call (``prepare``)."""

    def __init__(self, embedder: Embedder | ModelSpec, cache_root: str | None, prepare: dict | None = None,
                 reduce_stats: bool = False, heads: list[tuple[str, int, str, str]] | None = None):
        self.embedder = embedder.build_audio() if isinstance(embedder, ModelSpec) else embedder
        self.cache = EmbeddingCache(cache_root) if cache_root is not None else None
        self.prepare = prepare  # stage 1's arguments when it runs inside this actor (CPU-only clusters)
        self.reduce_stats = reduce_stats  # stage 3 here too: ship d + d² numbers per batch, not embeddings
        e = self.embedder
        self.heads = heads or [(e.head, e.dim, e.name, code_version(e))]

    def _forward(self, waves: list[np.ndarray]) -> list[list[np.ndarray]]:
        if len(self.heads) == 1:
            return [self.embedder.embed_batch(waves)]
        outs = self.embedder.embed_heads(waves)
        return [outs[head] for head, *_ in self.heads]

    def __call__(self, batch: dict) -> dict:
        if self.prepare is not None:
            batch = _prepare(batch, **self.prepare)
        status = [str(s) for s in batch["status"]]
        problem = [str(p) for p in batch["problem"]]
        embs = [list(batch[f"emb{j}"]) for j in range(len(self.heads))]
        todo = [i for i, s in enumerate(status) if s == "todo"]
        if todo:
            outs = self._forward([_f32(batch["wave"][i]) for i in todo])
            for n, i in enumerate(todo):
                arrs = [np.asarray(out[n], dtype=np.float32) for out in outs]
                for (_, dim, name, _), arr in zip(self.heads, arrs):
                    if arr.ndim != 2 or arr.shape[1] != dim:
                        status[i], problem[i] = "fatal", f"{name} returned shape {arr.shape}, expected [frames, {dim}]"
                    elif not len(arr):
                        status[i], problem[i] = "error", f"yields no {name} frame"
                    elif not np.isfinite(arr).all():
                        status[i], problem[i] = "error", f"{name} embedding contains NaN/Inf"
                    if status[i] != "todo":
                        break
                else:
                    status[i] = "ok"
                    for j, ((*_, code), arr) in enumerate(zip(self.heads, arrs)):
                        embs[j][i] = np.ascontiguousarray(arr).tobytes()
                        key = str(batch[f"key{j}"][i])
                        if self.cache is not None and key:
                            self.cache.put(key, arr, code)
        keep = ("idx", "id", "src", "warnings")
        out = {**{k: batch[k] for k in keep}, "status": np.array(status, dtype=object),
               "problem": np.array(problem, dtype=object),
               **{f"emb{j}": np.array(e, dtype=object) for j, e in enumerate(embs)}}
        return _block_stats(out, self.heads[0][1]) if self.reduce_stats else out


def _block_stats(batch: dict, dim: int) -> dict:
    """Stage 3 (in the actor): a batch → one row with its partial ``EmbeddingStats`` and per-clip report."""
    s = EmbeddingStats(dim=dim)
    report = []
    for i in range(len(batch["idx"])):
        st = str(batch["status"][i])
        if st in ("ok", "hit"):
            s.update(_f32(batch["emb0"][i], dim))
        report.append([int(batch["idx"][i]), str(batch["id"][i]), str(batch["src"][i]), st, str(batch["problem"][i]),
                       str(batch["warnings"][i])])
    n, n_clips, mean, m2 = s.partial()
    return {"first": np.array([min(int(x) for x in batch["idx"])]), "n": np.array([n]),
            "n_clips": np.array([n_clips]), "mean": np.array([mean.tobytes()], dtype=object),
            "m2": np.array([m2.tobytes()], dtype=object), "report": np.array([json.dumps(report)], dtype=object)}


class RayEngine:
    """Runs extraction on Ray; the numbers equal the local engine's (statistics to rounding)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, actors: int | None = None,
                 max_retries: int = MAX_RETRIES):
        ray = import_ray()
        if not ray.is_initialized():
            if address:
                ray.init(address=address)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False)
        self.actors = actors
        self.max_retries = max_retries

    # ------------------------------------------------------------------ pipeline

    def _rows(self, items: Items, models: Sequence[Embedder], cache: EmbeddingCache | None, fail) -> list[dict]:
        """One row per clip; ``key{j}`` is head ``j``'s cache key (files: computed by the worker that hashes them)."""
        embedder, rows, seen = models[0], [], {}
        for idx, item in enumerate(items):
            if isinstance(item, Clip):
                cid, src = item.id, item.path or f"<clip {item.id}>"
            else:
                cid, src = os.path.splitext(os.path.basename(str(item)))[0], str(item)
            if cid in seen:
                raise AudioError(src, f"duplicate id {cid!r} (also {seen[cid]})")
            seen[cid] = src
            row = {"idx": idx, "id": cid, "src": src, "has_wave": False, "wave": b"", "sr": 0,
                   **{f"key{j}": "" for j in range(len(models))}}
            if isinstance(item, Clip):
                if not np.isfinite(item.wave).all():
                    fail(idx, src, "contains NaN/Inf samples")
                    continue
                via = item.sr if item.sr != embedder.sample_rate else None
                if cache is not None:
                    sha, pre = item.sha256 or wave_sha256(item), preprocessing_key(embedder, via)
                    row.update({f"key{j}": cache.key(sha, m.id, pre) for j, m in enumerate(models)})
                row.update(has_wave=True, wave=np.ascontiguousarray(item.wave, dtype=np.float32).tobytes(), sr=item.sr)
            rows.append(row)
        return rows

    def _dataset(self, rows: list[dict], models: Sequence[Embedder], cache: EmbeddingCache | None, batch_size: int,
                 progress: bool, spec: ModelSpec | None, reduce_stats: bool = False):
        ray = import_ray()
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.print_on_execution_start = False
        root = str(cache.root) if cache is not None else None
        n_cpus = int(ray.cluster_resources().get("CPU", 1))
        gpus = ray.cluster_resources().get("GPU", 0) > 0 and spec is not None and spec.device.startswith("cuda")
        actors = self.actors or max(1, n_cpus)
        actors = max(1, min(actors, len(rows)))
        n_blocks = max(1, min(len(rows), 4 * actors))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")  # max_restarts has no named parameter
            return self._build(ray, rows, models, root, batch_size, spec, gpus, actors, n_blocks, reduce_stats)

    def _build(self, ray, rows, models, root, batch_size, spec, gpus, actors, n_blocks, reduce_stats):
        ds = ray.data.from_items(rows, override_num_blocks=n_blocks)
        embedder = models[0]
        prep = {"sr": embedder.sample_rate, "pad": embedder.pad_to_seconds, "min_seconds": embedder.min_seconds,
                "name": embedder.name, "embedder_ids": [m.id for m in models], "pre": preprocessing_key(embedder),
                "cache_root": root, "codes": [code_version(m) for m in models]}
        heads = [(m.head, m.dim, m.name, code_version(m)) for m in models]
        # Actor restarts + retried calls are what survive a killed worker (bounded: a deterministic crash fails).
        remote = {"max_restarts": self.max_retries, "max_task_retries": self.max_retries}
        if gpus:
            # decode on CPU tasks (Ray retries tasks on worker death by default), infer on GPU actors
            ds = ds.map_batches(_prepare, fn_kwargs=prep, batch_size=batch_size, batch_format="numpy", num_cpus=1)
            remote["num_gpus"], inline = 1, None
        else:
            # CPU-only: decode inside the actor's call. Separate 1-CPU decode tasks beside 1-CPU actors
            # can hold every CPU in actors and starve the decoders (a deadlock seen on 2 cores).
            remote["num_cpus"], inline = 1, prep
        ds = ds.map_batches(_EmbedActor, fn_constructor_args=(spec if spec is not None else embedder, root, inline, reduce_stats, heads),
                            batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                            **remote)
        return ds

    def _finish(self, report: Sequence[Sequence], cache: EmbeddingCache | None, fail) -> list[int]:
        """Apply the on_error policy to per-clip reports (in input order); return indices of good clips."""
        good = []
        for idx, _cid, src, status, problem, caught in sorted(report, key=lambda r: r[0]):
            for category, message in json.loads(caught):
                warnings.warn(message, _category(category), stacklevel=3)
            if status == "fatal":
                raise AudioError(src, problem)
            if status == "error":
                fail(idx, src, problem)
                continue
            if cache is not None:
                if status == "hit":
                    cache.hits += 1
                else:
                    cache.misses += 1
            good.append(idx)
        return good

    @staticmethod
    def _policy(on_error: str):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        skipped: list[tuple[int, Skipped]] = []

        def fail(idx: int, path: str, problem: str) -> None:
            if on_error == "raise":
                raise AudioError(path, problem)
            skipped.append((idx, Skipped(path, problem)))

        return skipped, fail

    # ------------------------------------------------------------------ engine API

    def embed(self, items: Items, embedder: Embedder, cache: EmbeddingCache | None = None, *, batch_size: int = 8,
              workers: int = 0, progress: bool = False, on_error: str = "raise",
              spec: ModelSpec | None = None) -> EmbeddingSet:
        """Same result as ``embed_clips``: id → [frames, dim] float32, sorted by id, with ``skipped``."""
        return self._embed_pass(items, [embedder], cache, batch_size, progress, on_error, spec)[0]

    def _embed_pass(self, items: Items, models: Sequence[Embedder], cache: EmbeddingCache | None, batch_size: int,
                    progress: bool, on_error: str, spec: ModelSpec | None) -> list[EmbeddingSet]:
        """One forward pass over the clips giving every head in ``models`` (one network, several roles)."""
        skipped, fail = self._policy(on_error)
        rows = self._rows(items, models, cache, fail)
        out: list[dict[str, np.ndarray]] = [{} for _ in models]
        if rows:
            got = self._dataset(rows, models, cache, batch_size, progress, spec).take_all()
            report = [[r["idx"], r["id"], r["src"], r["status"], r["problem"], r["warnings"]] for r in got]
            by_idx = {int(r["idx"]): r for r in got}
            for idx in self._finish(report, cache, fail):
                r = by_idx[idx]
                for j, m in enumerate(models):
                    out[j][str(r["id"])] = _f32(r[f"emb{j}"], m.dim).copy()
        gone = [s for _, s in sorted(skipped, key=lambda t: t[0])]
        return [EmbeddingSet(sorted(o.items()), skipped=list(gone)) for o in out]

    def stats(self, items: Items, embedder: Embedder, cache: EmbeddingCache | None = None, *, batch_size: int = 8,
              workers: int = 0, progress: bool = False, on_error: str = "raise",
              spec: ModelSpec | None = None) -> tuple[EmbeddingStats, list[Skipped]]:
        """Per-block partial statistics computed on the workers, merged here in input order."""
        skipped, fail = self._policy(on_error)
        rows = self._rows(items, [embedder], cache, fail)
        total = empty_stats(embedder)
        if rows:
            parts = self._dataset(rows, [embedder], cache, batch_size, progress, spec, reduce_stats=True).take_all()
            report = [r for p in parts for r in json.loads(p["report"])]
            self._finish(report, cache, fail)
            for p in sorted(parts, key=lambda p: int(p["first"])):
                total.merge(EmbeddingStats.from_partial(
                    p["n"], p["n_clips"], np.frombuffer(p["mean"], dtype=np.float64).copy(),
                    np.frombuffer(p["m2"], dtype=np.float64).reshape(embedder.dim, embedder.dim).copy()))
        return total, [s for _, s in sorted(skipped, key=lambda t: t[0])]

    def extract(self, items: Items, models: dict[str, Embedder], specs: dict[str, ModelSpec],
                cache: EmbeddingCache | None = None, *, batch_size: int = 8, workers: int = 0,
                progress: bool = False, on_error: str = "raise") -> dict[str, EmbeddingSet]:
        """Each forward pass (``shared_passes``: heads of one network together) over the clips on the cluster;
        workers build the models from ``specs`` (never pickled)."""
        missing = sorted(set(models) - set(specs))
        if missing:
            raise ValueError(f"the Ray engine needs a ModelSpec for every model (missing: {', '.join(missing)})")
        out: dict[str, EmbeddingSet] = {}
        for p in shared_passes(models):
            sets = self._embed_pass(items, [models[k] for k in p], cache, batch_size, progress, on_error, specs[p[0]])
            out.update(zip(p, sets))
        return {k: out[k] for k in models}

    def audit(self, generated, train, centroids, **kw):
        """Same arguments and result as ``metrics.memorization.audit``; ``shards=`` sets the fan-out."""
        from metrics.memorization.ray import ray_audit

        return ray_audit(self, generated, train, centroids, **kw)


def _category(name: str) -> type[Warning]:
    """Rebuild a warning class from ``module:qualname`` (falls back to UserWarning)."""
    import importlib

    module, _, qual = name.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
        return obj if isinstance(obj, type) and issubclass(obj, Warning) else UserWarning
    except Exception:
        return UserWarning


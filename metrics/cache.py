"""Content-addressed embedding cache whose entries are checked before they are trusted.

Entries are keyed by what determines the embedding — the sha256 of the audio file's bytes, the
embedder id (name + weights hash) and the pre-processing config — never by file name, so a renamed
file is a hit and a file changed by one byte is a miss. Writes go to a temporary file in the same
directory and are renamed into place (atomic on POSIX), so a process killed mid-write never leaves
an entry that is later read back.

Each entry (``<key>.npz``: members ``array`` and ``meta``) also carries the sha256 of its array, its
own key and the *code version* of the path that produced it (the embedder's declared code version
and the pre-processing code, see ``metrics.extract.code_version``). A key alone cannot catch an entry
whose bytes changed but still parse (a synced or copied cache, a disk error, an edit), nor a change
of pre-processing code that keeps the embedder's name and weights (fadtk's stale-embedding failure):
so ``get`` re-hashes the array and compares the code version, and any mismatch is a miss with one
warning per cache object, never a number. ``verify`` reports every bad entry (``musiclm-eval cache
verify``). Entries of the earlier unchecked ``.npy`` format are never read; ``verify`` lists them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from metrics.io import atomic_write_bytes

log = logging.getLogger(__name__)

ENTRY_SUFFIX = ".npz"
LEGACY_SUFFIX = ".npy"  # the earlier format: a bare array, no checksum, no code version; never read
KEY_VERSION = 1
ENTRY_FORMAT = 2


class CacheEntryWarning(UserWarning):
    """A cache entry failed its check (checksum, key or code version) and was recomputed, not used."""


def default_cache_root() -> Path:
    env = os.environ.get("MUSICLM_EVAL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "musiclm-eval" / "embeddings"


def module_sha256(module, config=None, skip_prefix: str | None = None) -> str:
    """sha256 of a torch module as it is in memory, the weights it computes with: its ``config`` dataclass (JSON,
    sorted keys) then every state-dict entry's name and bytes in name order (names starting ``skip_prefix`` left
    out). Duck-typed (``state_dict()``), so this module needs no torch."""
    from dataclasses import asdict

    h = hashlib.sha256(json.dumps(asdict(config), sort_keys=True, default=str).encode() if config is not None else b"")
    for k, v in sorted(module.state_dict().items()):
        if skip_prefix is None or not k.startswith(skip_prefix):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cached_array(cache: EmbeddingCache | None, key: str, code: str, compute) -> tuple[np.ndarray, bool]:
    """``compute()`` through ``cache``: the entry of ``key`` when it is there and sound (checksum, key, ``code``),
    else computed and written (atomically). Returns the array and whether it was read; no cache: computed."""
    if cache is not None and (hit := cache.get(key, code)) is not None:
        return hit, True
    out = np.asarray(compute())
    if cache is not None:
        cache.put(key, out, code)
    return out, False


def array_sha256(array: np.ndarray) -> str:
    """Checksum of an array's dtype, shape and bytes: what an entry promises to hold."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data)
    return h.hexdigest()


def _load_entry(path: Path) -> tuple[np.ndarray, dict]:
    with np.load(path, allow_pickle=False) as z:
        return z["array"], json.loads(str(z["meta"][()]))


def entry_problem(array: np.ndarray, meta: dict, key: str, code: str | None = None) -> str | None:
    """Why a decoded entry must not be used (None when it is sound); ``code``: the code version expected."""
    if meta.get("format") != ENTRY_FORMAT:
        return f"entry format {meta.get('format')!r}, expected {ENTRY_FORMAT}"
    if meta.get("key") != key:
        return f"holds the entry of another key ({str(meta.get('key'))[:16]}…): copied or renamed"
    if meta.get("sha256") != array_sha256(array):
        return "array checksum mismatch (its bytes changed after it was written)"
    if code is not None and meta.get("code") != code:
        return f"written by code version {meta.get('code')!r}, this run's is {code!r}"
    return None


class EmbeddingCache:
    """One ``.npz`` file per (content, embedder, pre-processing), checked on every read.

    ``hits``/``misses`` count lookups; ``rejected`` counts entries that existed but failed their check
    (also counted as misses)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_root()
        self.hits = 0
        self.misses = 0
        self.rejected = 0
        self._warned = False

    @staticmethod
    def key(sha256: str, embedder_id: str, preprocessing: str) -> str:
        """A hex digest of everything that determines an embedding."""
        if not sha256 or not embedder_id:
            raise ValueError("a cache key needs the content sha256 and the embedder id")
        blob = json.dumps({"v": KEY_VERSION, "sha256": sha256, "embedder": embedder_id, "pre": preprocessing},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{ENTRY_SUFFIX}"

    def get(self, key: str, code: str | None = None) -> np.ndarray | None:
        """The cached array, or None: absent, unreadable, damaged, another key's, or (when ``code`` is
        given) written by another code version. A damaged or unreadable entry is removed."""
        path = self._path(key)
        try:
            arr, meta = _load_entry(path)
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception as e:  # truncated or foreign file: never trust it
            problem, damaged = f"unreadable ({type(e).__name__}: {e})", True
        else:
            problem = entry_problem(arr, meta, key, code)
            damaged = problem is not None and not problem.startswith("written by code version")
        if problem is None:
            self.hits += 1
            return arr
        if damaged:
            path.unlink(missing_ok=True)
        self._reject(path, problem)
        return None

    def _reject(self, path: Path, problem: str) -> None:
        self.misses += 1
        self.rejected += 1
        if self._warned:
            log.info("ignoring cache entry %s: %s", path, problem)
            return
        self._warned = True
        warnings.warn(f"embedding cache {self.root}: ignoring entry {path.name}: {problem}; recomputing it (later bad "
                      f"entries in this run are only counted; `musiclm-eval cache verify --cache-dir {self.root}` lists "
                      "them)", CacheEntryWarning, stacklevel=3)

    def put(self, key: str, array: np.ndarray, code: str = "") -> Path:
        """Write an entry with its checksum, key and ``code`` version (atomically)."""
        arr = np.ascontiguousarray(array)
        meta = {"format": ENTRY_FORMAT, "key": key, "sha256": array_sha256(arr), "code": code}
        buf = io.BytesIO()
        np.savez(buf, array=arr, meta=np.array(json.dumps(meta, sort_keys=True)))
        return atomic_write_bytes(self._path(key), buf.getvalue())

    def _entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for sfx in (ENTRY_SUFFIX, LEGACY_SUFFIX) for p in self.root.glob(f"??/*{sfx}")
                      if not p.name.startswith("."))

    def info(self) -> dict:
        entries = self._entries()
        return {
            "root": str(self.root),
            "entries": len(entries),
            "bytes": sum(p.stat().st_size for p in entries),
        }

    def verify(self, codes: Iterable[str] = (), remove: bool = False) -> dict:
        """Check every entry: readable, its own key, its checksum, and — for entries of an embedder named in
        ``codes`` (current code versions, ``metrics.extract.code_version``) — that code version. Returns
        ``{"root", "checked", "ok", "bad": [{"path", "problem"}]}``; ``remove`` deletes the bad ones."""
        current = {c.split("|", 1)[0]: c for c in codes}
        bad = []
        entries = self._entries()
        for path in entries:
            if path.suffix == LEGACY_SUFFIX:
                problem = "earlier unchecked format (no checksum, no code version): never read"
            else:
                try:
                    arr, meta = _load_entry(path)
                except Exception as e:
                    problem = f"unreadable ({type(e).__name__}: {e})"
                else:
                    code = str(meta.get("code", ""))
                    problem = entry_problem(arr, meta, path.name[: -len(ENTRY_SUFFIX)], current.get(code.split("|", 1)[0]))
            if problem is not None:
                bad.append({"path": str(path), "problem": problem})
                if remove:
                    path.unlink(missing_ok=True)
        return {"root": str(self.root), "checked": len(entries), "ok": len(entries) - len(bad), "bad": bad}

    def clear(self) -> int:
        """Remove every entry (and stray temp files); returns how many entries were removed."""
        entries = self._entries()
        for p in entries:
            p.unlink(missing_ok=True)
        if self.root.is_dir():
            for tmp in self.root.glob("??/.*.tmp"):
                tmp.unlink(missing_ok=True)
            for sub in self.root.glob("??"):
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()
        return len(entries)

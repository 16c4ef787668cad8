"""Content-addressed embedding cache.

Entries are keyed by what determines the embedding — the sha256 of the audio file's bytes, the
embedder id (name + weights hash) and the pre-processing config — never by file name, so a renamed
file is a hit and a file changed by one byte is a miss. Writes go to a temporary file in the same
directory and are renamed into place (atomic on POSIX), so a process killed mid-write never leaves
an entry that is later read back; a truncated or unreadable entry is treated as a miss and removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np

# re-exported: metrics.fad, metrics.evaluate and the CLI import the atomic writer from here
from metrics.io import atomic_write_bytes as atomic_write_bytes

log = logging.getLogger(__name__)

ENTRY_SUFFIX = ".npy"
KEY_VERSION = 1


def default_cache_root() -> Path:
    env = os.environ.get("MUSICLM_EVAL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "musiclm-eval" / "embeddings"


class EmbeddingCache:
    """One ``.npy`` file per (content, embedder, pre-processing); ``hits``/``misses`` count lookups."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_root()
        self.hits = 0
        self.misses = 0

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

    def get(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception as e:  # truncated or foreign file: never trust it
            log.warning("discarding unreadable cache entry %s (%s)", path, e)
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return arr

    def put(self, key: str, array: np.ndarray) -> Path:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        return atomic_write_bytes(self._path(key), buf.getvalue())

    def _entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob(f"??/*{ENTRY_SUFFIX}") if not p.name.startswith(".")]

    def info(self) -> dict:
        entries = self._entries()
        return {
            "root": str(self.root),
            "entries": len(entries),
            "bytes": sum(p.stat().st_size for p in entries),
        }

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

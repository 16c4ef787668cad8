"""Paths in a store: written relative to the store directory, resolved against it when read.

Directories are resolved once per table (a 5,000-clip table has a handful), so converting every cell
costs string operations only.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath

import pandas as pd

from metrics.store.schema import SCHEMA_VERSION


def is_path_column(name: object) -> bool:
    """Table columns that hold file paths (converted on write, resolved on read)."""
    return isinstance(name, str) and (name == "path" or name.endswith("_path"))


def is_empty_cell(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


class StoreRelativizer:
    """Ordinary paths → store paths, resolving each directory once (a 5,000-clip table has a handful)."""

    def __init__(self, store: str | Path):
        self.root = os.path.realpath(store)
        self.dirs: dict[str, str] = {}

    def __call__(self, path: object) -> object:
        if is_empty_cell(path):
            return path
        parent, name = os.path.split(os.path.abspath(os.fspath(path)))  # type: ignore[arg-type]
        if parent not in self.dirs:
            real = os.path.realpath(parent)
            try:
                self.dirs[parent] = PurePosixPath(Path(os.path.relpath(real, self.root))).as_posix()
            except ValueError:  # Windows: another drive, no relative path exists
                self.dirs[parent] = real
        d = self.dirs[parent]
        return os.path.join(d, name) if os.path.isabs(d) else (f"{d}/{name}" if d != "." else name)


def store_relative(path: object, store: str | Path) -> object:
    """An ordinary path (absolute, or relative to the cwd) as the store records it.

    Relative to the store directory with POSIX separators; absolute where no relative path exists
    (another drive). Empty cells (None, NaN, "") stay as they are. Directories are resolved (symlinks
    followed) on both sides so that ``..`` steps mean the same to the OS; the file name is kept.
    """
    return StoreRelativizer(store)(path)


class StoreResolver:
    """Store paths → absolute paths; the store directory is resolved once."""

    def __init__(self, store: str | Path, version: int | None = SCHEMA_VERSION):
        self.root = os.path.realpath(store)
        self.legacy = (version or 1) < 2

    def __call__(self, value: object) -> str | None:
        if is_empty_cell(value):
            return None
        v = str(value)
        if os.path.isabs(v):
            return v
        # the store's own path is resolved, so collapsing the leading ".." steps cannot cross a symlink
        in_store = os.path.normpath(os.path.join(self.root, v))
        if self.legacy and not os.path.exists(in_store) and os.path.exists(v):
            return os.path.abspath(v)
        return in_store


def resolve_in_store(value: object, store: str | Path, version: int | None = SCHEMA_VERSION) -> Path | None:
    """A path recorded in a store → an absolute path (not checked for existence); None for an empty cell.

    Version 1 stores recorded paths relative to the writer's cwd: when the store-relative file does not
    exist but the cwd-relative one does, that one is returned.
    """
    p = StoreResolver(store, version)(value)
    return None if p is None else Path(p)


def relativize_frame(df: pd.DataFrame, store: Path) -> pd.DataFrame:
    cols = [c for c in df.columns if is_path_column(c)]
    if not cols:
        return df
    df = df.copy()
    rel = StoreRelativizer(store)
    for c in cols:
        df[c] = df[c].map(rel)
    return df

"""The one artifact layer: how every trained piece is saved, read back, described and held out.

Every fitted piece of the project (codec, semantic tokenizer, MuLan and its RVQ, stages, melody model,
classifier, torch embedders) goes through these functions, so "missing, unreadable or the wrong kind",
"a crash mid-save leaves the old file", "what a manifest says" and "which clips are held out" are
answered once:

- ``read_checkpoint`` / ``save_checkpoint``: a ``torch.save`` dict tagged with a ``format`` string,
  read back with ``weights_only=True``; errors name the file and the expected kind; saves are atomic
  (temp file + ``os.replace``, ``metrics.io.atomic_open``).
- ``manifest_entry`` / ``write_manifest_entry`` / ``write_sidecar`` / ``manifest_entries``: one manifest style. A
  ``manifest.json`` maps a checkpoint's file name to its entry (command, seed, data hash, train splits,
  metrics, and whatever else the piece records); a checkpoint trained alone (MuLan, the classifier)
  has its entry in ``<checkpoint>.json`` (``write_sidecar``). Writes are atomic.
- ``data_hash`` / ``clips_hash`` / ``ids_sha256``: the data hash (sha256 over ``id:content-sha256`` lines, sorted by id)
  and the digest of a list of ids (sorted, one a line) that manifests record.
- ``is_held_out`` / ``split_held_out``: the one held-out rule (docs/protocol.md, "Held-out clips"):
  1 clip in ``HOLD_OUT_EVERY`` is held out, chosen by a number its id determines — the corpus index
  of a procedural-corpus id (``syn-s0-10s-00004`` → 4, held out when ``index % 5 == 4``), else the
  sha256 of the id. It depends on the id alone, so the codec, the stages, MuLan and the classifier
  hold out the same clips of the same corpus, whatever folder or order they are read in.

Imports only the standard library, torch and ``metrics.io`` / ``metrics.errors`` (``metrics`` imports
no other project package).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from metrics.errors import InputError
from metrics.io import atomic_open, atomic_write_text

MANIFEST = "manifest.json"
HOLD_OUT_EVERY = 5  # 1 clip in 5 (20 %) is held out
HELD_OUT_RULE = "1 in 5: corpus index % 5 == 4, else sha256(id) % 5 == 4 (metrics.artifacts.is_held_out)"
_CORPUS_ID = re.compile(r"(?:^|/)syn-s\d+-[^/]+-(\d+)$")


class CheckpointError(InputError):
    """A checkpoint that is missing, unreadable or of another kind; the message names the file."""


class ManifestError(InputError):
    """A manifest that is unreadable or not a ``{file: entry}`` mapping; the message names the file."""


# ---------------------------------------------------------------------------------------------
# checkpoints


def read_checkpoint(path: str | Path, fmt: str, kind: str, error: type[Exception] = CheckpointError,
                    missing: str | None = None,
                    unreadable: str = "not a readable PyTorch checkpoint") -> tuple[dict, str]:  # fmt: skip
    """Load a checkpoint dict (``weights_only``) whose ``format`` must be ``fmt``, and its file's sha256
    (the weights hash that cache keys and results metadata record); errors name the file.

    ``kind`` names the model in messages ("a MuLan checkpoint"), ``missing`` overrides the not-found text;
    ``error`` is the caller's error class, so each piece keeps raising its own (a subclass of EvalError).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing or kind.split(' ', 1)[-1] + ' not found'}")
    raw = path.read_bytes()
    try:
        ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:
        raise error(f"{path}: {unreadable} ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise error(f"{path}: not {kind} (format {found!r}, expected {fmt!r})")
    return ckpt, hashlib.sha256(raw).hexdigest()


def save_checkpoint(obj: Mapping[str, Any], path: str | Path) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically: a crash or an error mid-write leaves the previous
    file intact (or no file), never half a checkpoint that the next load would reject."""
    import torch

    path = Path(path)
    with atomic_open(path, "wb") as f:
        torch.save(dict(obj), f)
    return path


# ---------------------------------------------------------------------------------------------
# manifests


def manifest_entry(command: str, seed: int | None, data_hash: str | None,
                   train_splits: Sequence[Mapping] | None = None, metrics: Mapping | None = None,
                   **extra: Any) -> dict:  # fmt: skip
    """One manifest entry in the project's one style: how to rerun it (``command``, ``seed``), what it saw
    (``data_hash``, ``train_splits`` — records of ``musiclm_ref.data.splits.split_record``), how well it
    did (``metrics``), plus the piece's own fields (``extra``: preset, steps, config, …)."""
    entry: dict[str, Any] = {"command": command, "seed": seed, "data_hash": data_hash,
                             "metrics": dict(metrics or {})}  # fmt: skip
    if train_splits is not None:
        entry["train_splits"] = [dict(r) for r in train_splits]
    entry.update(extra)
    return entry


def sidecar_path(checkpoint: str | Path) -> Path:
    """The manifest of a checkpoint trained on its own (``mulan-tiny.pt`` → ``mulan-tiny.json``)."""
    return Path(checkpoint).with_suffix(".json")


def _write_json(path: Path, doc: Mapping) -> Path:
    return atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def write_manifest_entry(path: str | Path, name: str, entry: Mapping[str, Any]) -> Path:
    """Merge ``{name: entry}`` into a checkpoint directory's ``manifest.json`` at ``path`` (other entries
    are kept), atomically."""
    path = Path(path)
    data = _read_manifest(path) if path.exists() else {}
    data[name] = dict(entry)
    return _write_json(path, data)


def write_sidecar(checkpoint: str | Path, entry: Mapping[str, Any]) -> Path:
    """Write the entry of a checkpoint trained on its own to ``sidecar_path(checkpoint)``, atomically."""
    return _write_json(sidecar_path(checkpoint), entry)


def _read_manifest(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path}: not a readable manifest ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{path}: a manifest maps checkpoint files to entries, found {type(doc).__name__}")
    return doc


def manifest_entries(path: str | Path) -> dict[str, dict]:
    """``{piece: entry}`` of a manifest: a directory's ``manifest.json`` (one entry per checkpoint file) or
    a lone checkpoint's sidecar (one entry, named after the file: ``mulan-tiny``)."""
    path = Path(path)
    doc = _read_manifest(path)
    if "command" in doc or "train_splits" in doc:
        return {path.stem: doc}
    return {k: v for k, v in doc.items() if isinstance(v, dict)}


# ---------------------------------------------------------------------------------------------
# data hashes


def ids_sha256(ids: Iterable[str]) -> str:
    """sha256 of the sorted ids, one a line: the digest manifests record for a split or a file list."""
    return hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()


def data_hash(items: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The manifest's data hash: sha256 over ``id:sha256`` lines sorted by id, one per clip (or file).

    ``items`` maps each id to the sha256 of its content (a clip's bytes, ``labels.csv``'s bytes)."""
    pairs = items.items() if isinstance(items, Mapping) else items
    h = hashlib.sha256()
    for ident, sha in sorted(pairs):
        h.update(f"{ident}:{sha}\n".encode())
    return h.hexdigest()


def clips_hash(clips: Iterable[Any]) -> str:
    """``data_hash`` of loaded clips (anything with ``.id`` and ``.sha256``, e.g. ``metrics.audio.Clip``)."""
    return data_hash((c.id, c.sha256) for c in clips)


# ---------------------------------------------------------------------------------------------
# the held-out rule


def held_out_index(index: int) -> bool:
    """Whether corpus index ``index`` is held out: ``index % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1``."""
    return index % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1


def holdout_number(clip_id: str) -> int:
    """The number the held-out rule reads from an id: the corpus index of a procedural-corpus id
    (``syn-s0-10s-00004`` → 4, also under a folder: ``a/syn-s0-10s-00004``), else the id's sha256."""
    m = _CORPUS_ID.search(clip_id)
    return int(m.group(1)) if m else int(hashlib.sha256(clip_id.encode()).hexdigest(), 16)


def is_held_out(clip_id: str) -> bool:
    """The project's one held-out rule (module docstring); depends on the id alone."""
    return held_out_index(holdout_number(clip_id))


def split_held_out(ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(train ids, held-out ids)``, each sorted, by ``is_held_out``. A folder the rule would hold out
    entirely (a handful of clips) is all training: nothing can be fitted on no clips."""
    ids = sorted(ids)
    train, held = [i for i in ids if not is_held_out(i)], [i for i in ids if is_held_out(i)]
    return (train, held) if train else (ids, [])

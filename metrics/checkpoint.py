"""Reading the project's torch checkpoints: one place for "missing, unreadable, or the wrong kind"."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch


def read_checkpoint(path: Path, fmt: str, kind: str, error: type[Exception], missing: str | None = None,
                    unreadable: str = "not a readable PyTorch checkpoint") -> tuple[dict, str]:  # fmt: skip
    """Load a checkpoint dict (``weights_only``) whose ``format`` must be ``fmt``, and its file's sha256
    (the weights hash that cache keys and results metadata record); errors name the file.

    ``kind`` names the model in messages ("a MuLan checkpoint"), ``missing`` overrides the not-found text;
    ``error`` is the caller's error class.
    """
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

"""Names, errors and the tokenizer registry of the memorization audit.

``metrics`` imports no model code, not even lazily by naming its modules: a tokenizer is anything
with the :class:`Tokenizer` attributes, and the reference one (``semantic-ref``) reaches
:data:`TOKENIZERS` through the ``musiclm_eval.tokenizers`` entry point that ``musiclm_ref``
declares in ``pyproject.toml`` (see :mod:`metrics.registry`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from metrics.errors import ComputeError
from metrics.registry import Registry

FRAME_RATE = 25
WINDOW_TOKENS = 125  # 5 s at 25 Hz, the paper's continuation length
PROMPT_LENGTHS = tuple(range(0, 251, 25))  # 0–10 s
DEFAULT_FPR = 1e-4  # the paper's sweep: < 0.01 % (one continuation vs one target: per pair = per clip)
DEFAULT_CLIP_FPR = 0.01  # the audit: fraction of novel generated clips reported as copies

DEFAULT_TOKENIZER = "semantic-ref"


class MemorizationError(ComputeError):
    """Input that the memorization audit cannot use; the message names the clip/file and the problem."""


# name -> loader(path=None); entries come from register_tokenizer and the "musiclm_eval.tokenizers" entry points
TOKENIZERS = Registry("tokenizers", error=MemorizationError)


class FewNegativesWarning(UserWarning):
    """Too few negatives (pairs, or null clips) to certify the requested false-alarm rate."""


@runtime_checkable
class Tokenizer(Protocol):
    """What the audit needs from a semantic tokenizer."""

    id: str
    frame_rate: int
    centroids: np.ndarray  # [K, D]

    @property
    def vocab_size(self) -> int: ...

    def tokenize(self, wave: np.ndarray, sr: int) -> np.ndarray: ...


def register_tokenizer(name: str, factory) -> None:
    """Register ``name`` → a loader ``(path=None) -> Tokenizer`` or a ``"module:callable"`` string."""
    TOKENIZERS.register(name, factory)


def get_tokenizer(name_or_path: str | Path = DEFAULT_TOKENIZER) -> Tokenizer:
    """A registered name (``semantic-ref``), ``module:callable``, or a checkpoint path for the default loader."""
    spec = str(name_or_path)
    path = None
    if spec in TOKENIZERS:
        loader = TOKENIZERS.factory(spec)
    elif ":" in spec and not Path(spec).exists() and "/" not in spec:
        module, _, attr = spec.partition(":")
        try:
            loader = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise MemorizationError(f"tokenizer {spec!r}: cannot import it ({e})") from None
    else:
        path = Path(spec)
        if not path.exists():
            raise MemorizationError(f"{path}: tokenizer checkpoint not found (or use one of {', '.join(TOKENIZERS.names())})")
        loader = TOKENIZERS.factory(DEFAULT_TOKENIZER)
    tok = loader(path) if path is not None else loader()
    check_tokenizer(tok, spec)
    return tok


def check_tokenizer(tok, name: str = "tokenizer") -> None:
    missing = [a for a in ("id", "frame_rate", "centroids", "vocab_size", "tokenize") if not hasattr(tok, a)]
    if missing:
        raise MemorizationError(f"{name}: not a tokenizer (missing {', '.join(missing)})")
    c = np.asarray(tok.centroids)
    if c.ndim != 2 or c.shape[0] != tok.vocab_size:
        raise MemorizationError(f"{name}: vocabulary mismatch: vocab_size={tok.vocab_size} but centroids have shape {c.shape}")

"""Name → factory registries, resolved lazily; other packages register through entry points.

Why entry points: ``metrics`` is the model-agnostic foundation and must not import the reference
model (``musiclm_ref``), not even lazily by naming its modules. A package that ships a model for the
metrics (the reference MuLan, the semantic tokenizer, …) declares it in its ``pyproject.toml``::

    [project.entry-points."musiclm_eval.embedders"]
    mulan-ref = "musiclm_ref.mulan:audio_embedder"

and ``get("mulan-ref")`` finds it through ``importlib.metadata`` the first time it is asked for.
Built-in entries and ``register(name, factory)`` calls take precedence over entry points.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

from metrics.errors import UnavailableError

Factory = Callable[..., Any]


class RegistryError(UnavailableError):
    """An unknown name, or an entry that cannot be imported."""


class Registry:
    """One kind of model (``embedders``, ``classifiers``, ``joint``, ``engines``, …)."""

    def __init__(self, kind: str, builtins: dict[str, Factory | str] | None = None,
                 error: type[Exception] = RegistryError):
        self.kind = kind
        self.group = f"musiclm_eval.{kind}"
        self._entries: dict[str, Factory | str] = dict(builtins or {})
        self._error = error
        self._scanned = False

    def register(self, name: str, factory: Factory | str) -> None:
        """Add or replace an entry: a callable, or a ``"module:attr"`` string imported when asked."""
        if not name or ":" in name:
            raise ValueError(f"{self.kind} names must be non-empty and contain no ':' (got {name!r})")
        self._entries[name] = factory

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in importlib.metadata.entry_points(group=self.group):
            self._entries.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._scan()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._scan()
        return name in self._entries

    @property
    def singular(self) -> str:
        return self.kind[:-1] if self.kind.endswith("s") else self.kind

    def factory(self, name: str) -> Factory:
        """The callable behind ``name`` (importing its module now if it was registered as a string)."""
        self._scan()
        if name not in self._entries:
            raise self._error(f"unknown {self.singular} {name!r}; available: {', '.join(self.names())}")
        entry = self._entries[name]
        if callable(entry):
            return entry
        module, _, attr = entry.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise self._error(f"{self.singular} {name!r} is registered as {entry} but it cannot be imported: {e}") from e

"""Each warning of a run once, naming the sets that raised it.

Why: an evaluation repeats the same situation many times — every system's musicnn set has 60 frames for
200 dimensions, every clip goes through the same resampler — and Python's once-per-location memory does
not hold, because each ``warnings.catch_warnings`` (the decode workers use one per clip) resets it. A
user then reads the same ``SingularCovarianceWarning`` and its source line once per system and metric.
A run (``evaluate``, the demo) instead records its warnings while it works and emits each distinct
(category, message) once when it ends, with the sources it came from. Filters still apply on that
emission, so ``-W error``, ``pytest.warns`` and ``catch_warnings`` see the warning as before.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class WarnOnce:
    """Collects the warnings of several blocks (``collect``), then ``emit``s each distinct one once."""

    seen: dict[tuple[type[Warning], str], tuple[warnings.WarningMessage, list[str]]] = field(default_factory=dict)

    @contextmanager
    def collect(self, source: str | None = None) -> Iterator[None]:
        """Record every warning raised in the block (none is shown yet), noting ``source`` as one that raised it."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for w in caught:
                    _, sources = self.seen.setdefault((w.category, str(w.message)), (w, []))
                    if source is not None and source not in sources:
                        sources.append(source)

    def emit(self) -> None:
        """Each recorded warning once, in first-seen order, through the active filters (and ``showwarning``)."""
        seen, self.seen = self.seen, {}
        for (category, message), (w, sources) in seen.items():
            text = f"{message} (while scoring {', '.join(sources)})" if sources else message
            warnings.warn_explicit(text, category, w.filename, w.lineno)


_ACTIVE: ContextVar[WarnOnce | None] = ContextVar("warn_once", default=None)


@contextmanager
def warn_once() -> Iterator[WarnOnce]:
    """``with warn_once(): …`` — the block's warnings, each shown once when it ends (also when it fails).

    Nested blocks (an ``evaluate`` inside the demo) add to the outermost one, which alone emits."""
    run = _ACTIVE.get()
    if run is not None:
        yield run
        return
    run = WarnOnce()
    token = _ACTIVE.set(run)
    try:
        with run.collect():
            yield run
    finally:
        _ACTIVE.reset(token)
        run.emit()


@contextmanager
def warnings_of(source: str | None) -> Iterator[None]:
    """Inside ``warn_once``: the block's warnings are attributed to ``source`` (a system, the reference);
    outside one, or with no source (a run of one system needs no names), a no-op."""
    run = _ACTIVE.get()
    if run is None or source is None:
        yield
        return
    with run.collect(source):
        yield


def once_per_call(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` inside ``warn_once``: each warning of the call shown once, when it returns."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with warn_once():
            return fn(*args, **kwargs)

    return wrapper

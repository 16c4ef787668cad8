"""One set of resamples per run, shared by every system, metric, interval and paired test.

Why this module: a Table-1 run has ~10 metrics × 5 sources, 45 intervals and 66 paired tests. When
each of them drew and evaluated its own resamples, the same resampled reference statistics (and, for
FAD, their decomposition) were recomputed for every system, every pair and every test: 33,000
Fréchet distances for the demo, 96 % of ``compare``'s statistics time (docs/performance.md §10).

- ``ResamplingPlan``: the run's draws, made once and cached. They are the draws
  ``metrics.intervals`` always made (``numpy.random.default_rng(seed)``: the first block of
  multinomial counts, then the interval's generated-side block, then the jackknife rows), so every
  system gets the same clip-id draws (common random numbers: what makes a pair's differences
  paired) and the numbers equal those of the one-metric-at-a-time route exactly.
- ``Rows``: a block of counts with a key saying which draw it is, so equal draws are recognised
  without comparing arrays (an interval's reference draw is the paired tests' draw when the
  reference clips are the shared clips).
- ``Resampler``: each metric's values on each draw, computed once per run and reused by every
  interval and pair that needs them. Metrics of one class may share work across sources through a
  ``values_shared(jobs)`` classmethod: FAD decomposes each resampled reference covariance once for
  every system (``metrics.fad_metric``).

A metric's values on counts come from its ``value_on_counts(ref_counts, gen_counts)`` when it has
one, else from ``value_on`` with the ids repeated (rows aligned with ``ids(side)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

JACKKNIFE_GROUPS = 100  # per side: delete-one up to this many clips, delete-a-group beyond


class Resamplable(Protocol):
    """What resampling needs of a metric (``metrics.metric.Metric`` has it). Declared here, not imported,
    so that this module stays below ``metrics.metric`` (which calls the intervals): no cycle."""

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float: ...

    def ids(self, side: str) -> list[str]: ...


def multinomial_counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """[n_boot, n] counts of n draws with replacement from n items (one bootstrap resample per row)."""
    idx = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n), dtype=np.int64)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1)
    return counts


def jackknife_rows(n: int, rng: np.random.Generator, groups: int = JACKKNIFE_GROUPS) -> np.ndarray:
    """[g, n] 0/1 weights: row k deletes clip k (n ≤ groups) or the k-th of ``groups`` seeded groups."""
    if n <= groups:
        return 1 - np.eye(n, dtype=np.int64)
    labels = np.empty(n, dtype=np.int64)
    labels[rng.permutation(n)] = np.arange(n) % groups
    return (labels[None, :] != np.arange(groups)[:, None]).astype(np.int64)


@dataclass(frozen=True)
class Rows:
    """Rows of clip counts (one resample per row, columns aligned with a metric's ``ids(side)``) and a
    key naming the draw: two ``Rows`` with one key hold the same counts."""

    key: tuple
    counts: np.ndarray

    def spread(self, cols: np.ndarray, n: int) -> Rows:
        """These counts (over shared ids) as counts over a side of ``n`` ids, the shared ones at ``cols``."""
        if len(cols) == n == self.counts.shape[1] and np.array_equal(cols, np.arange(n)):
            return self
        out = np.zeros((len(self.counts), n), dtype=np.int64)
        out[:, cols] = self.counts
        return Rows((*self.key, "spread", n, hash(cols.tobytes())), out)


def ones(rows: int, n: int) -> Rows:
    """Every clip once, ``rows`` times (the side a jackknife of the other side leaves whole)."""
    return Rows(("ones", rows, n), np.ones((rows, n), np.int64))


class ResamplingPlan:
    """The run's draws (``n_boot`` resamples, ``seed``), each made once and handed to every metric.

    ``paired(n)``: the draw of ``n`` clip ids used for the reference and every system alike, and its
    jackknife rows: what a paired test uses, and what an interval uses when its two sides hold the same
    ids (a paired design: the caption is the sampling unit). ``interval(n_ref, n_gen)``: the draws of an
    interval over two sides of different clips (both sides resampled independently, then the jackknife
    rows of each side). The first block of either is the same draw (``first``).
    """

    def __init__(self, n_boot: int = 1000, seed: int = 0, jackknife_groups: int = JACKKNIFE_GROUPS):
        if n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, not {n_boot}")
        self.n_boot, self.seed, self.jackknife_groups = n_boot, seed, jackknife_groups
        self._cache: dict[tuple, tuple[Rows, ...]] = {}

    def interval(self, n_ref: int, n_gen: int) -> tuple[Rows, Rows, Rows, Rows]:
        """(reference draw, generated draw, reference jackknife, generated jackknife), each [rows, n_side]."""
        key = ("interval", n_ref, n_gen)
        if key not in self._cache:
            rng = np.random.default_rng(self.seed)
            ref = Rows(("first", n_ref), multinomial_counts(rng, self.n_boot, n_ref))
            gen = Rows(("second", n_ref, n_gen), multinomial_counts(rng, self.n_boot, n_gen))
            g = self.jackknife_groups
            jr = Rows(self._jack_key(n_ref, g, key, "ref"), jackknife_rows(n_ref, rng, g))
            jg = Rows(self._jack_key(n_gen, g, key, "gen"), jackknife_rows(n_gen, rng, g))
            self._cache[key] = (ref, gen, jr, jg)
        return self._cache[key]  # type: ignore[return-value]

    def paired(self, n: int) -> tuple[Rows, Rows]:
        """(the draw of ``n`` shared ids, its jackknife rows)."""
        key = ("paired", n)
        if key not in self._cache:
            rng = np.random.default_rng(self.seed)
            draw = Rows(("first", n), multinomial_counts(rng, self.n_boot, n))
            g = self.jackknife_groups
            self._cache[key] = (draw, Rows(self._jack_key(n, g, key, ""), jackknife_rows(n, rng, g)))
        return self._cache[key]  # type: ignore[return-value]

    @staticmethod
    def _jack_key(n: int, groups: int, where: tuple, side: str) -> tuple:
        # delete-one rows do not depend on the random stream: one key wherever they are drawn
        return ("delete-one", n) if n <= groups else ("groups", *where, side)


def values_on_counts(metric: Resamplable, ref_counts: np.ndarray, gen_counts: np.ndarray) -> np.ndarray:
    """The metric on each row of counts: the batched hook when the metric has one, else value_on."""
    fast = getattr(metric, "value_on_counts", None)
    if fast is not None:
        out = np.asarray(fast(ref_counts, gen_counts), dtype=np.float64)
        if out.shape != (len(ref_counts),):
            raise ValueError(f"{type(metric).__name__}.value_on_counts returned shape {out.shape}, "
                             f"expected ({len(ref_counts)},)")
        return out
    r_ids = np.asarray(metric.ids("reference"), dtype=object)
    g_ids = np.asarray(metric.ids("generated"), dtype=object)
    return np.array([metric.value_on(list(np.repeat(r_ids, rc)), list(np.repeat(g_ids, gc)))
                     for rc, gc in zip(ref_counts, gen_counts)], dtype=np.float64)


Job = tuple[Resamplable, Rows, Rows]


def _shared_hook(cls: type):
    """The class's ``values_shared`` hook, unless a subclass redefined ``value_on_counts`` below the class that
    defines the hook (its own values then win: a test double, a variant metric)."""
    owner = next((k for k in cls.__mro__ if "values_shared" in vars(k)), None)
    if owner is None or getattr(cls, "value_on_counts", None) is not getattr(owner, "value_on_counts", None):
        return None
    return cls.values_shared


class Resampler:
    """Each metric's values on each draw, computed once (``prefetch`` batches many) and then looked up.

    The memo holds the metric itself beside its values, so a key's ``id(metric)`` cannot be reused by
    another object while the resampler lives.
    """

    def __init__(self) -> None:
        self._memo: dict[tuple, tuple[Resamplable, np.ndarray]] = {}
        self.evaluated_rows = 0  # resample values computed (not looked up): what the sharing saves

    @staticmethod
    def _key(job: Job) -> tuple:
        metric, ref, gen = job
        return id(metric), ref.key, gen.key

    def prefetch(self, jobs: Sequence[Job]) -> None:
        """Compute every job not yet known; jobs of a class with ``values_shared`` go to it together."""
        todo: dict[tuple, Job] = {}
        for job in jobs:
            key = self._key(job)
            if key not in self._memo:
                todo.setdefault(key, job)
        by_class: dict[type, list[tuple[tuple, Job]]] = {}
        for key, job in todo.items():
            by_class.setdefault(type(job[0]), []).append((key, job))
        for cls, items in by_class.items():
            shared = _shared_hook(cls)
            if shared is not None:
                values = shared([(m, r.counts, g.counts, r.key) for _, (m, r, g) in items])
            else:
                values = [values_on_counts(m, r.counts, g.counts) for _, (m, r, g) in items]
            for (key, (metric, ref, _)), v in zip(items, values):
                self._memo[key] = (metric, np.asarray(v, dtype=np.float64))
                self.evaluated_rows += len(ref.counts)

    def values(self, metric: Resamplable, ref: Rows, gen: Rows) -> np.ndarray:
        """The metric on each (reference row, generated row) pair of the two draws."""
        job = (metric, ref, gen)
        self.prefetch([job])
        return self._memo[self._key(job)][1]

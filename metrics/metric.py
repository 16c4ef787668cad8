"""The Metric protocol every metric follows (FAD, FAD∞, KAD, KLD, MCC, melody, …).

Shaped after torchmetrics' ``Metric``: the state is explicit and picklable (plain numpy arrays and
dicts, never a live model), so a Ray worker can fill a partial state and the driver can ``merge``
them. A metric never runs a model: the evaluation pipeline (``metrics.evaluate``) runs each model
once per clip and hands the per-clip *outputs* to every metric that needs them.

Every metric compares two sides, keyed by clip id:

- ``"reference"``: the reference clips' outputs (or, for MCC, the captions' text embeddings);
- ``"generated"``: the evaluated system's outputs.

``update(side, outputs)`` takes ``{clip_id: array}`` for one side; it may be called many times with
disjoint ids (streaming). ``merge(other)`` folds another state of the same metric into this one.
``compute()`` returns one ``MetricResult`` (value, ci95, per-clip values, metadata). ``reset()``
empties the state. Pairing is always by id, never by listing order.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from metrics.errors import ComputeError
from metrics.intervals import bootstrap_interval
from metrics.resampling import Resampler, ResamplingPlan
from metrics.result import MetricResult

SIDES = ("reference", "generated")


class MetricError(ComputeError):
    """A metric fed inconsistent state (unknown side, id given twice, nothing to compute on)."""


class Metric(ABC):
    """Base class: subclasses declare ``name`` and ``output`` and implement the four verbs.

    ``output`` names the kind of per-clip model output the metric consumes: ``"embedding"``
    (frame embeddings [frames, dim] from an embedder), ``"class_logits"`` (window logits
    [windows, classes] from a classifier), ``"joint"`` (unit-norm audio / text embeddings from a joint
    model) or ``"pitch"`` (melody contours). The pipeline uses it to route outputs.
    """

    name: str = "metric"
    output: str = "embedding"
    # The range the population value can take (FAD and KL divergences are ≥ 0, a cosine is in [-1, 1]);
    # an interval endpoint outside it (a pivot interval 2θ̂ − q can go below 0) is moved onto it.
    bounds: tuple[float | None, float | None] = (None, None)
    # How ``interval`` and the run's paired tests are formed (``metrics.intervals.METHODS``): BCa by default;
    # FAD, KAD, KLD and MCC declare the jackknife's bias-corrected t interval (docs/protocol.md, "Intervals").
    interval_method: str = "bca"
    # Whether a larger value is better (MCC, melody adherence) or a smaller one (FAD, KAD, KL divergences).
    # Declared once, on each subclass (never guessed from a name): the results store writes it beside every value,
    # and the report's arrows and † and the dashboard's sorting and worst clips read it from the store.
    # Deliberately no default: a subclass that forgets it fails ``tests/test_metric_direction.py``.
    higher_is_better: bool

    def __init__(self, n_boot: int = 1000, seed: int = 0) -> None:
        self.n_boot, self.seed = n_boot, seed
        self.reset()

    # -- the four verbs -------------------------------------------------------------------------
    @abstractmethod
    def reset(self) -> None:
        """Empty the state."""

    @abstractmethod
    def update(self, side: str, outputs: Mapping[str, np.ndarray]) -> None:
        """Add per-clip outputs ``{clip_id: array}`` of one side."""

    @abstractmethod
    def merge(self, other: Metric) -> Metric:
        """Fold another partial state of the same metric (and settings) into this one; returns self."""

    @abstractmethod
    def compute(self) -> MetricResult:
        """The metric over everything seen so far."""

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float:
        """The point value recomputed on a (re)sample of clip ids; ids may repeat.

        The one hook every interval and paired test uses (``metrics.intervals``): a bootstrap draws
        ids with replacement on *both* sides and calls this; a clip-paired comparison of two systems
        draws shared ids once and calls it on each system's state. Paired metrics (KLD, MCC) read
        ``gen_ids`` (their reference partner has the same id); set-level metrics (FAD, KAD) use both.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support resampling")

    def ids(self, side: str) -> list[str]:
        """Sorted clip ids seen on one side."""
        raise NotImplementedError

    # -- shared helpers -------------------------------------------------------------------------
    def interval(self, plan: ResamplingPlan | None = None, resampler: Resampler | None = None) -> tuple[float, float] | None:
        """The 95% interval of ``metrics.intervals.bootstrap_interval`` (``interval_method`` over both sides), or None
        when ``n_boot`` is 0 (and no ``plan`` is given) or there is nothing to resample. ``plan`` and
        ``resampler``: a run's shared draws and values (``metrics.evaluate`` computes every interval
        of a run with one of each, after all sources are scored)."""
        if (plan is None and not self.n_boot) or len(self.ids("generated")) < 2:
            return None
        lo, hi = bootstrap_interval(self, n_boot=self.n_boot, seed=self.seed, method=self.interval_method, plan=plan,
                                    resampler=resampler)
        floor, ceil = self.bounds
        if floor is not None:
            lo, hi = max(lo, floor), max(hi, floor)
        if ceil is not None:
            lo, hi = min(lo, ceil), min(hi, ceil)
        return float(lo), float(hi)

    def result(self, value: float, per_item: dict[str, float], extra: dict) -> MetricResult:
        """What ``compute`` returns: the value, this metric's interval, per-clip values, and its name and
        direction, so every store entry carries the direction the metric declared."""
        return MetricResult(self.name, value, self.interval(), per_item, extra, self.higher_is_better)

    def config(self) -> dict:
        """Settings that change the number (written into the results store beside the value)."""
        return {}

    def clone(self) -> Metric:
        """An empty metric with the same settings (a Ray worker's partial starts from this)."""
        new = copy.deepcopy(self)
        new.reset()
        return new

    def _check_merge(self, other: Metric) -> None:
        if type(other) is not type(self) or other.config() != self.config():
            raise MetricError(f"cannot merge {type(other).__name__}{other.config()} into "
                              f"{type(self).__name__}{self.config()}")

    @staticmethod
    def _check_side(side: str) -> None:
        if side not in SIDES:
            raise MetricError(f"unknown side {side!r}; expected one of {', '.join(SIDES)}")


class PerClipOutputs(Metric):
    """A state that keeps each side's per-clip outputs by id (small: O(clips × dim)).

    The set-level metrics whose intervals resample clips (FAD, KAD) and the paired metrics (KLD,
    MCC) all need the per-clip outputs at ``compute`` time, so this is their shared state.
    """

    def reset(self) -> None:
        self.outputs: dict[str, dict[str, np.ndarray]] = {s: {} for s in SIDES}

    def update(self, side: str, outputs: Mapping[str, np.ndarray]) -> None:
        self._check_side(side)
        seen = self.outputs[side]
        for cid, arr in outputs.items():
            if cid in seen:
                raise MetricError(f"{self.name}: clip {cid!r} was given twice for the {side} side")
            seen[cid] = np.asarray(arr)

    def merge(self, other: Metric) -> Metric:
        self._check_merge(other)
        assert isinstance(other, PerClipOutputs)
        for side in SIDES:
            self.update(side, other.outputs[side])
        return self

    def ids(self, side: str) -> list[str]:
        self._check_side(side)
        return sorted(self.outputs[side])

    def id_counts(self, side: str, ids: Sequence[str]) -> np.ndarray:
        """[1, clips] draws of each of ``ids(side)`` in ``ids`` (ids may repeat): ``value_on`` as one row of counts
        for a metric's ``value_on_counts``. An id the side does not hold is an error."""
        drawn = Counter(ids)
        unknown = set(drawn) - set(self.outputs[side])
        if unknown:
            raise MetricError(f"{self.name}: unknown {side} clip ids {sorted(unknown)[:3]}")
        return np.array([[drawn.get(i, 0) for i in self.ids(side)]], dtype=np.float64)

    def paired_ids(self) -> list[str]:
        """Ids present on both sides, sorted (pairing by id, never by order)."""
        return sorted(set(self.outputs["reference"]) & set(self.outputs["generated"]))

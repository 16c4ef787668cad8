"""Metric direction: declared once on every Metric, written into the store, read back (older stores: by name)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import metrics
from metrics.metric import Metric
from metrics.store import DIRECTION_KEY, LEGACY_HIGHER_IS_BETTER, higher_is_better, read_store, write_store
from metrics.store.direction import fallback_higher_is_better


def _metric_classes() -> list[type[Metric]]:
    """Every public concrete Metric subclass the ``metrics`` package defines (each of its modules imported
    first); private bases (``_PairedMelody``) are never built by the pipeline and may leave it to their subclasses."""
    for mod in pkgutil.walk_packages(metrics.__path__, "metrics."):
        try:
            importlib.import_module(mod.name)
        except ImportError:  # an optional dependency (tensorflow, laion-clap, …) absent: its module defines no Metric
            continue
    seen, todo = [], [Metric]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            public = sub.__module__.startswith("metrics.") and not sub.__name__.startswith("_")
            if public and not inspect.isabstract(sub) and sub not in seen:
                seen.append(sub)
    return seen


def test_every_metric_declares_its_direction():
    classes = _metric_classes()
    names = {c.__name__ for c in classes}
    assert {"FAD", "KAD", "KLD", "MCC", "PitchAdherence", "ChromaCosine"} <= names, names
    missing = [c.__name__ for c in classes if not isinstance(getattr(c, "higher_is_better", None), bool)]
    assert not missing, f"Metric subclasses without a bool higher_is_better: {missing}"


def test_a_metric_that_forgets_its_direction_is_caught():
    class Forgetful(Metric):  # defined here: the walk above only looks at metrics.*, so check the rule itself
        name = "forgetful"

        def reset(self): ...
        def update(self, side, outputs): ...
        def merge(self, other): return self
        def compute(self): ...

    assert not isinstance(getattr(Forgetful, "higher_is_better", None), bool)


@pytest.mark.parametrize("cls_name, higher", [("FAD", False), ("KAD", False), ("KLD", False), ("MCC", True),
                                               ("PitchAdherence", True), ("ChromaCosine", True)])
def test_declared_directions(cls_name, higher):
    cls = next(c for c in _metric_classes() if c.__name__ == cls_name)
    assert cls.higher_is_better is higher


def _computed(metric: Metric, dim: int = 4) -> object:
    rng = np.random.default_rng(0)
    for side in ("reference", "generated"):
        metric.update(side, {f"c{i}": rng.normal(size=(5, dim)) for i in range(6)})
    return metric.compute()


def test_the_store_writes_the_declared_direction_beside_each_value(tmp_path):
    from metrics.fad_metric import FAD
    from metrics.mcc import MCC

    rng = np.random.default_rng(1)
    mcc = MCC(n_boot=0)
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    mcc.update("reference", {f"c{i}": unit(rng.normal(size=8)) for i in range(4)})
    mcc.update("generated", {f"c{i}": unit(rng.normal(size=(3, 8))) for i in range(4)})
    results = {"fad_mel": _computed(FAD(n_boot=0)), "mcc": mcc.compute()}
    assert (results["fad_mel"].higher_is_better, results["mcc"].higher_is_better) == (False, True)
    write_store(tmp_path, "compare", {"sys": results})
    res = read_store(tmp_path)
    assert res.metric("sys", "fad_mel")[DIRECTION_KEY] is False
    assert res.metric("sys", "mcc")[DIRECTION_KEY] is True
    assert (res.higher_is_better("fad_mel"), res.higher_is_better("mcc")) == (False, True)


def test_the_stored_field_wins_over_the_name(tmp_path):
    # a metric named like a distance that declares itself higher-is-better is read as the store says
    write_store(tmp_path, "compare", {"s": {"fad_x": {"value": 1.0, DIRECTION_KEY: True},
                                            "mcc": {"value": 0.2, DIRECTION_KEY: False}}})
    res = read_store(tmp_path)
    assert res.higher_is_better("fad_x") is True and res.higher_is_better("mcc") is False


def test_stores_without_the_field_fall_back_by_name():
    doc = {"systems": {"s": {"metrics": {k: {"value": 1.0} for k in
                                         ("fad_vggish", "kld_musiclm", "kad_mel", "mcc", "melody_rca", "chroma_cosine",
                                          "wins", "semantic-ot_approx_rate")}}}}
    got = {k: higher_is_better(doc, k) for k in doc["systems"]["s"]["metrics"]}
    assert got == {"fad_vggish": False, "kld_musiclm": False, "kad_mel": False, "mcc": True, "melody_rca": True,
                   "chroma_cosine": True, "wins": True, "semantic-ot_approx_rate": False}
    assert all(fallback_higher_is_better(n) for n in LEGACY_HIGHER_IS_BETTER)
    assert not fallback_higher_is_better("mccx")  # a prefix of another word is not the metric


def test_a_non_bool_direction_is_refused(tmp_path):
    from metrics.store import ResultsError

    with pytest.raises(ResultsError, match="higher_is_better must be true or false"):
        write_store(tmp_path, "compare", {"s": {"mcc": {"value": 0.1, DIRECTION_KEY: "yes"}}})

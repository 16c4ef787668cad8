"""The report (Table-1 arrows and †) and the dashboard read one direction per metric: the one the store records."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.report import BETTER_MARK, TABLE_COLUMNS, columns, table_frame
from dashboards.runs import higher_is_better, load_run
from metrics.control import CONTROL_METRICS, _resolve
from metrics.fad_metric import FAD
from metrics.kad import KAD
from metrics.kld import KLD
from metrics.mad import MAD
from metrics.mcc import MCC
from metrics.melody_adherence import ChromaCosine, PitchAdherence
from metrics.result import MetricResult
from metrics.store import arrow, read_store, write_store

# every Table-1 key with the Metric that computes it (wins: the human study's count, a dict without a direction)
METRIC_OF = {"fad_trill": FAD, "fad_vggish": FAD, "fad_mel": FAD, "fad_musicnn-mtt": FAD, "fad_openl3": FAD,
             "fad_clap": FAD, "kad_musicnn-mtt": KAD, "mad_mel": MAD, "mad_musicnn-mtt": MAD,
             "mad_mert-v1-330m": MAD, "kld_musiclm": KLD, "kld_musiclm_musicnn_mtt": KLD, "mcc": MCC,
             "melody_rca": PitchAdherence, "chroma_cosine": ChromaCosine,
             # the control metrics' columns, each with the Metric class its registry entry names
             **{name: _resolve(e.metric) for name, e in CONTROL_METRICS.items()}}


def _result(key: str, value: float) -> MetricResult | dict:
    if key == "wins":
        return {"value": int(value), "ci95": None}
    extra = {"number": "kld"} if key.startswith("kld") else {}
    return MetricResult(key, value, (value - 0.1, value + 0.1), extra=extra,
                        higher_is_better=METRIC_OF[key].higher_is_better)


@pytest.fixture
def store(tmp_path):
    keys = [*METRIC_OF, "wins"]
    systems = {s: {k: _result(k, v + i) for i, k in enumerate(keys)} for s, v in (("a", 1.0), ("b", 2.0))}
    pairs = [{"metric": k, "system_a": "a", "system_b": "b", "diff": -1.0, "p_holm": 0.01} for k in keys]
    write_store(tmp_path / "s", "compare", systems, metadata={"pairwise": pairs})
    return tmp_path / "s"


def test_every_table_column_is_in_the_fixture(store):
    assert len(columns(read_store(store).data)) == len(TABLE_COLUMNS)


def test_report_arrows_agree_with_the_dashboard_direction(store):
    data, run = read_store(store).data, load_run(store)
    for key, label in columns(data):
        assert label.endswith(" " + arrow(higher_is_better([run], key))), (key, label)
        expected = METRIC_OF[key].higher_is_better if key in METRIC_OF else True  # wins: more is better
        assert higher_is_better([run], key) is expected, key
    labels = dict(columns(data))
    assert labels["melody_rca"] == "Melody RCA ↑" and labels["mcc"] == "MCC ↑" and labels["fad_mel"] == "FAD_mel ↓"


def test_the_better_mark_follows_the_stored_direction(store):
    """a − b = −1 everywhere (p < 0.05): a is better where lower is better, never where higher is."""
    data = read_store(store).data
    df = table_frame(data).set_index("System")
    for key, label in columns(data):
        marked = df.loc["a", label].endswith(BETTER_MARK)
        assert marked is (not higher_is_better([load_run(store)], key)), key


def test_a_stored_direction_overrides_the_name_in_the_report(tmp_path):
    """A store that records melody_rca as lower-is-better (say, a distance under that name) gets ↓ and the †
    for the lower value: the report reads the store, not the name."""
    systems = {s: {"melody_rca": {"value": v, "ci95": None, "higher_is_better": False}} for s, v in (("a", 0.2), ("b", 0.4))}
    pairs = [{"metric": "melody_rca", "system_a": "a", "system_b": "b", "diff": -0.2, "p_holm": 0.01}]
    write_store(tmp_path / "s", "compare", systems, metadata={"pairwise": pairs})
    data = read_store(tmp_path / "s").data
    assert columns(data) == [("melody_rca", "Melody RCA ↓")]
    assert table_frame(data).set_index("System").loc["a", "Melody RCA ↓"].endswith(BETTER_MARK)


def test_a_value_outside_its_bias_corrected_interval_is_explained_and_plotted_as_computed(tmp_path):
    """FAD's jackknife interval is for the population value, so at small sizes the plug-in value lies above
    it: the table says why, and the bar chart draws the interval itself (not bars around the value)."""
    import matplotlib

    matplotlib.use("Agg")
    from unittest import mock

    import matplotlib.axes

    from benchmarks.report import write_plots, write_table
    from metrics.intervals import VALUE_OUTSIDE_INTERVAL_NOTE as OUTSIDE_NOTE

    systems = {"a": {"fad_mel": MetricResult("fad_mel", 13.3, (9.0, 12.6), higher_is_better=False)},
               "b": {"fad_mel": MetricResult("fad_mel", 20.0, (15.0, 25.0), higher_is_better=False)}}
    write_store(tmp_path / "s", "compare", systems)
    data = read_store(tmp_path / "s").data
    md = write_table(data, tmp_path)[0].read_text()
    assert OUTSIDE_NOTE in md and "13.300 [9.000, 12.600]" in md
    covering = {"a": {"metrics": {"fad_mel": {**data["systems"]["a"]["metrics"]["fad_mel"], "ci95": [12.0, 14.0]}}}}
    (tmp_path / "x").mkdir()
    assert OUTSIDE_NOTE not in write_table({**data, "systems": covering}, tmp_path / "x")[0].read_text()
    with mock.patch.object(matplotlib.axes.Axes, "errorbar", autospec=True, wraps=matplotlib.axes.Axes.errorbar) as eb:
        write_plots(data, None, tmp_path / "plots")
    (_, _, y), kw = eb.call_args.args, eb.call_args.kwargs
    lows = np.array(y) - np.array(kw["yerr"])
    highs = np.array(y) + np.array(kw["yerr"])
    np.testing.assert_allclose(lows, [9.0, 15.0])
    np.testing.assert_allclose(highs, [12.6, 25.0])

"""The dashboard's memorization page on an audit's outputs: per-clip false-alarm rate and detection table, as written."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

from streamlit.testing.v1 import AppTest  # noqa: E402
from test_memorization import centroids, style_clip  # noqa: E402

import dashboards  # noqa: E402
from dashboards.formatting import fmt  # noqa: E402
from dashboards.memorization import load_memorization, memo_detection, memo_false_alarms  # noqa: E402
from dashboards.runs import ENV_RESULTS  # noqa: E402
from dashboards.study import ENV_DB  # noqa: E402
from metrics.memorization import FewNegativesWarning, audit, plot_audit, write_outputs  # noqa: E402
from metrics.memorization.detection import detection_table  # noqa: E402
from metrics.memorization.pipeline import AudioAudit  # noqa: E402


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory) -> tuple[Path, dict]:
    rng = np.random.default_rng(2)
    c = centroids()
    train = {f"t{i}": style_clip(rng, 200, 12, segment=25) for i in range(4)}
    gen = {"copy": train["t1"][20:170].copy(), "novel": style_clip(rng, 150, 12, segment=25)}
    null = {f"n{i}": style_clip(rng, 150, 12, segment=25) for i in range(8)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewNegativesWarning)
        res = audit(gen, train, c, fpr=0.1, gen_hop=25, train_hop=5, null=null)
    truth = {"plant_exact_00": ("exact", "t1", 0.8), "plant_noise_30db_00": ("noise_30db", "t2", 1.0)}
    det = detection_table([{"generated_id": "plant_exact_00", "train_id": "t1", "gen_offset_s": 0.0, "train_offset_s": 0.8}],
                          truth)
    summary = AudioAudit({"semantic-ot": res}, {"semantic-ot": det}).summary()
    out = tmp_path_factory.mktemp("memo_dash") / "memorization"
    write_outputs(out, summary, res.matches, lambda d: plot_audit(res, d))
    return out, summary


def test_false_alarms_and_detection_frames(audit_dir):
    out, summary = audit_dir
    memo = load_memorization(out)
    fa = memo_false_alarms(memo)
    cal = summary["matchers"]["semantic-ot"]["calibration"]
    assert fa.iloc[0]["clip_false_alarm_rate"] == pytest.approx(cal["clip_false_alarms"] / cal["n_heldout"])
    assert (fa.iloc[0]["n_null_calibration"], fa.iloc[0]["n_null_heldout"]) == (4, 4)
    det = memo_detection(memo).set_index("alteration")
    assert (det.loc["exact", "detected"], det.loc["noise_30db", "detected"]) == (1, 0)
    assert det.loc["exact", "ci95_hi"] == pytest.approx(1.0)


def test_memorization_page_shows_them(monkeypatch, audit_dir):
    out, summary = audit_dir
    monkeypatch.setenv(ENV_RESULTS, str(out))
    monkeypatch.delenv(ENV_DB, raising=False)
    at = AppTest.from_file(str(Path(dashboards.__file__).with_name("app.py")), default_timeout=60).run()
    at.sidebar.radio[0].set_value("Memorization").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.value for m in at.metric][1] == fmt(summary["clip_false_alarm_rate"])
    tables = [d.value for d in at.dataframe]
    assert list(tables[0]["matcher"]) == ["semantic-ot"]
    assert list(tables[1]["alteration"]) == ["exact", "noise_30db"]
    assert len(at.get("vega_lite_chart")) == 1

"""AppTest for every page of the dashboard on results dirs the tests write: shown values match the JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from dashboard_fixtures import (
    CAPTIONS,
    HIGHER_IS_BETTER,
    MEMO,
    METRICS,
    SCORES,
    SYSTEMS,
    YTIDS,
    make_demo_store,
    make_results_dir,
    make_study_db,
)
from streamlit.testing.v1 import AppTest  # a declared dependency: its absence is a failure

import dashboards
from dashboards.formatting import fmt, fmt_ci
from dashboards.runs import ENV_RESULTS
from dashboards.study import ENV_DB, ENV_HUMAN_N_BOOT

APP = str(Path(dashboards.__file__).with_name("app.py"))
PAGES = ("Leaderboard", "Plots", "Clips", "Memorization", "Human study")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dash_app")
    a = make_results_dir(root, "run_a")
    b = make_results_dir(root, "run_b", extras=False,
                         protocol={"sample_rate": 16000, "normalize": "peak", "kld_direction": "ref||gen"})
    return a, b


def app(monkeypatch, *dirs: Path, db: str | None = None, page: str | None = None) -> AppTest:
    monkeypatch.setenv(ENV_RESULTS, os.pathsep.join(map(str, dirs)))
    if db:
        monkeypatch.setenv(ENV_DB, db)
    else:
        monkeypatch.delenv(ENV_DB, raising=False)
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.sidebar.radio[0].set_value(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def test_leaderboard_values_match_results_json(monkeypatch, runs):
    at = app(monkeypatch, runs[0])
    table = at.dataframe[0].value
    assert list(table["system"]) == list(SYSTEMS)
    for _, row in table.iterrows():
        for metric, m in METRICS[row["system"]].items():
            assert row[metric] == m["value"]
            assert row[f"{metric} 95% CI"] == fmt_ci(m["ci95"])
    assert not at.warning  # one run: nothing to compare


def test_leaderboard_sorting_and_metadata(monkeypatch, runs):
    at = app(monkeypatch, runs[0])
    at.selectbox[0].set_value("mcc").run()  # best first: the highest MCC on top (the store's direction)
    assert list(at.dataframe[0].value["system"]) == sorted(METRICS, key=lambda s: -METRICS[s]["mcc"]["value"])
    at.selectbox[0].set_value("fad_mel").run()  # a distance: the lowest on top
    assert list(at.dataframe[0].value["system"]) == sorted(METRICS, key=lambda s: METRICS[s]["fad_mel"]["value"])
    at.toggle[0].set_value(True).run()  # worst first
    table = at.dataframe[0].value
    assert list(table["system"]) == sorted(METRICS, key=lambda s: -METRICS[s]["fad_mel"]["value"])
    meta = at.dataframe[1].value.set_index("key")
    assert meta.loc["versions.torch", "run_a"] == "2.14.1"
    assert meta.loc["embedders.mel", "run_a"] == "mel-64-v1"
    assert meta.loc["checkpoints.mulan-ref", "run_a"] == "f00d" * 16


def test_incomparable_runs_warn(monkeypatch, runs):
    at = app(monkeypatch, *runs)
    assert texts(at.warning) == ["Runs 'run_a' and 'run_b' are not comparable (different protocol settings): "
                                 "protocol.normalize: 'none' vs 'peak'"]
    assert len(at.dataframe[0].value) == 4
    at.sidebar.multiselect[0].set_value(["run_a"]).run()  # the run picker
    assert not at.warning and list(at.dataframe[0].value["run"].unique()) == ["run_a"]


def test_plots_page(monkeypatch, runs):
    at = app(monkeypatch, *runs, page="Plots")
    charts = at.get("vega_lite_chart")
    # metric CI chart + per-clip histogram + one degradation curve (run_a only has degradation.json)
    assert len(charts) == 3
    at.selectbox(key="dist_metric").set_value("mcc").run()
    summary = at.dataframe[0].value.set_index("system")
    for system, m in SCORES.items():
        assert summary.loc[system, "mean"] == pytest.approx(sum(m["mcc"]) / len(m["mcc"]))
        assert summary.loc[system, "n"] == len(YTIDS)
    assert "**run_a** (mel)" in texts(at.markdown)


def test_plots_page_without_degradation_says_so(monkeypatch, runs):
    at = app(monkeypatch, runs[1], page="Plots")
    assert "No degradation.json in the selected runs (the degradation sweep was not run)." in texts(at.info)


def test_clips_page_plays_reference_and_every_system(monkeypatch, runs):
    at = app(monkeypatch, runs[0], page="Clips")
    assert len(at.get("audio")) == 1 + len(SYSTEMS)
    at.selectbox(key="clip_pick").set_value(YTIDS[1]).run()
    assert f"> {CAPTIONS[1]}" in texts(at.markdown)
    assert len(at.get("audio")) == 1 + len(SYSTEMS)
    # one static table (st.table: every cell rendered, none scrolled off-screen), a column per system
    (scores,) = [t.value for t in at.table]
    assert list(scores.columns) == ["better", *SYSTEMS]
    for system in SYSTEMS:
        assert scores[system].to_dict() == {m: fmt(v[1]) for m, v in SCORES[system].items()}
    assert scores["better"].to_dict() == {m: "↑" if HIGHER_IS_BETTER[m] else "↓" for m in SCORES["baseline"]}
    assert not at.dataframe[:-1]  # the per-clip scores are no longer narrow grids in the player columns


def test_clips_page_aspect_filter_and_worst_clips(monkeypatch, runs):
    at = app(monkeypatch, runs[0], page="Clips")
    at.multiselect(key="aspects").set_value(["mellow"]).run()
    assert at.selectbox(key="clip_pick").options == [f"{y} — {CAPTIONS[i]}" for i, y in enumerate(YTIDS) if i in (0, 2)]
    at.selectbox(key="worst_system").set_value("baseline").run()
    at.selectbox(key="worst_metric").set_value("kld").run()
    at.number_input(key="worst_n").set_value(2).run()
    worst = at.dataframe[-1].value
    kld = dict(zip(YTIDS, SCORES["baseline"]["kld"]))
    assert list(worst["ytid"]) == sorted(kld, key=kld.get, reverse=True)[:2]
    for metric in ("melody_rca", "chroma_cosine"):  # similarities: the worst clips are the lowest
        at.selectbox(key="worst_metric").set_value(metric).run()
        worst = at.dataframe[-1].value
        assert list(worst[metric]) == sorted(SCORES["baseline"][metric])[:2]
        assert f"The 2 clips with the lowest {metric} for baseline (↑: higher is better)." in texts(at.caption)


def test_every_clip_of_a_demo_store_plays_from_another_cwd(monkeypatch, tmp_path):
    """The store written by `make run` records audio relative to itself; the app, started elsewhere, finds it all."""
    store = make_demo_store(tmp_path / "checkout")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    at = app(monkeypatch, store, page="Clips")
    assert at.sidebar.multiselect(key="runs").options == ["demo"]  # results/demo/results is the demo run
    for y in YTIDS:
        at.selectbox(key="clip_pick").set_value(y).run()
        players = at.get("audio")
        assert len(players) == 1 + len(SYSTEMS), y
        assert all(p.proto.url for p in players), y  # each player has a source (the file was read)
        assert not [w for w in texts(at.warning) if "audio file not found" in w], y


def test_clips_page_missing_audio_is_named(monkeypatch, tmp_path):
    d = make_results_dir(tmp_path, "r", extras=False)
    (d / "reference" / f"{YTIDS[0]}.wav").unlink()
    at = app(monkeypatch, d, page="Clips")
    # the store records the path relative to itself; the page names the file it looked for
    assert f"reference: audio file not found: {d / 'reference' / f'{YTIDS[0]}.wav'}" in texts(at.warning)
    assert len(at.get("audio")) == len(SYSTEMS)


def test_memorization_page(monkeypatch, runs):
    at = app(monkeypatch, runs[0], page="Memorization")
    assert texts(at.metric) == [fmt(MEMO[k]) for k in ("tau", "fpr", "exact_rate", "approx_rate")]
    rows = at.dataframe[0].value
    assert list(rows["approx_rate"]) == [r["approx_rate"] for r in MEMO["rows"]]
    assert len(at.get("vega_lite_chart")) == 1
    matches = at.dataframe[1].value
    assert list(matches["train_id"]) == ["tr000001", "tr000777"]
    assert len(at.get("audio")) == 2  # the generated clip and the training clip, side by side
    at.selectbox(key="match_pick").set_value(1).run()
    assert len(at.get("audio")) == 0
    assert texts(at.info)[-2:] == ["generated clip: no audio path recorded", "training clip: no audio path recorded"]


def test_memorization_page_without_outputs(monkeypatch, runs):
    at = app(monkeypatch, runs[1], page="Memorization")
    assert texts(at.info)[0].startswith("No memorization outputs (memorization/memorization.json, matches.csv)")


def test_human_study_page_without_db(monkeypatch, runs):
    at = app(monkeypatch, runs[0], page="Human study")
    assert texts(at.info) == ["No ratings database given. Start with `musiclm-eval dashboard --db URL` "
                              "(or set MUSICLM_EVAL_DB)."]


@pytest.fixture(scope="module")
def study_url(tmp_path_factory) -> str:
    return make_study_db(tmp_path_factory.mktemp("study"))


def test_human_study_page_matches_the_analysis(monkeypatch, runs, study_url):
    from human_eval.analysis import analyze

    monkeypatch.setenv(ENV_HUMAN_N_BOOT, "50")
    at = app(monkeypatch, runs[0], db=study_url, page="Human study")
    expected = analyze(study_url, n_boot=50)
    assert not at.warning
    p = expected.progress
    assert texts(at.metric)[:3] == [f"{p['ratings_collected']} / {p['ratings_wanted']}",
                                    f"{p['raters_completed']} / {p['raters']}", "0"]
    assert p["ratings_collected"] == p["ratings_wanted"] == 12  # 3 pairs × 4 ratings, all collected
    frames = [d.value for d in at.dataframe]
    by_pair = frames[0]
    assert dict(zip(by_pair["pair"], by_pair["collected"])) == {k: v["collected"] for k, v in p["by_pair"].items()}
    pd.testing.assert_frame_equal(frames[1].reset_index(drop=True), expected.wins.reset_index(drop=True),
                                  check_dtype=False)
    bt = next(f for f in frames if "log_strength" in f.columns)
    pd.testing.assert_frame_equal(bt.reset_index(drop=True), expected.strengths, check_dtype=False)
    assert (bt["ci_low"] <= bt["log_strength"] + 1e-12).all() and (bt["log_strength"] <= bt["ci_high"] + 1e-12).all()
    ag = expected.agreement
    assert texts(at.metric)[3:] == [fmt(ag["krippendorff_alpha_interval"]),
                                    fmt(ag["pairwise_direction_agreement"])]
    raters = next(f for f in frames if "agreement_with_others" in f.columns)
    assert list(raters["n_ratings"]) == list(expected.raters["n_ratings"])


def test_human_study_page_on_a_database_that_is_not_a_study(monkeypatch, runs, tmp_path):
    import sqlite3

    sqlite3.connect(tmp_path / "other.db").close()
    (tmp_path / "other.db").touch()
    at = app(monkeypatch, runs[0], db=f"sqlite:///{tmp_path / 'other.db'}", page="Human study")
    (warning,) = texts(at.warning)
    assert warning.startswith(f"Cannot read the ratings database sqlite:///{tmp_path / 'other.db'}: StudyDBError:")
    assert "not a musiclm-eval study database" in warning


def test_human_study_page_with_absent_db(monkeypatch, runs, tmp_path):
    at = app(monkeypatch, runs[0], db=f"sqlite:///{tmp_path / 'absent.db'}", page="Human study")
    assert texts(at.warning) == [f"Ratings database not found: {tmp_path / 'absent.db'} "
                                 "(create a study with `musiclm-eval rate`)."]
    assert not (tmp_path / "absent.db").exists()  # looking must not create an empty database


# ---------------------------------------------------------------------------------------------
# partial / malformed results: readable messages, never a traceback


def test_no_results_dirs_given(monkeypatch):
    at = app(monkeypatch)
    assert texts(at.info)[0].startswith("No results directories given.")


def test_partial_and_malformed_runs_never_crash(monkeypatch, tmp_path):
    good = make_results_dir(tmp_path, "good", extras=False)
    partial = make_results_dir(tmp_path, "partial", extras=False)
    (partial / "per_clip.csv").unlink()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{truncated")
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps({"systems": {"x": {"metrics": {"fad_vggish": {"value": 2.5}}}}}))
    at = app(monkeypatch, good, partial, broken, old, tmp_path / "missing")
    for page in PAGES:
        at.sidebar.radio[0].set_value(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        check_partial_page(at, page, tmp_path)


def check_partial_page(at: AppTest, page: str, tmp_path: Path) -> None:
    partial, broken, old = (tmp_path / n for n in ("partial", "broken", "old"))
    if page != "Human study":
        errors = texts(at.error)
        assert errors[0].startswith(f"Run 'broken' has no usable results: {broken / 'results.json'}: not valid JSON")
        assert errors[1] == f"Run 'missing' has no usable results: {tmp_path / 'missing'}: results directory not found"
    sidebar = [e.value for e in at.sidebar.get("markdown")]
    assert f"- {partial}: no per_clip.csv (per-clip views unavailable)" in sidebar
    assert f"- {old / 'results.json'}: no schema_version (written by an older version?)" in sidebar
    if page == "Leaderboard":
        table = at.dataframe[0].value
        assert set(table["run"]) == {"good", "partial", "old"}
        assert table.set_index("run").loc["old", "fad_vggish"] == 2.5
        assert any("'old' records no embedders" in w for w in texts(at.warning))


ODD_RESULTS = [
    ([1, 2], "top level must be an object"),
    ({"schema_version": 1, "systems": ["a", "b"]}, "'systems' must be an object"),
    ({"schema_version": 1, "systems": {"a": "oops", "b": {"metrics": [1]}, "c": {"metrics": {"mcc": 3}}},
      "metadata": "none", "reference": 7}, "systems.a must be an object"),
    ({"schema_version": 99, "systems": {"a": {"metrics": {"mcc": {"value": 0.5, "ci95": "wide"}}}}},
     "schema_version 99 is newer than this reader"),
]


def test_structurally_odd_results_json_is_explained(monkeypatch, tmp_path):
    dirs = []
    for i, (doc, _) in enumerate(ODD_RESULTS):
        dirs.append(tmp_path / f"odd{i}")
        dirs[-1].mkdir()
        (dirs[-1] / "results.json").write_text(json.dumps(doc))
    at = app(monkeypatch, *dirs)
    for page in PAGES:
        at.sidebar.radio[0].set_value(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        shown = texts(at.error) + [e.value for e in at.sidebar.get("markdown")]
        for _, message in ODD_RESULTS:
            assert any(message in s for s in shown), (page, message, shown)


def test_a_value_outside_its_interval_is_explained_on_leaderboard_and_plots(monkeypatch, runs, tmp_path):
    """FAD's bias-corrected jackknife interval can lie below its plug-in value: both pages say why, and only then."""
    from metrics.intervals import VALUE_OUTSIDE_INTERVAL_NOTE
    from metrics.result import MetricResult
    from metrics.store import write_store

    write_store(tmp_path / "small", "compare",
                {"a": {"fad_mel": MetricResult("fad_mel", 13.3, (9.0, 12.6), higher_is_better=False)}})
    for page in ("Leaderboard", "Plots"):
        assert VALUE_OUTSIDE_INTERVAL_NOTE in texts(app(monkeypatch, tmp_path / "small", page=page).caption)
        assert VALUE_OUTSIDE_INTERVAL_NOTE not in texts(app(monkeypatch, *runs, page=page).caption)

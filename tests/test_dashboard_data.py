"""The dashboard's modules (runs, leaderboard, per_clip, clips, memorization, study): what the dashboard shows,
checked against the numbers written into the fixtures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
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
)

from benchmarks.cli.dashboard import APP, dashboard, dashboard_invocation
from dashboards.clips import clip_view
from dashboards.formatting import fmt, fmt_ci
from dashboards.leaderboard import comparability_warnings, leaderboard, metadata_table, skipped_files
from dashboards.memorization import match_audio
from dashboards.per_clip import (
    aspect_counts,
    filter_clips,
    parse_aspects,
    per_clip_histogram,
    per_clip_summary,
    worst_clips,
)
from dashboards.runs import ENV_RESULTS, Run, cache_key, higher_is_better, load_run, results_dirs_from_env, run_names
from dashboards.study import ENV_DB, ENV_HUMAN_N_BOOT, HUMAN_N_BOOT, human_n_boot, load_human_study
from metrics.io import redact_url


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_results_dir(tmp_path_factory.mktemp("dash"), "run_a")


@pytest.fixture(scope="module")
def run(run_dir) -> Run:
    return load_run(run_dir)


def test_complete_run_loads_without_problems(run):
    assert run.problems == []
    assert run.systems == list(SYSTEMS)
    assert len(run.per_clip) == len(SYSTEMS) * len(YTIDS)
    assert run.degradation_embedder == "mel"
    assert run.memorization is not None and run.memorization.problems == []


def test_leaderboard_matches_results_json(run):
    table = leaderboard([run])
    assert list(table["system"]) == list(SYSTEMS)
    for _, row in table.iterrows():
        for metric, m in METRICS[row["system"]].items():
            assert row[metric] == m["value"]
            assert row[f"{metric} 95% CI"] == (f"[{m['ci95'][0]:.4g}, {m['ci95'][1]:.4g}]" if m["ci95"] else "—")
        assert row["n_clips"] == len(YTIDS)


@pytest.mark.parametrize("metric", list(HIGHER_IS_BETTER))
def test_leaderboard_sorts_best_first_in_the_stored_direction(run, metric):
    best = sorted(METRICS, key=lambda s: METRICS[s][metric]["value"], reverse=HIGHER_IS_BETTER[metric])
    assert list(leaderboard([run], sort_by=metric)["system"]) == best
    assert list(leaderboard([run], sort_by=metric, best_first=False)["system"]) == best[::-1]
    assert list(leaderboard([run], sort_by="system")["system"]) == sorted(SYSTEMS)


def test_fmt_is_four_significant_digits():
    assert fmt(4.123456) == "4.123"
    assert fmt(8e-05) == "8e-05"
    assert fmt(None) == "—" and fmt(float("nan")) == "—"
    assert fmt_ci([3.5, 4.9]) == "[3.5, 4.9]" and fmt_ci(None) == "—"


def test_identical_protocol_is_comparable(tmp_path, run):
    other = load_run(make_results_dir(tmp_path, "run_b", extras=False))
    assert comparability_warnings([run, other]) == []


@pytest.mark.parametrize("change, phrase, key", [
    ({"embedders": {"mel": "mel-128-v2"}}, "different embedders", "embedders.mel: 'mel-64-v1' vs 'mel-128-v2'"),
    ({"protocol": {"sample_rate": 16000, "normalize": "peak", "kld_direction": "ref||gen"}},
     "different protocol settings", "protocol.normalize: 'none' vs 'peak'"),
    ({"protocol": {"sample_rate": 16000, "normalize": "none"}},
     "different protocol settings", "protocol.kld_direction: 'ref||gen' vs '(absent)'"),
])
def test_incomparable_runs_are_named_with_the_differing_setting(tmp_path, run, change, phrase, key):
    other = load_run(make_results_dir(tmp_path, "run_b", extras=False, **change))
    (warning,) = comparability_warnings([run, other])
    assert warning.startswith("Runs 'run_a' and 'run_b' are not comparable (" + phrase + ")")
    assert key in warning


def test_different_reference_set_is_incomparable(tmp_path, run):
    other_dir = make_results_dir(tmp_path, "run_b", extras=False)
    doc = json.loads((other_dir / "results.json").read_text())
    doc["reference"]["n_clips"] = 5000
    (other_dir / "results.json").write_text(json.dumps(doc))
    (warning,) = comparability_warnings([run, load_run(other_dir)])
    assert "different reference sets" in warning and "reference.n_clips: 4 vs 5000" in warning


def test_run_without_metadata_is_flagged(tmp_path, run):
    other_dir = make_results_dir(tmp_path, "old", extras=False)
    doc = json.loads((other_dir / "results.json").read_text())
    del doc["metadata"], doc["reference"]
    (other_dir / "results.json").write_text(json.dumps(doc))
    (warning,) = comparability_warnings([run, load_run(other_dir)])
    assert warning == ("Runs 'run_a' and 'old' may not be comparable: 'old' records no embedders, "
                       "reference set or protocol settings.")


def test_metadata_table_marks_differing_keys(tmp_path, run):
    other = load_run(make_results_dir(tmp_path, "run_b", extras=False, embedders={"mel": "other"}))
    meta = metadata_table([run, other]).set_index("key")
    assert meta.loc["versions.torch", "run_a"] == "2.14.1"
    assert meta.loc["git_commit", "run_b"] == "abc1234"
    assert bool(meta.loc["embedders.mel", "differs"]) and not bool(meta.loc["versions.torch", "differs"])


@pytest.mark.parametrize("raw, expected", [
    ("['pop', 'mellow piano']", ["pop", "mellow piano"]),
    ('["a", "b"]', ["a", "b"]),
    ("[pop, rock]", ["pop", "rock"]),  # not a Python literal: split on commas instead of failing
    ("", []), (float("nan"), []), (None, []), ("'solo'", ["solo"]),
])
def test_parse_aspects(raw, expected):
    assert parse_aspects(raw) == expected


def test_aspect_filter_requires_all_chosen_aspects(run):
    df = run.per_clip
    assert aspect_counts(df)["mellow"] == 2
    assert sorted(filter_clips(df, ["mellow"])["ytid"].unique()) == [YTIDS[0], YTIDS[2]]
    assert list(filter_clips(df, ["mellow", "piano"])["ytid"].unique()) == [YTIDS[0]]
    assert filter_clips(df, ["mellow", "rock"]).empty
    assert list(filter_clips(df, [], "DISTORTED")["ytid"].unique()) == [YTIDS[1]]


@pytest.mark.parametrize("metric", ["kld", "fad_mel", "mcc", "melody_rca", "chroma_cosine"])
def test_worst_clips_follow_the_metric_direction(run, metric):
    assert higher_is_better([run], metric) is HIGHER_IS_BETTER[metric]
    worst = worst_clips(run.per_clip, "baseline", metric, n=2, higher_is_better=higher_is_better([run], metric))
    scores = dict(zip(YTIDS, SCORES["baseline"][metric]))
    # similarities (MCC, melody RCA, chroma cosine): the worst clips are the lowest; distances: the highest
    expected = sorted(scores, key=scores.get, reverse=not HIGHER_IS_BETTER[metric])[:2]
    assert list(worst["ytid"]) == expected
    assert list(worst[metric]) == [scores[y] for y in expected]
    if metric in ("melody_rca", "chroma_cosine"):
        assert list(worst[metric]) == sorted(scores.values())[:2]


def test_the_stored_direction_wins_over_the_metric_name(tmp_path):
    """A metric whose name the fallback would read as a distance, declared higher-is-better in the store."""
    from metrics.store import write_store

    values = {"a": [0.9, 0.2, 0.5], "b": [0.1, 0.8, 0.3]}
    rows = [{"system": s, "ytid": f"c{i}", "caption": f"clip {i}", "fad_like": v} for s, vs in values.items() for i, v in enumerate(vs)]
    write_store(tmp_path / "s", "compare", {s: {"fad_like": {"value": float(np.mean(v)), "higher_is_better": True}}
                                          for s, v in values.items()}, per_clip=pd.DataFrame(rows))
    r = load_run(tmp_path / "s")
    assert higher_is_better([r], "fad_like") is True
    worst = worst_clips(r.per_clip, "a", "fad_like", n=1, higher_is_better=higher_is_better([r], "fad_like"))
    assert list(worst["ytid"]) == ["c1"]  # the lowest value: 0.2
    assert list(leaderboard([r], sort_by="fad_like")["system"]) == ["a", "b"]  # best (highest mean) first


def test_per_clip_summary_and_histogram(run):
    summary = per_clip_summary(run.per_clip, "kld").set_index("system")
    for system, m in SCORES.items():
        assert summary.loc[system, "mean"] == pytest.approx(np.mean(m["kld"]))
        assert summary.loc[system, "median"] == pytest.approx(np.median(m["kld"]))
        assert summary.loc[system, "std"] == pytest.approx(np.std(m["kld"], ddof=1))
    hist = per_clip_histogram(run.per_clip, "kld", bins=5)
    assert hist.groupby("system")["count"].sum().to_dict() == {s: len(YTIDS) for s in SYSTEMS}
    assert hist["lo"].min() == min(min(m["kld"]) for m in SCORES.values())


def test_clip_view_resolves_relative_and_absolute_paths(run, run_dir):
    view = clip_view(run, YTIDS[1])
    assert view.caption == CAPTIONS[1] and view.aspects == ["rock", "distorted guitar", "loud drums"]
    assert view.reference == run_dir / "reference" / f"{YTIDS[1]}.wav"
    assert [s["audio"] for s in view.systems] == [run_dir / d / f"{YTIDS[1]}.wav" for d in SYSTEMS.values()]
    assert view.systems[0]["scores"] == {m: v[1] for m, v in SCORES["musiclm-ref"].items()}
    assert clip_view(run, "no-such-id") is None


def test_memorization_outputs(run, run_dir):
    memo = run.memorization
    assert memo.data["tau"] == MEMO["tau"]
    assert list(memo.rows["prompt_length"]) == [r["prompt_tokens"] for r in MEMO["rows"]]
    assert list(memo.rows["approx_hi"]) == [r["approx_ci95"][1] for r in MEMO["rows"]]
    gen, train = match_audio(memo, memo.matches.iloc[0])
    assert gen.resolve() == (run_dir / "gen_ref" / f"{YTIDS[0]}.wav").resolve()
    assert train == run_dir / "memorization" / "train" / "tr000001.wav"
    assert match_audio(memo, memo.matches.iloc[1]) == (None, None)


def test_memorization_only_directory(tmp_path):
    d = tmp_path / "memo_out"
    d.mkdir()
    (d / "memorization.json").write_text(json.dumps(MEMO))
    run = load_run(d)
    assert run.results is None and run.memorization is not None
    assert run.problems == [f"{d}: no results.json (not a results directory, or the run did not finish)",
                            f"{d}: no matches.csv (list of matches unavailable)"]


def test_cache_key_changes_only_when_a_file_changes(tmp_path):
    d = make_results_dir(tmp_path, "r", extras=False)
    k1 = cache_key(d)
    assert cache_key(d) == k1
    doc = (d / "results.json").read_text()
    (d / "results.json").write_text(doc + "\n")
    assert cache_key(d) != k1


def test_a_run_is_named_after_its_meaningful_directory(tmp_path):
    store = make_demo_store(tmp_path)  # make run's layout: results/demo/results
    assert store.name == "results" and store.parent.name == "demo"
    assert load_run(store).name == "demo"
    assert run_names([store]) == ["demo"]
    assert run_names(["/x/a/demo/results", "/x/b/demo/results", "/x/c/out"]) == ["a/demo", "b/demo", "c"]
    assert run_names(["results"]) == ["results"]  # nothing above it to name it after


def test_run_names_are_unique():
    assert run_names(["/x/a/run", "/x/b/run", "/x/c/other"]) == ["a/run", "b/run", "other"]
    assert run_names(["/x/a/run", "/y/a/run"]) == ["/x/a/run", "/y/a/run"]


def test_results_dirs_from_env():
    env = {ENV_RESULTS: os.pathsep.join(["/a", "", "/b c"])}
    assert results_dirs_from_env(env) == [Path("/a"), Path("/b c")]
    assert results_dirs_from_env({}) == []


def test_human_study_without_analysis_module_says_so(monkeypatch, tmp_path):
    import sys

    db = tmp_path / "ratings.db"
    db.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "human_eval.analysis", None)  # import of it now fails
    study = load_human_study(f"sqlite:///{db}")
    assert study.wins is None
    assert study.problems[0].startswith("Human-study analysis is unavailable (human_eval.analysis cannot be imported")


def test_redact_url_hides_password():
    assert "s3cret" not in redact_url("postgresql+psycopg://me:s3cret@db:5432/study")


# ---------------------------------------------------------------------------------------------
# CLI


def test_invocation_passes_dirs_and_db_through_the_environment(run_dir):
    argv, env = dashboard_invocation([run_dir], db="sqlite:///r.db", port=8765, base_env={"PYTHONPATH": "/x"})
    assert argv[1:5] == ["-m", "streamlit", "run", str(APP)]
    assert argv[argv.index("--server.port") + 1] == "8765"
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.headless") + 1] == "true"
    assert env[ENV_RESULTS] == str(run_dir.resolve()) and env[ENV_DB] == "sqlite:///r.db"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(APP.parents[1]), "/x"]
    assert env[ENV_HUMAN_N_BOOT] == str(HUMAN_N_BOOT)
    assert human_n_boot(env) == HUMAN_N_BOOT == 1000
    _, env = dashboard_invocation([], base_env={ENV_DB: "stale"})
    assert ENV_DB not in env and env[ENV_RESULTS] == ""


def test_missing_results_dir_is_a_clear_error(tmp_path):
    with pytest.raises(click.BadParameter, match="results directory not found"):
        dashboard_invocation([tmp_path / "nope"])
    res = CliRunner().invoke(dashboard, ["--results", str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert f"{tmp_path / 'nope'}: results directory not found" in res.output


# ---------------------------------------------------------------------------------------------
# malformed, partial and older results directories: problems, never exceptions


def _write(d: Path, name: str, text: str) -> None:
    (d / name).parent.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text)


def test_missing_directory(tmp_path):
    run = load_run(tmp_path / "gone")
    assert run.results is None and run.problems == [f"{tmp_path / 'gone'}: results directory not found"]


def test_invalid_json(tmp_path):
    _write(tmp_path, "results.json", "{not json")
    run = load_run(tmp_path)
    assert run.results is None
    assert run.problems[0].startswith(f"{tmp_path / 'results.json'}: not valid JSON")


def test_older_run_without_schema_version_or_per_clip(tmp_path):
    _write(tmp_path, "results.json", json.dumps({"systems": {"a": {"metrics": {"fad_vggish": {"value": 3.0}}}}}))
    run = load_run(tmp_path)
    assert run.problems == [f"{tmp_path / 'results.json'}: no schema_version (written by an older version?)",
                            f"{tmp_path}: no per_clip.csv (per-clip views unavailable)"]
    table = leaderboard([run])
    assert table.loc[0, "fad_vggish"] == 3.0 and table.loc[0, "fad_vggish 95% CI"] == "—"


def test_bad_per_clip_columns_and_values(tmp_path):
    d = make_results_dir(tmp_path, "r", extras=False)
    df = pd.read_csv(d / "per_clip.csv", dtype=str)
    df.loc[0, "kld"] = "about 2"
    df.to_csv(d / "per_clip.csv", index=False)
    run = load_run(d)
    assert run.problems == [f"{d / 'per_clip.csv'}: column 'kld' has 1 non-numeric value(s), shown as blank"]
    assert run.per_clip["kld"].isna().sum() == 1
    df.drop(columns=["ytid"]).to_csv(d / "per_clip.csv", index=False)
    run = load_run(d)
    assert run.per_clip is None
    assert run.problems == [f"{d / 'per_clip.csv'}: no 'ytid' column (per-clip views unavailable)"]


def test_non_numeric_metric_value(tmp_path):
    _write(tmp_path, "results.json", json.dumps({"schema_version": 1, "systems": {"a": {"metrics": {"mcc": {"value": "high"}}}}}))
    run = load_run(tmp_path)
    assert f"{tmp_path / 'results.json'}: systems.a.metrics.mcc.value 'high' is not a number (shown as blank)" in run.problems
    assert np.isnan(leaderboard([run]).loc[0, "mcc"])


def test_broken_memorization_and_degradation_files(tmp_path):
    d = make_results_dir(tmp_path, "r", extras=False)
    # rows[0] uses `prompt_length`, a name no writer of this version uses: read as a row without prompt_tokens
    _write(d, "memorization/memorization.json", json.dumps({"tau": 0.1, "rows": [{"exact_rate": 0.1, "prompt_length": 5}]}))
    _write(d, "memorization/matches.csv", "a,b\n1,2\n")
    _write(d, "degradation.json", json.dumps({"curves": {"noise": [{"severity": "x", "fad": 1}]}}))
    run = load_run(d)
    m, g = d / "memorization" / "memorization.json", d / "degradation.json"
    assert run.problems == [
        f"{m}: no 'fpr'", f"{m}: no 'exact_rate'", f"{m}: no 'approx_rate'",
        f"{d / 'memorization' / 'matches.csv'}: no 'generated_id', 'train_id' column",
        f"{m}: rows[0] has no numeric prompt_tokens",
        f"{g}: curves.noise[0] needs numeric 'severity' and 'fad'",
    ]
    assert run.memorization.rows is None and run.memorization.matches is None and run.degradation is None


def test_missing_and_skipped_clips_are_listed(tmp_path):
    d = make_results_dir(tmp_path, "r", extras=False)
    doc = json.loads((d / "results.json").read_text())
    doc["systems"]["baseline"]["missing_ids"] = ["ytMISSING01"]
    doc["systems"]["baseline"]["skipped"] = [{"path": "gen_base/bad.wav", "reason": "NaN samples"}]
    (d / "results.json").write_text(json.dumps(doc))
    run = load_run(d)
    table = leaderboard([run]).set_index("system")
    assert table.loc["baseline", "missing"] == 1 and table.loc["baseline", "skipped"] == 1
    assert table.loc["musiclm-ref", "missing"] == 0
    assert skipped_files([run]).to_dict("records") == [
        {"run": "r", "system": "baseline", "item": "ytMISSING01", "reason": "missing id"},
        {"run": "r", "system": "baseline", "item": "gen_base/bad.wav", "reason": "NaN samples"},
    ]


@pytest.mark.parametrize("raw, expected", [("50", 50), ("0", 0), ("-3", 0), ("many", 1000), ("", 1000)])
def test_human_n_boot_from_env(raw, expected):
    assert human_n_boot({ENV_HUMAN_N_BOOT: raw}) == expected

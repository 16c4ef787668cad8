"""Metric–human agreement (issue #30): the estimators on hand-made and simulated studies, the study-database
and results-store path, the CLI and its errors."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from benchmarks.cli import main
from human_eval.agreement import (
    AgreementError,
    MetricValues,
    agreement,
    agreement_frame,
    kendall_tau_b,
    spearman_rho,
)
from human_eval.agreement_plan import study_metrics
from human_eval.db import SCHEMA_VERSION
from human_eval.simulate import SimulationSpec, population_agreement, simulate_study, write_simulated_ratings
from human_eval.stats import rater_sign_flip_p
from metrics.store import read_store, write_store


def test_rank_correlations_equal_scipys_with_ties():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, (50, 6)).astype(float), rng.integers(0, 4, (50, 6)).astype(float)
    ok = (np.ptp(x, axis=1) > 0) & (np.ptp(y, axis=1) > 0)
    ref_tau = [sps.kendalltau(a, b).statistic for a, b in zip(x[ok], y[ok], strict=True)]
    ref_rho = [sps.spearmanr(a, b).statistic for a, b in zip(x[ok], y[ok], strict=True)]
    np.testing.assert_allclose(kendall_tau_b(x[ok], y[ok]), ref_tau, atol=1e-12)
    np.testing.assert_allclose(spearman_rho(x[ok], y[ok]), ref_rho, atol=1e-12)
    assert np.isnan(kendall_tau_b(np.ones((1, 4)), y[:1, :4])).all()


def _hand_study():
    """Two captions, one pair each, four ratings: values chosen so every rule shows."""
    ratings = pd.DataFrame({"rater_id": [1, 2, 1, 2, 3], "item_id": ["c1", "c1", "c2", "c2", "c2"],
                            "system_a": ["x"] * 5, "system_b": ["y"] * 5, "score": [2, -1, 1, 0, -2]})
    # c1: metric prefers x (agrees with rater 1, not rater 2); c2: a metric tie (1/2 each, the 0 is dropped)
    pc = {("x", "c1"): 3.0, ("y", "c1"): 1.0, ("x", "c2"): 5.0, ("y", "c2"): 5.0}
    return ratings, pc


def test_pair_rule_by_hand_and_direction_from_the_store():
    ratings, pc = _hand_study()
    up = agreement_frame(ratings, ["x", "y"], [MetricValues("m", True, {}, pc)], n_boot=50).table.iloc[0]
    assert up.agreement == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert (up.n_ratings_used, up.n_no_preference, up.n_metric_ties) == (4, 1, 2)
    flipped = {k: -v for k, v in pc.items()}  # the same metric as a distance: lower is better
    down = agreement_frame(ratings, ["x", "y"], [MetricValues("m", False, {}, flipped)], n_boot=50).table.iloc[0]
    assert down.agreement == up.agreement
    # the p is the caption sign-flip of the per-caption sums of (agree - 1/2): c1 sums 0.5 - 0.5 = 0
    assert up.agreement_p == pytest.approx(float(rater_sign_flip_p(np.array([0.0, 0.0]))))


def _metrics(st, flip_planted: bool = False):
    ms = study_metrics(st)
    if flip_planted:
        ms[0] = MetricValues("planted", False, {}, {k: -v for k, v in ms[0].per_clip.items()})
    return ms


def test_simulated_study_recovers_the_planted_agreement_and_intervals_cover_it():
    """Seeded replications: the planted metric's estimate is near the population value and its interval covers
    it; the independent metric sits near 1/2 with intervals covering 1/2. The >=200-replication coverage run
    is benchmarks.agreement_coverage (docs/figures/agreement_coverage.json)."""
    spec = SimulationSpec(systems=4, captions=24, raters=10, ratings_per_trial=3, rho=0.7)
    truth = population_agreement(spec, n_captions=40_000)
    assert 0.6 < truth < 0.9
    est, cover, indep, cover_half, p_planted = [], 0, [], 0, []
    reps = 12
    for seed in range(reps):
        st = simulate_study(spec, seed=seed)
        t = agreement_frame(st.ratings, st.systems, _metrics(st, flip_planted=seed % 2 == 1), n_boot=200,
                            seed=seed, system_level=False).table.set_index("metric")
        est.append(t.loc["planted", "agreement"])
        lo, hi = t.loc["planted", "agreement_ci95"]
        cover += lo <= truth <= hi
        p_planted.append(t.loc["planted", "agreement_p"])
        indep.append(t.loc["independent", "agreement"])
        lo, hi = t.loc["independent", "agreement_ci95"]
        cover_half += lo <= 0.5 <= hi
    assert abs(np.mean(est) - truth) < 0.03
    assert cover >= reps - 2 and cover_half >= reps - 2
    assert abs(np.mean(indep) - 0.5) < 0.04
    assert np.mean(np.array(p_planted) < 0.05) >= 0.9


def test_system_level_tau_planted_high_and_independent_near_zero():
    spec = SimulationSpec(systems=6, captions=20, raters=10, ratings_per_trial=2, rho=0.9, system_spread=3.0)
    taus, covers = [], 0
    for seed in range(4):
        st = simulate_study(spec, seed=seed)
        t = agreement_frame(st.ratings, st.systems, _metrics(st), n_boot=150, seed=seed).table.set_index("metric")
        assert t.loc["planted", "kendall_tau"] >= 0.6 and t.loc["planted", "spearman_rho"] >= 0.7
        taus.append(t.loc["independent", "kendall_tau"])
        lo, hi = t.loc["independent", "kendall_tau_ci95"]
        covers += lo <= 0 <= hi
        assert t.loc["planted", "n_systems"] == 6
    assert abs(np.mean(taus)) < 0.35 and covers >= 3


def test_few_systems_are_flagged():
    st = simulate_study(SimulationSpec(systems=3, captions=8, raters=4, ratings_per_trial=2), seed=0)
    r = agreement_frame(st.ratings, st.systems, _metrics(st), n_boot=20)
    assert any("only 3 systems" in n for n in r.notes)


# ---- the database and store path, the CLI -----------------------------------------------------------------


@pytest.fixture(scope="module")
def study_and_store(tmp_path_factory):
    from tests.human_fixtures import make_study

    root = tmp_path_factory.mktemp("agree")
    url, created = make_study(root, n_items=6, ratings_per_pair=6)
    systems = [*(a for a, _ in created.pairs), *(b for _, b in created.pairs)]
    systems = list(dict.fromkeys(systems))
    rng = np.random.default_rng(0)
    quality = {(s, f"yt{i:04d}"): float(k + rng.standard_normal()) for k, s in enumerate(systems) for i in range(6)}
    n = write_simulated_ratings(url, quality, raters=6, ratings_per_trial=4, seed=1)
    assert n == 4 * 6 * len(created.pairs)
    store_names = {"reference": "ground truth"}
    rows = [{"system": store_names.get(s, s), "ytid": y, "good": q, "dist": -q + 0.1 * rng.standard_normal()}
            for (s, y), q in quality.items()]
    pc = pd.DataFrame(rows)
    sysm = {store_names.get(s, s): {"good": {"value": float(np.mean([q for (x, _), q in quality.items() if x == s])),
                                             "higher_is_better": True},
                                    "dist": {"value": 0.0, "higher_is_better": False},
                                    "wins": {"value": 3, "ci95": None}} for s in systems}  # compare --ratings
    write_store(root / "store", "compare", sysm, per_clip=pc)
    write_store(root / "no_per_clip", "compare", sysm)
    write_store(root / "other_ids", "compare", sysm, per_clip=pc.assign(ytid="other-" + pc.ytid))
    return root, url, systems


def test_agreement_reads_the_study_and_the_store(study_and_store):
    root, url, systems = study_and_store
    r = agreement(root / "store", url, rename={"reference": "ground truth"}, n_boot=100)
    t = r.table.set_index("metric")
    assert t.loc["good", "agreement"] > 0.6 and t.loc["dist", "agreement"] > 0.6  # a distance, lower is better
    assert t.loc["good", "n_systems"] == len(systems)
    assert r.notes[0].startswith("SIMULATED")
    assert r.settings["clips_matched"] == r.settings["clips_rated"]


def test_cli_writes_an_agreement_store_and_json(study_and_store, tmp_path):
    root, url, _ = study_and_store
    out = tmp_path / "agree"
    res = CliRunner().invoke(main, ["agreement", "--results", str(root / "store"), "--db", url, "--rename",
                                    "reference=ground truth", "--bootstrap", "50", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "pair agreement" in res.output and "SIMULATED" in res.output
    store = read_store(out)
    assert store.kind == "agreement" and set(store.systems) == {"good", "dist"}
    assert store.metric("good", "pair_agreement")["higher_is_better"] is True
    assert (out / "plots" / "agreement_good.png").stat().st_size > 1000
    js = CliRunner().invoke(main, ["agreement", "--results", str(root / "store"), "--db", url, "--rename",
                                   "reference=ground truth", "--bootstrap", "0", "--json", "-"])
    assert js.exit_code == 0, js.output
    assert '"kind": "agreement"' in js.output


def test_bad_inputs_name_the_file(study_and_store, tmp_path):
    root, url, _ = study_and_store
    with pytest.raises(AgreementError, match="no_per_clip/per_clip.csv"):
        agreement(root / "no_per_clip", url, n_boot=0)
    other = tmp_path / "other.db"
    with sqlite3.connect(url.removeprefix("sqlite:///")) as src, sqlite3.connect(other) as dst:
        src.backup(dst)
    with sqlite3.connect(other) as c:
        c.execute("UPDATE schema_info SET version = 1")
    with pytest.raises(Exception, match=rf"{other}.*schema version \[1\]"):
        agreement(root / "store", str(other), n_boot=0)
    with sqlite3.connect(other) as c:
        c.execute(f"UPDATE schema_info SET version = {SCHEMA_VERSION}")
        c.execute("DELETE FROM ratings")
    with pytest.raises(AgreementError, match=rf"{other}: no kept pair ratings"):
        agreement(root / "store", str(other), n_boot=0)
    with pytest.raises(AgreementError, match=r"other_ids/per_clip.csv: none of the .* rated clips .*--rename"):
        agreement(root / "other_ids", url, n_boot=0)
    res = CliRunner().invoke(main, ["agreement", "--results", str(root / "store"), "--db", url, "--metric", "nope"])
    assert res.exit_code != 0 and "no metric 'nope'" in res.output


def test_simulated_ratings_refuse_missing_quality(study_and_store):
    _, url, systems = study_and_store
    with pytest.raises(ValueError, match="no simulated quality"):
        write_simulated_ratings(url, {(systems[0], "yt0000"): 0.0}, raters=2)


def test_rho_for_agreement_inverts_population_agreement():
    from human_eval.simulate import rho_for_agreement

    spec = SimulationSpec(systems=3)
    rho = rho_for_agreement(0.65, spec, n_captions=20_000)
    assert population_agreement(replace(spec, rho=rho), n_captions=20_000) == pytest.approx(0.65, abs=0.01)


def test_rate_plan_agreement_power_rises_with_captions():
    from human_eval.agreement_plan import agreement_power

    few = agreement_power(0.7, systems=3, captions=4, raters=6, ratings_per_trial=1, n_sim=30, n_boot=40)
    many = agreement_power(0.7, systems=3, captions=24, raters=6, ratings_per_trial=1, n_sim=30, n_boot=40)
    assert few["power"] < many["power"] and many["power"] >= 0.8
    assert many["mean_ci95_width"] < few["mean_ci95_width"]
    assert many["planted_agreement"] == pytest.approx(0.7, abs=0.01)
    res = CliRunner().invoke(main, ["rate", "plan", "--systems", "3", "--effect", "0.8", "--simulations", "20",
                                    "--agreement", "0.7", "--agreement-captions", "6", "--agreement-raters", "4", "--json", "-"])
    assert res.exit_code == 0, res.output
    assert '"ci95_coverage"' in res.output


def test_demo_step_rates_a_copy_with_simulated_raters(study_and_store, tmp_path):
    from benchmarks.demo_agreement import simulated_agreement
    from human_eval.analysis import analyze

    root, url, systems = study_and_store
    pc = read_store(root / "store").per_clip
    write_store(tmp_path / "results", "compare", {s: {"mcc": {"value": 0.5, "higher_is_better": True}}
                                                  for s in pc.system.unique()},
                per_clip=pc[["system", "ytid", "good"]].rename(columns={"good": "mcc"}))
    before = len(analyze(url, n_boot=0).ratings)
    lines: list[str] = []
    out = simulated_agreement(tmp_path, url, seed=0, log=lines.append, raters=4, ratings_per_trial=2, n_boot=50)
    assert len(analyze(url, n_boot=0).ratings) == before  # the study itself is untouched; a copy was rated
    assert "SIMULATED" in lines[0] and any(line.strip().startswith("mcc") for line in lines)
    assert read_store(out).kind == "agreement"


def test_dashboard_human_study_page_shows_agreement_stores(study_and_store, tmp_path, monkeypatch):
    import os

    from streamlit.testing.v1 import AppTest

    from dashboards.runs import ENV_RESULTS
    from dashboards.study import ENV_DB
    from human_eval.agreement_report import write_outputs

    root, url, _ = study_and_store
    write_outputs(agreement(root / "store", url, rename={"reference": "ground truth"}, n_boot=30), tmp_path / "agree")
    monkeypatch.setenv(ENV_RESULTS, os.pathsep.join([str(tmp_path / "agree")]))
    monkeypatch.delenv(ENV_DB, raising=False)
    import dashboards

    at = AppTest.from_file(str(Path(dashboards.__file__).with_name("app.py")), default_timeout=60).run()
    at.sidebar.radio[0].set_value("Human study").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Metric–human agreement" in [h.value for h in at.subheader]
    assert any(w.value.startswith("SIMULATED") for w in at.warning)
    shown = at.dataframe[0].value
    assert set(shown.metric) == {"good", "dist"} and shown.agreement.between(0, 1).all()


def test_bradley_terry_on_weighted_wins_equals_mm_and_scipy():
    """The bootstrap refits BT on weighted (non-integer) win matrices: the Newton fit equals Hunter's (2004) MM
    iteration and a direct scipy maximization of the likelihood there too."""
    from scipy.optimize import minimize

    from human_eval.stats import bradley_terry

    rng = np.random.default_rng(3)
    w = rng.gamma(2.0, 3.0, (5, 5)) * (1 - np.eye(5))
    beta = bradley_terry(w, prior=0.0)
    p = np.ones(5)
    for _ in range(5000):  # MM: p_i <- W_i / sum_j n_ij / (p_i + p_j)
        n = w + w.T
        p = w.sum(axis=1) / (n / (p[:, None] + p[None, :])).sum(axis=1)
        p /= np.exp(np.log(p).mean())
    np.testing.assert_allclose(beta, np.log(p), atol=1e-6)

    def nll(b):
        return -(w * -np.logaddexp(0, -(b[:, None] - b[None, :]))).sum()

    opt = minimize(nll, np.zeros(5), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(beta, opt - opt.mean(), atol=1e-4)

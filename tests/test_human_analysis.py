"""The study's statistics: hand-checked Wilcoxon and sign tests, corrections, Krippendorff's α, Bradley–Terry
recovery and CI coverage on simulated raters, and the database analysis with attention-check exclusions."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from human_fixtures import SYSTEMS, make_study, rate_everything
from scipy import stats as sps
from sqlalchemy import select

from human_eval import analysis, assign, db
from human_eval.stats import (
    bonferroni,
    bradley_terry,
    krippendorff_alpha_interval,
    sign_test,
    wilcoxon_signed_rank,
)
from metrics.intervals import holm

# scores of one pair: 5 wins for A (three weak, two strong), 2 for B, 1 no preference
TABLE = [2, 1, 1, -1, 2, 0, 1, -2]


def test_wilcoxon_by_hand():
    w = wilcoxon_signed_rank(TABLE)
    # zero dropped → n = 7; |d| = 1 ×4 (ranks 1–4 → 2.5), 2 ×3 (ranks 5–7 → 6)
    assert w.n == 7
    assert w.w_plus == 3 * 2.5 + 2 * 6 == 19.5 and w.w_minus == 2.5 + 6 == 8.5 and w.statistic == 8.5
    # E = 7·8/4 = 14; Var = 7·8·15/24 − ((4³−4) + (3³−3))/48 = 35 − 1.75 = 33.25
    assert w.z == pytest.approx(5.5 / np.sqrt(33.25), rel=1e-12)
    assert w.p_normal == pytest.approx(2 * sps.norm.sf(5.5 / np.sqrt(33.25)), rel=1e-12)
    assert w.p_normal == pytest.approx(sps.wilcoxon(TABLE, zero_method="wilcox", correction=False, method="approx").pvalue)
    # exact: the share of the 2^7 sign patterns with |W+ − 14| ≥ 5.5, enumerated
    ranks = np.array([6, 2.5, 2.5, 2.5, 6, 2.5, 6])
    extreme = sum(abs(ranks[list(s)].sum() - 14) >= 5.5 for k in range(8) for s in itertools.combinations(range(7), k))
    assert extreme == 60 and w.p_exact == pytest.approx(60 / 128) and w.p == w.p_exact


def test_wilcoxon_edge_cases():
    assert wilcoxon_signed_rank([0, 0, 0]).p == 1.0 and wilcoxon_signed_rank([0, 0]).n == 0
    assert wilcoxon_signed_rank([2] * 10).p_exact == pytest.approx(2 / 2**10)  # all signs equal: the two extremes
    big = np.random.default_rng(0).choice([-2, -1, 0, 1, 2], size=400, p=[0.1, 0.2, 0.1, 0.3, 0.3])
    w = wilcoxon_signed_rank(big)
    assert w.p_exact is None and w.p == w.p_normal  # normal approximation above EXACT_MAX_N


def test_sign_test_and_corrections_by_hand():
    assert sign_test(5, 2) == pytest.approx(2 * (1 + 7 + 21) / 128)  # 2·P(X ≤ 2), X ~ Bin(7, ½)
    assert sign_test(3, 3) == 1.0 and sign_test(0, 0) == 1.0
    np.testing.assert_allclose(bonferroni([0.01, 0.04, 0.03]), [0.03, 0.12, 0.09])
    # Holm: sorted 0.01·3, 0.03·2, 0.04·1 → 0.03, 0.06, max(0.04, 0.06) = 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_krippendorff_alpha_by_hand():
    assert krippendorff_alpha_interval([[1, 1], [2, 2], [-1, -1]]) == 1.0
    # units (1,2), (2,1): D_o = (2 + 2)/4 = 1, D_e = 8/12 → α = 1 − 1.5 = −0.5
    assert krippendorff_alpha_interval([[1, 2], [2, 1]]) == pytest.approx(-0.5)
    assert np.isnan(krippendorff_alpha_interval([[1], [2]]))


def test_bradley_terry_exact_on_a_consistent_table():
    # strengths 4:2:1 with 700 games per pair give exactly these expected counts; the MLE is the truth
    p = np.array([4.0, 2.0, 1.0])
    wins = np.array([[0, 700 * 4 / 6, 700 * 4 / 5], [700 * 2 / 6, 0, 700 * 2 / 3], [700 / 5, 700 / 3, 0]])
    beta = bradley_terry(wins, prior=0.0)
    np.testing.assert_allclose(beta, np.log(p) - np.log(p).mean(), atol=1e-8)


def simulate(seed: int, beta: np.ndarray, n_raters: int = 40, per_rater: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pairs = list(itertools.combinations(range(len(beta)), 2))
    rows = []
    for r in range(n_raters):
        for k in range(per_rater):
            a, b = pairs[rng.integers(len(pairs))]
            if rng.random() < 0.1:
                score = 0
            else:
                win = rng.random() < 1 / (1 + np.exp(beta[b] - beta[a]))
                score = (1 if win else -1) * int(rng.integers(1, 3))
            rows.append({"rating_id": len(rows), "rater_id": r, "trial_id": r * 1000 + k, "kind": "pair",
                         "item_id": "x", "system_a": f"s{a}", "system_b": f"s{b}", "answer": score, "score": score,
                         "a_on_left": True, "seconds_spent": 5.0, "submitted_at": ""})
    return pd.DataFrame(rows)


def test_bradley_terry_recovers_simulated_strengths():
    beta = np.array([0.8, 0.2, -0.3, -0.7])
    names = [f"s{i}" for i in range(4)]
    covered = total = 0
    for seed in range(6):
        frame = simulate(seed, beta)
        raters = pd.DataFrame({"rater_id": range(40), "label": "", "prolific_pid": None, "completed_at": ""})
        a = analysis.analyze_frame(names, frame, raters, n_boot=150, seed=seed)
        st = a.strengths.set_index("system").loc[names]
        assert list(np.argsort(-st.log_strength.to_numpy())) == [0, 1, 2, 3], f"seed {seed}: order wrong"
        inside = (st.ci_low.to_numpy() <= beta) & (beta <= st.ci_high.to_numpy())
        covered += int(inside.sum())
        total += len(beta)
        assert (st.ci_low < st.log_strength).all() and (st.log_strength < st.ci_high).all()
    assert covered / total >= 0.8, f"95% CIs covered the truth {covered}/{total} times"


def honest_answer(Session_, ranking: list[str], cheat: bool = False):
    """A rater who prefers systems by ``ranking`` and passes gold trials unless ``cheat``."""

    def answer(view: assign.TrialView) -> int:
        with Session_() as s:
            a = s.get(db.Assignment, view.assignment_id)
            t = a.trial
            if t.kind == "attention":
                prefer_a = not cheat
            else:
                prefer_a = ranking.index(t.clip_a.system.name) < ranking.index(t.clip_b.system.name)
            return (2 if prefer_a else -2) * (1 if a.a_on_left else -1)

    return answer


def test_analysis_applies_exclusions_and_writes_outputs(tmp_path):
    url, c = make_study(tmp_path, ratings_per_pair=8, ratings_per_trial=2, raters=4, trials_per_rater=5,
                        attention_checks=1)
    Session_ = db.sessions(db.open_db(url))
    ranking = ["reference", SYSTEMS[1], SYSTEMS[0]]
    with Session_() as s:
        ids = [assign.rater_by_token(s, t).id for t in c.tokens]
    for rid in ids[:3]:
        rate_everything(Session_, rid, honest_answer(Session_, ranking))
    rate_everything(Session_, ids[3], honest_answer(Session_, ranking[::-1], cheat=True))  # fails its check

    a = analysis.analyze(url, n_boot=50)
    assert a.exclusions["excluded_raters"] == [ids[3]]
    pair = a.ratings[a.ratings.kind == "pair"]
    n_cheat = int((pair.rater_id == ids[3]).sum())
    assert n_cheat > 0 and a.exclusions["excluded_ratings"] == n_cheat
    assert a.exclusions["kept_ratings"] == len(pair) - n_cheat == 15
    wins = a.wins.set_index("system")
    # every kept rating is a win for the higher-ranked system: wins = its comparisons against lower ones
    kept = a.ratings[(a.ratings.kind == "pair") & (a.ratings.rater_id != ids[3])]
    for sys_name in ranking:
        below = ranking[ranking.index(sys_name) + 1:]
        involved = kept[((kept.system_a == sys_name) & kept.system_b.isin(below)) |
                        ((kept.system_b == sys_name) & kept.system_a.isin(below))]
        assert wins.loc[sys_name, "wins"] == len(involved)
    assert wins.ties.sum() == 0 and wins.wins.sum() == 15
    assert analysis.wins_by_system(url) == {k: int(v) for k, v in wins.wins.items()}
    assert analysis.wins_by_system(url, max_failures=1)[SYSTEMS[0]] > wins.loc[SYSTEMS[0], "wins"]  # cheater's votes back
    for row in a.pairs.itertuples():
        assert row.ties == 0 and min(row.wins_a, row.wins_b) == 0
        assert row.sign_p == pytest.approx(sign_test(row.wins_a, row.wins_b))
        assert row.wilcoxon_p_bonferroni == pytest.approx(min(1.0, 3 * row.wilcoxon_p))
    st = a.strengths.set_index("system").log_strength
    assert st["reference"] > st[SYSTEMS[1]] > st[SYSTEMS[0]]
    assert a.agreement["trials_rated_more_than_once"] > 0 and a.agreement["pairwise_direction_agreement"] == 1.0

    paths = analysis.write_outputs(a, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert "zero_method='wilcox'" in data["rules"] and data["exclusions"]["excluded_raters"] == [ids[3]]
    assert {w["system"]: w["wins"] for w in data["wins"]} == wins.wins.to_dict()
    assert pd.read_csv(paths["pairs"]).shape[0] == 3
    for png in ("wins_png", "bradley_terry_png"):
        assert paths[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Session_() as s:
        assert len(s.scalars(select(db.Rating)).all()) == len(a.ratings) == len(pair) + 4  # + 4 attention checks


def test_analysis_reports_rater_aware_tests_screening_playback_and_sequential_looks(tmp_path):
    from human_eval import planning, screening

    url, c = make_study(tmp_path, ratings_per_pair=6, raters=3, trials_per_rater=6, attention_checks=0,
                        headphone_check=True, playback_min_fraction=0.0)
    Session_ = db.sessions(db.open_db(url))
    with Session_() as s:
        ids = [assign.rater_by_token(s, t).id for t in c.tokens]
    for rid, passes in zip(ids, (True, False, True)):
        for i, order in enumerate(screening.trial_orders(3, rid)):
            right = screening.correct_answer(order)
            screening.answer(Session_, rid, i, right if passes or i == 0 else right % 3 + 1)
    ranking = ["reference", SYSTEMS[1], SYSTEMS[0]]
    first = assign.view_for(Session_, ids[0])
    assign.record_play(Session_, ids[0], first.assignment_id, "A", "ended", 1.0, 2)
    for rid in ids:
        rate_everything(Session_, rid, honest_answer(Session_, ranking))

    a = analysis.analyze(url, n_boot=100)
    assert a.exclusions["failed_headphone_check"] == [ids[1]] and a.exclusions["excluded_raters"] == [ids[1]]
    assert "headphone check" in a.exclusions["rule"]
    kept = analysis.analyze(url, n_boot=0, screening="report")
    assert kept.exclusions["excluded_raters"] == [] and kept.exclusions["failed_headphone_check"] == [ids[1]]
    r = a.raters.set_index("rater_id")
    assert list(r.headphone_passed) == [True, False, True] and list(r.headphone_correct) == [6, 1, 6]
    row = a.ratings[a.ratings.assignment_id == first.assignment_id].iloc[0]
    assert (row.heard_left, row.plays_left) == (1.0, 2) and np.isnan(row.heard_right)

    for p in a.pairs.itertuples():
        g = a.ratings[(a.ratings.kind == "pair") & (a.ratings.rater_id != ids[1]) & (a.ratings.system_a == p.system_a)
                      & (a.ratings.system_b == p.system_b)].sort_values("rating_id")
        # every kept rater prefers the higher-ranked system: every rater's sum has one sign, so of the 2^R sign
        # patterns only the observed one and its mirror reach |total| — whatever the pooled p says
        assert p.rater_p == pytest.approx(2 / 2 ** g.rater_id.nunique()) and p.n_raters == g.rater_id.nunique()
        assert p.win_rate in (0.0, 1.0) and p.win_rate_ci_low == p.win_rate_ci_high == p.win_rate
        assert p.rater_p_bonferroni == pytest.approx(min(1.0, 3 * p.rater_p))
        # the looks, recomputed here from the stated rule
        c_ = planning.boundaries(4, 0.05 / 3)
        sizes = [int(np.ceil(k * p.planned_n / 4)) for k in range(1, 5)]
        zs = [planning.p_to_z(wilcoxon_signed_rank(g.score.iloc[:n].to_numpy()).p) for n in sizes if n <= len(g)]
        assert p.looks_done == len(zs) and p.decided == any(z >= b for z, b in zip(zs, c_))
        assert 0 <= p.power_at_effect_collected <= p.power_at_effect_planned <= 1
    assert a.inference["primary_test"] == "wilcoxon" and a.inference["primary_column"] == "wilcoxon_p_bonferroni"
    assert "MusicLM paper" in a.inference["primary_description"]
    assert "O'Brien-Fleming" in a.inference["sequential"]["rule"]
    b = analysis.analyze(url, n_boot=0, primary="rater")
    assert b.inference["primary_column"] == "rater_p_bonferroni" and not b.pairs.decided.any()  # 2 raters: p >= 1/2
    data = json.loads(json.dumps(a.to_json(), default=str, allow_nan=False))  # standard JSON
    assert data["primary_test"] == "wilcoxon" and data["inference"]["sequential"]["looks"] == 4
    with pytest.raises(ValueError, match="primary must be one of wilcoxon, rater"):
        analysis.analyze(url, primary="bayes")
    Session_.kw["bind"].dispose()


def test_rate_analyze_writes_the_one_results_store(tmp_path):
    """`rate analyze --out` also writes results.json (kind rate-analyze) that read_store opens: the same
    wins as the analysis, the pairwise tests as pairwise.csv, standard JSON."""
    from dashboard_fixtures import make_study_db

    from metrics.store import read_store

    url = make_study_db(tmp_path / "study")
    a = analysis.analyze(url, n_boot=50)
    analysis.write_outputs(a, tmp_path / "out")
    store = read_store(tmp_path / "out")
    assert store.kind == "rate-analyze"
    for r in a.wins.itertuples():
        assert store.data["systems"][r.system]["metrics"]["wins"]["value"] == r.wins
    assert (tmp_path / "out" / "pairwise.csv").exists()
    text = (tmp_path / "out" / "results.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))

"""Estimator aspects of per-aspect caption adherence (metrics.adherence_estimators): tempo words and BPM numbers
against madmom's tempo, major/minor and named keys against the key finder. Parsing on MusicCaps-style text,
scores equal to mir_eval's key score and to the 4 % tempo rule computed by hand, the shuffled control at chance."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest

from metrics.adherence_estimators import (
    EstimatorAdherence,
    shuffled_estimator_control,
    stated_key,
    stated_tempo,
    tempo_class,
)
from metrics.control.tonal import key_label


@pytest.mark.parametrize("texts, want", [
    (["120 bpm"], (120.0, -1)), (["fast tempo"], (0.0, 2)), (["uptempo, 128 BPM"], (128.0, 2)),
    (["medium tempo", "slow"], (0.0, -1)),  # two classes: ambiguous, no class
    (["The song is not fast."], (0.0, -1)), (["moderate tempo"], (0.0, 1)), (["at 95 beats per minute"], (95.0, -1)),
])
def test_tempo_statements(texts, want):
    assert stated_tempo(texts) == want


@pytest.mark.parametrize("texts, want", [
    (["C minor"], (0, 1)), (["This track is in A major."], (9, 0)), (["Bb major"], (10, 0)), (["E flat minor"], (3, 1)),
    (["C# minor"], (1, 1)), (["a minor key"], (-1, 1)), (["in minor"], (-1, 1)), (["major key"], (-1, 0)),
    (["a major role for the piano"], (-1, -1)), (["not in a minor key"], (-1, -1)),
])
def test_key_statements(texts, want):
    assert stated_key(texts) == want


def test_scores_equal_mir_eval_and_the_four_percent_rule():
    key = EstimatorAdherence("key-ks")
    rng = np.random.default_rng(0)
    for _ in range(60):
        ref, est = (int(rng.integers(12)), int(rng.integers(2))), (int(rng.integers(12)), int(rng.integers(2)))
        want = mir_eval.key.weighted_score(key_label(*ref), key_label(*est))
        assert key.score(np.array(ref, float), np.array([est], float)) == pytest.approx(want)
        assert key.score(np.array([-1, ref[1]], float), np.array([est], float)) == float(est[1] == ref[1])
    assert key.score(np.array([-1, -1.0]), np.array([[0, 0.0]])) is None
    tempo = EstimatorAdherence("madmom-tempo")
    assert tempo.score(np.array([120.0, -1]), np.array([[124.8]])) == 1.0  # 4.0 % off
    assert tempo.score(np.array([120.0, -1]), np.array([[125.0]])) == 0.0  # 4.2 % off
    assert tempo.score(np.array([120.0, 0]), np.array([[120.0]])) == 1.0  # a number wins over a word
    assert [tempo.score(np.array([0.0, c]), np.array([[bpm]])) for c, bpm in ((0, 89.9), (1, 90.0), (1, 130.0), (2, 130.1))] \
        == [1.0, 1.0, 1.0, 1.0]
    assert tempo.score(np.array([0.0, 2]), np.array([[0.0]])) == 0.0 and tempo_class(0.0) == -1  # no tempo found


def test_metric_mean_skips_and_shuffled_control():
    rng = np.random.default_rng(1)
    texts = {f"c{i:02d}": [f"{k} tempo"] for i, k in enumerate(rng.choice(["slow", "medium", "fast", "steady"], 40))}
    bpm = {"slow": 70.0, "medium": 110.0, "fast": 150.0}
    perfect = {i: np.array([[bpm.get(t[0].split()[0], 100.0)]]) for i, t in texts.items()}
    m = EstimatorAdherence("madmom-tempo", n_boot=200)
    statements = m.encode(texts)
    assert set(statements) == {i for i, t in texts.items() if not t[0].startswith("steady")}  # no statement: left out
    m.update("reference", statements)
    m.update("generated", perfect)
    r = m.compute()
    assert r.value == 1.0 and r.ci95 == (1.0, 1.0) and r.extra["n_pairs"] == len(statements)
    shares = np.bincount([int(v[1]) for v in statements.values()], minlength=3) / len(statements)
    assert r.extra["shuffled_control"] == pytest.approx(float((shares**2).sum()), abs=0.06)  # chance: P(same class)
    assert shuffled_estimator_control(m, seed=0) == r.extra["shuffled_control"]


def test_compare_judges_the_reference_with_the_key_finder_as_an_independent_run_does(tmp_path):
    """End to end on 10 corpus clips (their captions name the key): compare --adherence key-ks scores the reference
    audio (the ceiling row) exactly as the key finder run clip by clip against labels.csv with mir_eval's score.
    (madmom-tempo takes the same route; its tracker costs ~3 s a clip here, so it is left to the unit tests.)"""
    import pandas as pd

    from benchmarks.harness import compare
    from metrics.audio import load_audio
    from metrics.cache import EmbeddingCache
    from metrics.control.tonal import KeyEstimator
    from musiclm_ref.data.synth import generate_corpus

    ref = tmp_path / "ref"
    generate_corpus(ref, n=10, seconds=4.0, seed=3, workers=1)
    data = compare({"same": ref}, ref, ref / "captions.csv", tmp_path / "out", embedders=[], classifier=None,
                   joint=None, adherence=("key-ks",), n_boot=50, cache=EmbeddingCache(tmp_path / "cache"))
    truth = data["systems"]["ground truth"]["metrics"]["adherence_key_ks"]
    labels = pd.read_csv(ref / "labels.csv", dtype=str, keep_default_na=False).set_index("ytid")
    estimator, keys = KeyEstimator(), []
    for cid, row in labels.iterrows():
        est = estimator.embed(load_audio(ref / f"{cid}.wav", sr=estimator.sample_rate).wave)[0]
        keys.append(mir_eval.key.weighted_score(f"{row.key} {row['mode']}", key_label(int(est[0]), int(est[1]))))
    assert truth["value"] == pytest.approx(np.mean(keys), abs=1e-9) and truth["n_pairs"] == 10
    assert data["systems"]["same"]["metrics"]["adherence_key_ks"]["ci95"] and truth["shuffled_control"] is not None

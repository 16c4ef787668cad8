"""Caption-word/tag AUC (benchmarks.musicnn_check.caption_tag_auc): the demo's text-adherence column judged by
a tagger that did not condition the generator."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.musicnn_check import WORDS, auc, caption_tag_auc

TAGS = sorted({t[0] for t in WORDS.values() if t[0]})


def fixture(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    words = [w for w, t in WORDS.items() if t[0]]
    attrs = {f"c{i}": {w for w in words if rng.random() < 0.4} for i in range(n)}
    noise = {i: {t: float(rng.random()) for t in TAGS} for i in attrs}
    perfect = {i: {WORDS[w][0]: float(w in attrs[i]) for w in words} for i in attrs}
    return attrs, noise, perfect


def test_perfect_and_inverted_taggers():
    attrs, _, perfect = fixture()
    r = caption_tag_auc(attrs, perfect, n_boot=200)
    assert r["mean_auc"] == 1.0 and r["ci95"] == [1.0, 1.0] and r["n_clips"] == 40
    inverted = {i: {t: 1 - v for t, v in p.items()} for i, p in perfect.items()}
    assert caption_tag_auc(attrs, inverted, n_boot=0)["mean_auc"] == 0.0


def test_words_match_the_mann_whitney_auc():
    attrs, noise, _ = fixture(seed=3)
    r = caption_tag_auc(attrs, noise, n_boot=0)
    ids = sorted(attrs)
    for word, value in r["words"].items():
        pos = np.array([word in attrs[i] for i in ids])
        assert value == pytest.approx(auc(np.array([noise[i][WORDS[word][0]] for i in ids]), pos), abs=1e-4)
    assert r["mean_auc"] == pytest.approx(np.mean(list(r["words"].values())), abs=1e-4)


def test_paired_difference_against_a_baseline():
    attrs, noise, perfect = fixture(seed=5)
    same = caption_tag_auc(attrs, noise, n_boot=300, baseline=noise)["diff_vs_baseline"]
    assert same == {"mean": 0.0, "ci95": [0.0, 0.0]}
    better = caption_tag_auc(attrs, perfect, n_boot=300, baseline=noise)["diff_vs_baseline"]
    assert better["ci95"][0] > 0.2
    chance = caption_tag_auc(attrs, noise, n_boot=300)
    assert chance["ci95"][0] < 0.5 < chance["ci95"][1]  # noise scores: chance lies inside the interval
    with pytest.raises(ValueError, match="at least 2 clips"):
        caption_tag_auc({"a": set()}, {"a": {}}, n_boot=0)

"""benchmarks.melody_conditioning's scoring and statistics on synthetic clips (no model sampling), the
held-out claim about its melodies, and the figures that read its artifact and the ablation's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.melody_conditioning import (
    MELODY_SEED,
    Scorer,
    chroma_similarity,
    paired_summary,
    render_melodies,
    summarize,
    training_spec_seeds,
)


@pytest.fixture(scope="module")
def melodies():
    return render_melodies(4, 4.0)


def test_the_melody_itself_beats_noise_on_every_metric(melodies):
    """A "generated" clip that IS its melody scores the maximum and gains over a noise clip on every melody."""
    rng = np.random.default_rng(0)
    scorer = Scorer(crepe=False)
    same = [scorer.score(m, m) for m in melodies]
    noise = [scorer.score(m, (0.1 * rng.standard_normal(len(m))).astype(np.float32)) for m in melodies]
    for s in same:
        assert s["chroma_cosine"] == pytest.approx(1.0)
        assert s["pitch_class_accuracy"] == pytest.approx(1.0)
        assert s["chroma_correlation"] == pytest.approx(1.0)
    out = summarize(same, noise, n_boot=500, seed=0)
    assert set(out) == {"chroma_cosine", "pitch_class_accuracy", "chroma_correlation"}  # no CREPE asked for
    for name, r in out.items():
        lo, hi = r["gain"]["ci95"]
        assert r["n"] == 4 and r["positive"] == 4 and r["share_positive"] == 1.0, name
        assert 0 < lo <= r["gain"]["mean"] <= hi, name
        assert r["gain"]["mean"] == pytest.approx(r["with"] - r["without"], abs=2e-4)


def test_chroma_similarity_folds_octaves_and_tells_pitch_classes_apart():
    """The test's statistic: A4 against A5 (an octave) correlates ≈ 1, against D♯5 (a tritone) it does not."""
    t = np.arange(4 * 24000) / 24000

    def tone(hz: float) -> np.ndarray:
        return np.sin(2 * np.pi * hz * t).astype(np.float32)

    assert chroma_similarity(tone(440.0), tone(880.0)) > 0.95
    assert chroma_similarity(tone(440.0), tone(440.0 * 2 ** (6 / 12))) < 0.2


def test_paired_summary_statistics():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.1, 40)
    b = a - rng.normal(0.05, 0.05, 40)
    r = paired_summary(list(a) + [None], list(b) + [0.3], n_boot=1000, seed=0)
    assert r["n"] == 40 and r["skipped"] == 1  # a clip without a score in one arm leaves the pairs
    lo, hi = r["gain"]["ci95"]
    assert lo <= r["gain"]["mean"] <= hi
    assert r["gain"]["mean"] == pytest.approx(float(np.mean(a - b)), abs=1e-4)
    assert r == paired_summary(list(a) + [None], list(b) + [0.3], n_boot=1000, seed=0)  # seeded
    flipped = paired_summary(list(b), list(a), n_boot=1000, seed=0)
    assert flipped["gain"]["mean"] == pytest.approx(-r["gain"]["mean"], abs=1e-4)
    assert flipped["positive"] == 40 - r["positive"] - int(np.sum(a == b))
    same = paired_summary(list(a), list(a))
    assert same["gain"] == {"mean": 0.0, "ci95": [0.0, 0.0]} and same["positive"] == 0
    assert paired_summary([None], [1.0]) == {"n": 0, "skipped": 1}


def test_the_melody_seed_is_no_training_seed():
    seen = training_spec_seeds()
    assert {0, 7, 7919} <= set(seen)  # corpus seeds of the stages / MuLan / classifier, the melody model's spec seed
    assert MELODY_SEED not in seen


def test_melody_figure_renders_the_artifact(tmp_path):
    from benchmarks.figures_hierarchy import MELODY, MELODY_BEFORE, melody_conditioning

    r = paired_summary([0.6, 0.7, 0.8], [0.5, 0.6, 0.9], n_boot=200)
    doc = {"melodies": {"n": 3, "seconds": 8.0, "spec_seed": 4242, "timbre": "flute"}, "caption": "a solo piano melody",
           "checkpoint": "shipped tiny set", "coarse_stage": {"chroma": True, "steps": 1200}, "command": "python -m x",
           "git_commit": "0123456789abcdef", "wall_seconds": 12.3, "threads": 1,
           "metrics": {"chroma_cosine": r, "melody_rca": {"n": 0, "skipped": 3}},
           "crepe": {"cpu_seconds_per_clip_median": 0.21, "skipped": None}}
    (tmp_path / MELODY).parent.mkdir(parents=True)
    (tmp_path / MELODY).write_text(json.dumps(doc))
    text = melody_conditioning(tmp_path)
    assert "coarse stage chroma on, 1,200 steps" in text and "| 2 of 3 |" in text
    assert "CREPE" not in text.split("|---|")[1].split("\n\n")[0]  # a metric without pairs has no row
    assert "0.21 CPU s per clip (median)" in text
    assert "3 melodies is fewer than the 50" in text
    assert "Before" not in text
    (tmp_path / MELODY_BEFORE).write_text(json.dumps(doc))  # the same run as the baseline: no second line
    assert melody_conditioning(tmp_path) == text
    before = {**doc, "coarse_stage": {"chroma": False, "steps": 3500}}
    (tmp_path / MELODY_BEFORE).write_text(json.dumps(before))
    line = melody_conditioning(tmp_path).split("Before (")[1]
    assert line.startswith("shipped tiny set, coarse stage chroma off, 3,500 steps, 3 melodies")
    assert "chroma cosine 0.033 [−0.100, 0.100] (2 of 3 > 0)" in line


def _store(pairwise: list[dict]) -> dict:
    entry = {"value": 0.7, "ci95": [0.6, 0.8], "shuffled_control": 0.5, "n_clips": 30, "concepts": {}}
    systems = {s: {"n_clips": 30, "metrics": {"mcc": {"value": 0.2, "ci95": [0.1, 0.3]},
                                              "kld_musiclm": {"value": 1.5, "ci95": [1.2, 1.8], "number": "kld"},
                                              "fad_mel": {"value": 200.0, "ci95": [150.0, 250.0]},
                                              "adherence_instrument_mtt": entry, "adherence_tempo_mtt": entry}}
               for s in ("musiclm-ref", "musiclm-ref-no-semantic")}
    return {"systems": systems, "metadata": {"git_commit": "abc", "config": {"kld_convention": "musiclm"},
                                             "pairwise": pairwise}}


def test_ablation_summary_keeps_the_paired_adherence_difference_and_the_table_shows_it(tmp_path):
    from benchmarks.ablation import summarize as ablation_summary
    from benchmarks.figures_hierarchy import ABLATION, ablation_table

    pairs = [{"metric": m, "system_a": "musiclm-ref", "system_b": "musiclm-ref-no-semantic", "diff": d,
              "ci95": [d - 0.05, d + 0.05], "p_value": 0.01, "p_holm": 0.02}
             for m, d in (("mcc", 0.08), ("adherence_instrument_mtt", 0.04), ("adherence_tempo_mtt", -0.03))]
    work = tmp_path / "work"
    (work / "results").mkdir(parents=True)
    (work / "held_out").mkdir()
    (work / "results" / "results.json").write_text(json.dumps(_store(pairs)))
    (work / "held_out" / "corpus.json").write_text(json.dumps({"ids": {"n": 30}, "seconds": 10.0, "data_sha256": "x"}))
    doc = ablation_summary(work)
    assert {p["metric"] for p in doc["pairwise"]} == {"mcc", "adherence_instrument_mtt", "adherence_tempo_mtt"}
    row = doc["systems"]["musiclm-ref"]
    assert row["adherence_tempo_mtt"] == {"value": 0.7, "ci95": [0.6, 0.8], "shuffled_control": 0.5, "n_clips": 30}
    (tmp_path / ABLATION).parent.mkdir(parents=True)
    (tmp_path / ABLATION).write_text(json.dumps(doc))
    text = ablation_table(tmp_path)
    assert "| instrument ↑ | tempo ↑ |" in text and "| shuffled captions (chance) | — | — | — | 0.50 | 0.50 |" in text
    assert "instrument 0.040 [−0.010, 0.090] (Holm p = 0.020)" in text
    assert "tempo −0.030 [−0.080, 0.020]" in text and "mcc 0.080" in text
    # the same pair stored the other way round reads as musiclm-ref − musiclm-ref-no-semantic
    doc["pairwise"] = [{**p, "system_a": p["system_b"], "system_b": p["system_a"], "diff": -p["diff"],
                        "ci95": [-p["ci95"][1], -p["ci95"][0]]} for p in doc["pairwise"]]
    (tmp_path / ABLATION).write_text(json.dumps(doc))
    assert ablation_table(tmp_path) == text
    doc["pairwise"] = [p for p in doc["pairwise"] if not p["metric"].startswith("adherence_")]
    (tmp_path / ABLATION).write_text(json.dumps(doc))
    assert "holds no clip-paired adherence difference" in ablation_table(tmp_path)

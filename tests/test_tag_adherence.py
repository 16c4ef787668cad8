"""Per-aspect caption adherence (metrics.adherence): the demo's text-adherence judge, now a Metric.

Properties kept from the demo's caption-word/tag AUC: a perfect tagger scores 1 with a zero-width interval, an
inverted one 0, each concept's AUC is the Mann–Whitney AUC (checked against scikit-learn's, an independent
formulation), a system against itself differs by exactly 0 and a perfect tagger beats noise in the paired test;
noise lies at chance. New: the resampled (weighted) AUC equals the AUC of the repeated clips, shuffled captions
give chance, the lexicon reads MusicCaps aspects with their negations, and compare writes the store rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from metrics.adherence import (
    AspectAdherence,
    adherence_metrics,
    caption_texts,
    mann_whitney_auc,
    shuffled_control,
    weighted_auc,
)
from metrics.adherence_lexicon import ASPECTS, CONCEPTS, TAGGERS, caption_vector, concepts_for
from metrics.metric import MetricError
from metrics.run_statistics import SourceResult, paired_comparisons

MUSICCAPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "musiccaps-public.csv"
TAGGER = "musicnn-mtt"
LABELS = sorted({c.mtt for c in CONCEPTS if c.mtt})
INSTRUMENTS = concepts_for("instrument", TAGGER)


def fixture(n: int = 40, seed: int = 0):
    """Captions stating random instruments, and three taggers' logits: noise, perfect, inverted."""
    rng = np.random.default_rng(seed)
    stated = {f"c{i:02d}": rng.random(len(INSTRUMENTS)) < 0.4 for i in range(n)}
    captions = {i: [c.name for c, s in zip(INSTRUMENTS, v) if s] for i, v in stated.items()}
    col = {c.name: LABELS.index(c.mtt) for c in INSTRUMENTS}

    def logits(score) -> dict[str, np.ndarray]:
        out = {}
        for i, v in stated.items():
            z = rng.normal(size=(2, len(LABELS)))
            for c, s in zip(INSTRUMENTS, v):
                z[:, col[c.name]] = score(s, z[:, col[c.name]])
            out[i] = z
        return out

    return captions, logits(lambda s, z: z), logits(lambda s, z: np.full(2, 4.0 if s else -4.0)), \
        logits(lambda s, z: np.full(2, -4.0 if s else 4.0))


def metric(captions, logits, n_boot: int = 0, seed: int = 0) -> AspectAdherence:
    m = AspectAdherence("instrument", TAGGER, LABELS, n_boot=n_boot, seed=seed)
    m.update("reference", m.encode(caption_texts(None, captions)))
    m.update("generated", logits)
    return m


def test_perfect_and_inverted_taggers():
    captions, _, perfect, inverted = fixture()
    r = metric(captions, perfect, n_boot=200).compute()
    assert r.value == 1.0 and r.ci95 == (1.0, 1.0) and r.extra["n_clips"] == 40 and r.higher_is_better
    assert metric(captions, inverted).compute().value == 0.0
    assert set(r.per_item.values()) == {1.0}  # every asked-for clip beats every other clip


def test_concepts_match_scikit_learn_and_the_pairwise_definition():
    captions, noise, _, _ = fixture(seed=3)
    m = metric(captions, noise)
    r = m.compute()
    ids, stated, scores = m.matrices()
    rated = []
    for j, c in enumerate(m.concepts):
        got = r.extra["concepts"][c.name]["auc"]
        if stated[:, j].all() or not stated[:, j].any():
            assert got is None
            continue
        assert got == pytest.approx(roc_auc_score(stated[:, j], scores[:, j]), abs=1e-4)
        assert got == pytest.approx(mann_whitney_auc(scores[:, j], stated[:, j]), abs=1e-4)
        rated.append(got)
    assert r.value == pytest.approx(np.mean(rated), abs=1e-4) and len(rated) >= 4


def test_resample_weights_equal_the_repeated_clips():
    rng = np.random.default_rng(1)
    scores, pos = rng.integers(0, 6, 30).astype(float), rng.random(30) < 0.3  # ties on purpose
    w = rng.integers(0, 3, (5, 30))
    for row, value in zip(w, weighted_auc(scores, pos, w)):
        assert value == pytest.approx(mann_whitney_auc(np.repeat(scores, row), np.repeat(pos, row)), abs=1e-12)
    assert np.isnan(weighted_auc(scores, pos, (~pos)[None] * 1))[0]  # no positive drawn: no AUC
    captions, noise, _, _ = fixture(seed=4)
    m = metric(captions, noise)
    ids = m.ids("generated")
    draw = [ids[k] for k in rng.integers(0, len(ids), len(ids))]
    sub = metric({f"d{k}": captions[i] for k, i in enumerate(draw)}, {f"d{k}": noise[i] for k, i in enumerate(draw)})
    assert m.value_on(draw, draw) == pytest.approx(sub.compute().value, abs=1e-12)


def test_paired_difference_chance_and_shuffled_control():
    captions, noise, perfect, _ = fixture(n=60, seed=5)
    src = {name: SourceResult(name, None, {}) for name in ("noise", "perfect", "noise again")}
    for name, logits in (("noise", noise), ("perfect", perfect), ("noise again", noise)):
        src[name].states["a"] = metric(captions, logits)
    rows = {(r["system_a"], r["system_b"]): r for r in paired_comparisons(src, n_boot=300, seed=0)}
    assert rows[("noise", "noise again")]["diff"] == 0.0 and rows[("noise", "noise again")]["ci95"] == [0.0, 0.0]
    assert rows[("noise", "perfect")]["ci95"][1] < -0.2 and rows[("noise", "perfect")]["p_holm"] < 0.05
    chance = metric(captions, noise, n_boot=300).compute()
    assert chance.ci95[0] < 0.5 < chance.ci95[1]  # noise scores: chance lies inside the interval
    perfect_m = metric(captions, perfect)
    assert perfect_m.compute().value == 1.0
    assert abs(shuffled_control(perfect_m, seed=0) - 0.5) < 0.08  # a perfect tagger against others' captions
    assert shuffled_control(perfect_m, seed=0) == shuffled_control(perfect_m, seed=0)  # seeded


def test_errors_name_the_problem():
    with pytest.raises(MetricError, match="no clip has both"):
        AspectAdherence("instrument", TAGGER, LABELS).compute()
    with pytest.raises(MetricError, match="not among the model's labels"):
        AspectAdherence("instrument", TAGGER, ["guitar"])
    with pytest.raises(MetricError, match="unknown tagger"):
        adherence_metrics("vggish", LABELS)
    with pytest.raises(ValueError, match="unknown aspect"):
        concepts_for("harmony", TAGGER)
    m = metric({"a": ["piano"], "b": ["piano"]}, {i: np.zeros((1, len(LABELS))) for i in "ab"})
    with pytest.raises(MetricError, match="no concept of the aspect has both"):
        m.compute()


def test_lexicon_negation_and_drum_kits():
    by = {c.name: c for c in CONCEPTS}

    def says(texts):
        return {c.name for c, v in zip(CONCEPTS, caption_vector(texts, CONCEPTS)) if v}

    assert "drums" not in says(["There are no drums."]) and "drums" in says(["A rock drum kit keeps a steady backbeat."])
    assert "rock" not in says(["rock drums"]) and "electronic" not in says(["electronic drums"])
    assert {"rock", "drums"} <= says(["rock", "rock drums"])
    assert says(["no voice"]) == {"instrumental"} and "vocals" in says(["soft female vocal"])
    assert "vocals" not in says(["The song has no vocals, only a piano"]) and "piano" in says(["no vocals, only a piano"])
    assert "male vocals" not in says(["female voice"]) and "fast" in says(["uptempo"])
    assert by["hip hop"].tag("musicnn-msd") == "Hip-Hop" and by["piano"].tag("musicnn-msd") is None
    assert ASPECTS == ("instrument", "genre", "mood", "vocals", "tempo")


def test_every_lexicon_tag_is_a_label_of_the_real_tagger():
    from metrics.embedders.musicnn import load_musicnn

    for tagger in TAGGERS:
        labels = load_musicnn(tagger).labels
        assert {c.tag(tagger) for c in CONCEPTS if c.tag(tagger)} <= set(labels)
        assert set(adherence_metrics(tagger, labels)) == {f"adherence_{a}_{tagger[-3:]}" for a in ASPECTS
                                                           if concepts_for(a, tagger)}


@pytest.mark.skipif(not MUSICCAPS.is_file(), reason="the MusicCaps CSV is not in ../shared/data")
def test_musiccaps_aspect_lists_parse_and_state_concepts():
    from metrics.musiccaps import aspects_for, captions_for

    aspects = aspects_for(MUSICCAPS)
    assert len(aspects) == 5521 and all(isinstance(v, list) for v in aspects.values())
    first = aspects["-0Gj8-vB1q4"]  # ['low quality', 'sustained strings melody', 'soft female vocal', 'mellow piano melody', …]
    assert first[:2] == ["low quality", "sustained strings melody"]
    texts = caption_texts(captions_for(MUSICCAPS, ["-0Gj8-vB1q4", "-0SdAVK79lg"]), aspects)
    said = {i: {c.name for c, v in zip(CONCEPTS, caption_vector(texts[i], CONCEPTS)) if v}
            for i in ("-0Gj8-vB1q4", "-0SdAVK79lg")}
    assert {"strings", "piano", "female vocals", "vocals", "mellow", "sad", "soft"} <= said["-0Gj8-vB1q4"]
    # 'no voice' and 'instrumental': not a vocal clip; 'slow tempo', 'guitar song', 'country feel'
    assert {"instrumental", "slow", "guitar", "country"} <= said["-0SdAVK79lg"]
    assert "vocals" not in said["-0SdAVK79lg"]


def test_compare_writes_adherence_rows_for_systems_and_the_reference(tmp_path):
    """End to end with the real musicnn-mtt on 12 short corpus clips: the reference audio (ceiling) as a row,
    a system whose clips are other captions' audio lower, paired tests in the store, the Table-1 columns."""
    import shutil

    from benchmarks.demo import adherence_lines
    from benchmarks.harness import compare
    from benchmarks.report import table_frame
    from metrics.cache import EmbeddingCache
    from musiclm_ref.data.synth import generate_corpus

    ref = tmp_path / "ref"
    generate_corpus(ref, n=12, seconds=3.5, seed=3, workers=1)
    wavs = sorted(ref.glob("*.wav"))
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for a, b in zip(wavs, wavs[5:] + wavs[:5]):  # each caption gets another clip's audio
        shutil.copy(b, shuffled / a.name)
    cache = EmbeddingCache(tmp_path / "cache")
    data = compare({"shuffled": shuffled}, ref, ref / "captions.csv", tmp_path / "out", embedders=[], classifier=None,
                   joint=None, adherence=("musicnn-mtt",), n_boot=50, cache=cache)
    truth, other = data["systems"]["ground truth"]["metrics"], data["systems"]["shuffled"]["metrics"]
    assert set(truth) == set(other) == {f"adherence_{a}_mtt" for a in ASPECTS}
    assert truth["adherence_instrument_mtt"]["value"] > other["adherence_instrument_mtt"]["value"]
    assert truth["adherence_tempo_mtt"]["higher_is_better"] is True and truth["adherence_tempo_mtt"]["ci95"]
    assert "instrument adherence (mtt) ↑" in table_frame(data).columns
    lines = adherence_lines(data)  # what make run prints: every aspect, every row, with intervals and chance
    assert len(lines) == 1 + len(ASPECTS) and lines[0].startswith("per-aspect caption adherence")
    for aspect, line in zip(ASPECTS, lines[1:]):
        assert line.startswith(f"  {aspect} adherence: shuffled ") and "; ground truth " in line and "; chance 0." in line
        assert line.count("[") == 2  # both rows with their interval
    assert cache.misses == 12  # the tagger ran once per file: the shuffled copies are the same files (cache hits)
    from metrics.errors import InputError

    with pytest.raises(InputError, match="--adherence: unknown judge"):
        compare({"x": shuffled}, ref, ref / "captions.csv", tmp_path / "o2", adherence=("vggish",))


def test_the_kld_tagger_serves_adherence_without_a_second_model():
    """The demo's judge reads the logits compare already extracts for KLD (one model key, so one pass and one
    cache entry per clip); a tagger that is no classifier gets its own key."""
    from metrics.evaluate import Plan, _specs

    keys = set(_specs(Plan(embedders=[], classifier="leaf-corpus", extra_classifiers=("musicnn-mtt",),
                           adherence=("musicnn-mtt",)), "cpu"))
    assert keys == {"classifier", "classifier:musicnn-mtt"}
    assert set(_specs(Plan(embedders=[], adherence=("musicnn-msd",)), "cpu")) == {"adherence:musicnn-msd"}
    # an estimator judge runs under the control metrics' key: with --controls it is extracted once for both
    assert set(_specs(Plan(embedders=[], adherence=("key-madmom",), controls=("key_accuracy",)), "cpu")) == {"control:key-madmom"}


def test_clauses_do_not_join_into_a_drum_kit():
    """The aspects 'electronic' and 'drums' state the genre: no pattern reads across two aspects."""
    vec = dict(zip([c.name for c in CONCEPTS], caption_vector(["electronic", "drums"], CONCEPTS)))
    assert vec["electronic"] == 1.0 and vec["drums"] == 1.0

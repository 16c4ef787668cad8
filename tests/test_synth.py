"""The procedural corpus: determinism, MusicCaps columns, truthful captions, styles and timbres."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from benchmarks.cli import main
from metrics.audio import load_audio
from metrics.musiccaps import COLUMNS, load_captions
from musiclm_ref.data.synth import (
    STYLES,
    TAG_VOCAB,
    TIMBRES,
    caption_for,
    generate_corpus,
    load_labels,
    note,
    render,
    sample_spec,
    tags_to_multihot,
    with_timbre,
)


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.suffix in (".wav", ".csv")}


def test_same_seed_byte_identical_and_clip_independent_of_n(tmp_path):
    a = generate_corpus(tmp_path / "a", n=5, seconds=2.0, seed=3)
    b = generate_corpus(tmp_path / "b", n=5, seconds=2.0, seed=3)
    generate_corpus(tmp_path / "c", n=3, seconds=2.0, seed=3)
    generate_corpus(tmp_path / "d", n=3, seconds=2.0, seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and a.data_sha256 == b.data_sha256
    for i in range(3):
        name = f"syn{i:05d}.wav"
        assert digest(tmp_path / "a")[name] == digest(tmp_path / "c")[name]
        assert digest(tmp_path / "a")[name] != digest(tmp_path / "d")[name]


def test_workers_do_not_change_bytes(tmp_path):
    generate_corpus(tmp_path / "one", n=4, seconds=1.0, seed=9, workers=1)
    generate_corpus(tmp_path / "two", n=4, seconds=1.0, seed=9, workers=2)
    assert digest(tmp_path / "one") == digest(tmp_path / "two")


def test_columns_captions_and_labels(small_corpus):
    raw = pd.read_csv(small_corpus / "captions.csv")
    assert list(raw.columns) == COLUMNS
    caps = load_captions(small_corpus / "captions.csv")
    labels = load_labels(small_corpus)
    assert list(caps.index) == list(labels.index) == [f"syn{i:05d}" for i in range(24)]
    assert set(labels["split"]) == {"train", "eval"}
    assert (caps["is_audioset_eval"] == (labels["split"] == "eval")).all()
    for ytid, row in caps.iterrows():
        n_sentences = row["caption"].count(". ") + 1
        assert 2 <= n_sentences <= 4, row["caption"]
        lab = labels.loc[ytid]
        assert set(lab["tags"]) <= set(TAG_VOCAB)
        for inst in lab["instruments"]:
            if inst != "bass":
                assert inst in row["caption"], (inst, row["caption"])
        assert lab["style"] in row["caption"] or lab["mood"] in row["caption"]
        clip = load_audio(small_corpus / f"{ytid}.wav")
        assert clip.sr == 24000 and len(clip.wave) == 4 * 24000


def test_styles_and_timbres_render(rng):
    assert len(STYLES) >= 6 and len(TIMBRES) >= 8
    for t in TIMBRES:
        x = note(t, 220.0, 0.3, 16000, rng)
        assert np.isfinite(x).all() and np.abs(x).max() > 0.05, t
    for style in STYLES:
        w = render(sample_spec(0, 1, style), 2.0, 16000)
        assert w.dtype == np.float32 and len(w) == 32000
        assert np.isfinite(w).all() and 0.3 <= np.abs(w).max() <= 0.9
    with pytest.raises(ValueError, match="unknown style 'polka'"):
        sample_spec(0, 0, "polka")


def _pitch_track(wave, sr, hop=0.05):
    """Dominant frequency per frame (the melody is the loudest voice in these specs)."""
    n = int(hop * sr)
    return np.array([np.argmax(np.abs(np.fft.rfft(wave[i : i + 4 * n] * np.hanning(4 * n)))) for i in range(0, len(wave) - 4 * n, n)])


def test_with_timbre_keeps_melody_changes_timbre():
    base = sample_spec(5, 2, "lullaby")
    other = with_timbre(base, "piano" if base.melody_instrument != "piano" else "flute")
    assert other.melody == base.melody and other.melody_id == base.melody_id
    assert other.melody_instrument != base.melody_instrument
    a, b = render(base, 4.0, 16000), render(other, 4.0, 16000)
    assert not np.allclose(a, b)
    spec_a = np.abs(np.fft.rfft(a))
    spec_b = np.abs(np.fft.rfft(b))
    assert np.corrcoef(np.log1p(spec_a), np.log1p(spec_b))[0, 1] < 0.99  # a different timbre
    with pytest.raises(ValueError, match="unknown timbre 'kazoo'"):
        with_timbre(base, "kazoo")


def test_caption_is_seeded():
    spec = sample_spec(1, 1)
    assert caption_for(spec, np.random.default_rng(0)) == caption_for(spec, np.random.default_rng(0))


def test_multihot():
    v = tags_to_multihot(["piano", "waltz"])
    assert v.sum() == 2 and v[TAG_VOCAB.index("piano")] == 1
    with pytest.raises(ValueError, match="unknown tag"):
        tags_to_multihot(["banjo"])


def test_synth_cli(tmp_path):
    res = CliRunner().invoke(main, ["synth", "--out", str(tmp_path / "c"), "--n", "3", "--seconds", "1", "--seed", "2", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "corpus: 3 clips × 1 s at 24000 Hz (seed 2)" in res.output
    assert len(list((tmp_path / "c").glob("*.wav"))) == 3
    bad = CliRunner().invoke(main, ["synth", "--out", str(tmp_path / "d"), "--n", "2", "--styles", "polka"])
    assert bad.exit_code != 0 and "unknown style 'polka'" in bad.output

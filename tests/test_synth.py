"""The procedural corpus: determinism, MusicCaps columns, truthful captions, styles and timbres."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from benchmarks.cli import main
from metrics.audio import load_audio
from metrics.musiccaps import COLUMNS, load_captions
from musiclm_ref.data.instruments import TIMBRES, note
from musiclm_ref.data.render import render
from musiclm_ref.data.specs import (
    AUDIOSET_MIDS,
    MAJOR,
    MINOR,
    STYLES,
    TAG_VOCAB,
    _melody,
    audioset_labels,
    caption_for,
    sample_spec,
    tags_to_multihot,
    with_timbre,
)
from musiclm_ref.data.splits import clip_id
from musiclm_ref.data.synth import generate_corpus, load_labels


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.suffix in (".wav", ".csv")}


def test_same_seed_byte_identical_and_clip_independent_of_n(tmp_path):
    a = generate_corpus(tmp_path / "a", n=5, seconds=2.0, seed=3)
    b = generate_corpus(tmp_path / "b", n=5, seconds=2.0, seed=3)
    generate_corpus(tmp_path / "c", n=3, seconds=2.0, seed=3)
    generate_corpus(tmp_path / "d", n=3, seconds=2.0, seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and a.data_sha256 == b.data_sha256
    for i in range(3):
        name, other = f"{clip_id(3, i, 2.0)}.wav", f"{clip_id(4, i, 2.0)}.wav"
        assert digest(tmp_path / "a")[name] == digest(tmp_path / "c")[name]
        assert digest(tmp_path / "a")[name] != digest(tmp_path / "d")[other]


def test_workers_do_not_change_bytes(tmp_path):
    generate_corpus(tmp_path / "one", n=4, seconds=1.0, seed=9, workers=1)
    generate_corpus(tmp_path / "two", n=4, seconds=1.0, seed=9, workers=2)
    assert digest(tmp_path / "one") == digest(tmp_path / "two")


def test_columns_captions_and_labels(small_corpus):
    raw = pd.read_csv(small_corpus / "captions.csv")
    assert list(raw.columns) == COLUMNS
    caps = load_captions(small_corpus / "captions.csv")
    labels = load_labels(small_corpus)
    assert list(caps.index) == list(labels.index) == [f"syn-s1234-4s-{i:05d}" for i in range(24)]
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


def chroma(wave, sr, n=2048, hop=1024):
    """Unit-norm 12-bin pitch-class profile per frame over 180 Hz–2 kHz (where the melody lives)."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, n)[::hop] * np.hanning(n)
    mag = np.abs(np.fft.rfft(frames, axis=1))
    f = np.fft.rfftfreq(n, 1 / sr)
    band = (f > 180) & (f < 2000)
    pitch_class = np.round(12 * np.log2(f[band] / 440)).astype(int) % 12
    c = np.stack([mag[:, band][:, pitch_class == k].sum(1) for k in range(12)], axis=1)
    return c / (np.linalg.norm(c, axis=1, keepdims=True) + 1e-9)


def chroma_similarity(a, b, sr):
    return float(np.mean(np.sum(chroma(a, sr) * chroma(b, sr), axis=1)))


@pytest.mark.parametrize("index", [0, 2, 3])
def test_with_timbre_keeps_melody_changes_timbre(index):
    sr = 16000
    base = sample_spec(5, index, "lullaby")
    new_timbre = "piano" if base.melody_instrument != "piano" else "flute"
    same_melody = with_timbre(base, new_timbre)
    assert same_melody.melody == base.melody and same_melody.melody_id == base.melody_id
    assert same_melody.instruments[0] == new_timbre != base.melody_instrument
    # control: same new timbre, same key and harmony, but another melody in the same key
    scale = MAJOR if base.mode == "major" else MINOR
    other = replace(same_melody, melody=_melody(np.random.default_rng(99), scale, base.key, base.meter, 20))
    a, b, c = (render(s, 6.0, sr) for s in (base, same_melody, other))
    assert chroma_similarity(a, b, sr) > chroma_similarity(a, c, sr) + 0.05
    spec_a, spec_b = np.log1p(np.abs(np.fft.rfft(a))), np.log1p(np.abs(np.fft.rfft(b)))
    assert np.corrcoef(spec_a, spec_b)[0, 1] < 0.99  # a different timbre
    assert with_timbre(base, ["organ", "pad"]).instruments == ["organ", "pad"]
    with pytest.raises(ValueError, match="unknown timbre 'kazoo'"):
        with_timbre(base, "kazoo")


def test_long_clips_loop_the_melody():
    sr = 8000
    spec = sample_spec(0, 4, "ambient")  # no drums, no bass: only pad chords and the melody
    assert max(s + d for s, d, _ in spec.melody) * 60 / spec.tempo < 75  # the spec holds a bit over 60 s
    tail = slice(-10 * sr, None)
    wave = render(spec, 90.0, sr)[tail].astype(np.float64)
    chords = render(replace(spec, melody=()), 90.0, sr)[tail].astype(np.float64)
    # without looping, the tail would be the chords alone (up to the mix's gain)
    alpha = wave @ chords / (chords @ chords)
    assert np.sum((wave - alpha * chords) ** 2) > 0.05 * np.sum(wave**2)


def test_audioset_labels_are_real_ids(shared_data):
    path = shared_data / "class_labels_indices.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    mids = set(pd.read_csv(path, header=None)[1])
    assert set(AUDIOSET_MIDS.values()) <= mids
    assert audioset_labels(sample_spec(0, 0, "rock"))[0] == "/m/04rlf"


def test_caption_is_seeded():
    spec = sample_spec(1, 1)
    assert caption_for(spec, np.random.default_rng(0)) == caption_for(spec, np.random.default_rng(0))


def test_multihot():
    v = tags_to_multihot(["piano", "waltz"])
    assert v.sum() == 2 and v[TAG_VOCAB.index("piano")] == 1
    with pytest.raises(ValueError, match="unknown tag"):
        tags_to_multihot(["banjo"])


def test_synth_cli(tmp_path):
    res = CliRunner().invoke(main, ["synth", "--corpus", str(tmp_path / "c"), "--n", "3", "--seconds", "1", "--seed", "2", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "corpus: 3 clips × 1 s at 24000 Hz (seed 2)" in res.output
    assert len(list((tmp_path / "c").glob("*.wav"))) == 3
    bad = CliRunner().invoke(main, ["synth", "--corpus", str(tmp_path / "d"), "--n", "2", "--styles", "polka"])
    assert bad.exit_code != 0 and "unknown style 'polka'" in bad.output


def test_mood_is_audible_in_tempo_and_dynamics():
    level = {"soft": 0, "medium": 1, "loud": 2}
    for name, preset in STYLES.items():
        specs = [sample_spec(11, i, name) for i in range(60)]
        gentle = [s for s in specs if s.mood == preset.moods[0]]
        intense = [s for s in specs if s.mood == preset.moods[1]]
        assert gentle and intense, name
        assert max(s.tempo for s in gentle) < min(s.tempo for s in intense), name
        assert np.mean([level[s.dynamics] for s in gentle]) < np.mean([level[s.dynamics] for s in intense]), name
        assert all(preset.tempo[0] <= s.tempo <= preset.tempo[1] for s in specs), name

"""Loudness matching of the study stimuli: BS.1770 against independent checks, +6 dB systems matched, the
ceiling holds, both numbers land in the database, bad clips are named."""

from __future__ import annotations

import numpy as np
import pytest
from human_fixtures import make_sources
from sqlalchemy import select

from human_eval import db
from human_eval.design import create_study
from human_eval.loudness import integrated_loudness, match_loudness, true_peak_dbtp
from metrics.audio import AudioError, load_audio, save_audio


def test_bs1770_reference_points():
    sr = 48000
    t = np.arange(10 * sr) / sr
    # BS.1770-4 / EBU Tech 3341: a 997 Hz sine at -18 dBFS peak per channel reads -18 LUFS on stereo;
    # K-weighting has ~0 dB at 1 kHz, so the mono (one-channel) sum reads 3 dB lower
    tone = 10 ** (-18 / 20) * np.sin(2 * np.pi * 997 * t)
    assert integrated_loudness(np.stack([tone, tone], axis=1), sr) == pytest.approx(-18.0, abs=0.1)
    assert integrated_loudness(tone, sr) == pytest.approx(-21.0, abs=0.1)
    # a 1 kHz sine sampled off its peaks: the sample peak under-reads, the 4x true peak does not
    x = np.sin(2 * np.pi * (sr / 4) * t[:4800] + np.pi / 4)  # samples at +-0.707
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(-3.01, abs=0.01)
    assert true_peak_dbtp(x) == pytest.approx(0.0, abs=0.3)


def test_gain_only_systems_are_matched_within_half_a_lu(tmp_path):
    dirs, ref, captions = make_sources(tmp_path, n_items=4, seconds=1.0, reference=False)
    loud = tmp_path / "louder"
    for p in sorted(dirs["zebrasynth"].glob("*.wav")):  # the same clips, +6 dB
        save_audio(loud / p.name, load_audio(p).wave * 2.0, 16000)
    srcs = {"zebrasynth": dirs["zebrasynth"], "louder": loud}
    assert integrated_loudness(load_audio(loud / "yt0000.wav").wave, 16000) - integrated_loudness(
        load_audio(dirs["zebrasynth"] / "yt0000.wav").wave, 16000) == pytest.approx(6.02, abs=0.05)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    c = create_study(url, srcs, captions, ratings_per_pair=4, sample_rate=16000, attention_checks=0)
    engine = db.open_db(url)
    with db.sessions(engine)() as s:
        clips = {(cl.system.name, cl.item_id): cl for cl in s.scalars(select(db.Clip))}
        assert db.the_study(s).loudness_target_lufs == -23.0
    engine.dispose()
    for item in ("yt0000", "yt0001", "yt0002", "yt0003"):
        q, l_ = clips["zebrasynth", item], clips["louder", item]
        assert l_.source_lufs - q.source_lufs == pytest.approx(6.02, abs=0.05)  # as received
        assert l_.gain_db - q.gain_db == pytest.approx(-6.02, abs=0.05)
        # measured here on the files raters get, independently of the stored numbers
        got = [integrated_loudness(load_audio(c.store / f"{x.opaque_id}.wav").wave, 16000) for x in (q, l_)]
        assert abs(got[0] - got[1]) < 0.5 and got[0] == pytest.approx(-23.0, abs=0.2)
        assert q.stored_lufs == pytest.approx(got[0], abs=1e-6)


def test_ceiling_holds_with_limiting_and_loudness_still_reached():
    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(2 * sr) / sr
    # quiet pad with sparse loud clicks: reaching -14 LUFS by gain alone would clip the clicks
    x = 0.02 * np.sin(2 * np.pi * 330 * t) + 0.005 * rng.standard_normal(len(t))
    x[:: sr // 4] += 0.9
    y, info = match_loudness(x, sr, target_lufs=-14.0, ceiling_dbtp=-1.0)
    assert info.limited and info.gain_db > 14
    assert true_peak_dbtp(y) <= -1.0 + 1e-6
    assert integrated_loudness(y, sr) == pytest.approx(-14.0, abs=0.1)
    y2, info2 = match_loudness(0.1 * np.sin(2 * np.pi * 440 * t), sr)  # a gentle clip: gain only
    assert not info2.limited and np.allclose(y2, 0.1 * np.sin(2 * np.pi * 440 * t) * 10 ** (info2.gain_db / 20),
                                             atol=1e-6)


def test_unmatchable_clips_are_named(tmp_path):
    with pytest.raises(AudioError, match=r"quiet\.wav: silent"):
        match_loudness(np.zeros(16000), 16000, path="quiet.wav")
    with pytest.raises(AudioError, match=r"short\.wav: cannot measure loudness: clip of 0\.025 s is too short"):
        match_loudness(np.ones(400) * 0.1, 16000, path="short.wav")
    # shorter than one 400 ms block: measured as one block of its own length (a steady tone reads the same)
    t = np.arange(16000) / 16000
    tone = 0.1 * np.sin(2 * np.pi * 997 * t)
    assert integrated_loudness(tone[:3200], 16000) == pytest.approx(integrated_loudness(tone, 16000), abs=0.05)

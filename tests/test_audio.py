"""Audio I/O: every bad-input case gets the exact error naming the file; pairing is by id."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from metrics.audio import (
    RESAMPLE_FILTER,
    AudioError,
    PairingError,
    SilentAudioWarning,
    load_audio,
    load_dir,
    pair_ids,
    preprocessing_id,
    resample,
    save_audio,
    scan_dir,
)


def tone(seconds=1.0, sr=16000, freq=440.0, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_formats_decode_to_mono_float32(tmp_path, fmt):
    path = tmp_path / f"a.{fmt}"
    sf.write(path, tone(channels=2), 16000)
    clip = load_audio(path)
    assert clip.id == "a" and clip.sr == 16000 and clip.wave.dtype == np.float32 and clip.wave.ndim == 1
    assert len(clip.wave) == 16000
    assert np.abs(clip.wave).max() <= 1.0
    assert len(clip.sha256) == 64


def test_mono_is_channel_mean(tmp_path):
    left, right = tone(freq=440), tone(freq=660)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    clip = load_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(clip.wave, (left + right) / 2, atol=1e-7)


def test_resample_rate_and_frequency_preserved(tmp_path):
    sf.write(tmp_path / "r.wav", tone(sr=24000, freq=1000), 24000, subtype="FLOAT")
    clip = load_audio(tmp_path / "r.wav", sr=16000)
    assert clip.sr == 16000 and len(clip.wave) == 16000
    spectrum = np.abs(np.fft.rfft(clip.wave))
    assert abs(np.argmax(spectrum) * 16000 / len(clip.wave) - 1000) <= 1
    # the filter is recorded where cache keys and results read it
    assert RESAMPLE_FILTER["resampling_method"] in preprocessing_id(16000)
    np.testing.assert_array_equal(resample(clip.wave, 16000, 16000), clip.wave)


def test_corrupt_file_names_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioError, match=r"broken\.wav: unreadable or corrupt audio"):
        load_audio(bad)


def test_unsupported_format(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(AudioError, match=r"notes\.txt: unsupported format '\.txt'"):
        load_audio(p)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: file not found"):
        load_audio(tmp_path / "nope.wav")


def test_zero_samples(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav: zero samples"):
        load_audio(tmp_path / "empty.wav")


def test_nan_samples(tmp_path):
    x = tone()
    x[10:13] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: contains 3 NaN/Inf samples"):
        load_audio(tmp_path / "nan.wav")


def test_silent_warns(tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(1600, np.float32), 16000)
    with pytest.warns(SilentAudioWarning, match=r"quiet\.wav: all-silent audio"):
        load_audio(tmp_path / "quiet.wav")


def test_too_short(tmp_path):
    sf.write(tmp_path / "short.wav", tone(seconds=0.25), 16000)
    with pytest.raises(AudioError, match=r"short\.wav: too short: 0\.250 s < minimum 1\.000 s"):
        load_audio(tmp_path / "short.wav", min_seconds=1.0)


def test_load_dir_skip_reports_every_file(tmp_path):
    save_audio(tmp_path / "good.wav", tone(), 16000)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    sf.write(tmp_path / "short.wav", tone(seconds=0.1), 16000)
    with pytest.raises(AudioError, match=r"bad\.wav"):
        load_dir(tmp_path, on_error="raise", min_seconds=0.5)
    report = load_dir(tmp_path, on_error="skip", min_seconds=0.5)
    assert [c.id for c in report.clips] == ["good"]
    assert {s.path.split("/")[-1] for s in report.skipped} == {"bad.wav", "short.wav"}
    assert "skipped 2" in report.summary() and "bad.wav" in report.summary()


def test_load_dir_all_bad_is_error(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"x")
    with pytest.raises(AudioError, match=r"no usable clips \(1 skipped\)"):
        load_dir(tmp_path, on_error="skip")


def test_bad_policy(tmp_path):
    save_audio(tmp_path / "a.wav", tone(), 16000)
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        load_dir(tmp_path, on_error="ignore")


def test_scan_dir_errors(tmp_path):
    with pytest.raises(AudioError, match=r"no audio files"):
        scan_dir(tmp_path)
    with pytest.raises(AudioError, match=r"directory not found"):
        scan_dir(tmp_path / "missing")
    save_audio(tmp_path / "x.wav", tone(), 16000)
    sf.write(tmp_path / "x.flac", tone(), 16000)
    with pytest.raises(AudioError, match=r"duplicate id 'x'"):
        scan_dir(tmp_path)


def test_scan_order_is_by_id_not_listing(tmp_path):
    for name in ["c", "a", "b"]:
        save_audio(tmp_path / f"{name}.wav", tone(), 16000)
    assert list(scan_dir(tmp_path)) == ["a", "b", "c"]


def test_pair_ids_lists_unmatched():
    assert pair_ids({"gen": ["b", "a"], "ref": ["a", "b"]}) == ["a", "b"]
    with pytest.raises(PairingError, match=r"gen lacks 1 id\(s\): c; ref lacks 1 id\(s\): d"):
        pair_ids({"gen": ["a", "b", "d"], "ref": ["a", "b", "c"]})
    assert pair_ids({"gen": ["a", "d"], "ref": ["a", "c"]}, allow_missing=True) == ["a"]
    with pytest.raises(PairingError, match="no clip id is shared"):
        pair_ids({"gen": ["a"], "ref": ["b"]}, allow_missing=True)


def test_save_load_round_trip(tmp_path):
    x = tone()
    save_audio(tmp_path / "rt.wav", x, 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = load_audio(tmp_path / "rt.wav").wave
    np.testing.assert_allclose(x, y, atol=1 / 32767)

"""MusicCaps preparation: trimming full-length audio, resampling, and reporting unusable ids."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from click.testing import CliRunner

from benchmarks.cli import main
from benchmarks.musiccaps_prep import prepare
from metrics.audio import load_audio
from metrics.musiccaps import COLUMNS, load_captions

ROWS = [
    ("full", 5, 15), ("seg", 0, 10), ("short", 0, 10), ("broken", 0, 10), ("absent", 0, 10),
]  # fmt: skip


def make_inputs(tmp_path):
    csv = tmp_path / "mc.csv"
    lines = [",".join(COLUMNS)] + [f"{y},{a},{b},/m/x,\"['a']\",Caption of {y}.,1,True,True" for y, a, b in ROWS]
    csv.write_text("\r\n".join(lines) + "\r\n")
    audio = tmp_path / "dl"
    audio.mkdir()
    sr = 44100
    t = np.arange(30 * sr) / sr
    ramp = (t / 30).astype(np.float32) * 0.5  # amplitude encodes position: checks the trim window
    sf.write(audio / "full.wav", ramp, sr)
    sf.write(audio / "seg.flac", 0.3 * np.sin(2 * np.pi * 440 * t[: 10 * sr]).astype(np.float32), sr)
    sf.write(audio / "short.wav", np.full(3 * sr, 0.2, np.float32), sr)
    (audio / "broken.wav").write_bytes(b"junk")
    return csv, audio


def test_prepare_trims_resamples_and_reports(tmp_path):
    csv, audio = make_inputs(tmp_path)
    report = prepare(csv, audio, tmp_path / "out", subset="all", sample_rate=16000)
    assert sorted(report.prepared) == ["full", "seg"]
    assert report.trimmed == ["full"]
    assert report.missing == ["absent"]
    assert set(report.unusable) == {"short", "broken"}
    assert "too short: 3.00 s of 10 s" in report.unusable["short"]
    full = load_audio(tmp_path / "out/audio/full.wav")
    assert full.sr == 16000 and len(full.wave) == 160000
    # the ramp's value at the start of the window is 0.5 * 5/30
    assert abs(float(np.median(full.wave[1000:2000])) - 0.5 * 5.1 / 30) < 0.01
    caps = load_captions(tmp_path / "out/captions.csv")
    assert sorted(caps.index) == ["full", "seg"]
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["missing"] == ["absent"]


def test_prepare_cli(tmp_path):
    csv, audio = make_inputs(tmp_path)
    res = CliRunner().invoke(main, ["musiccaps", "prepare", "--captions", str(csv), "--audio", str(audio),
                                    "--clips", str(tmp_path / "o"), "--subset", "all"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "2/5 clips prepared" in res.output and "missing audio: 1" in res.output
    bad = CliRunner().invoke(main, ["musiccaps", "prepare", "--captions", str(tmp_path / "none.csv"), "--audio", str(audio),
                                    "--clips", str(tmp_path / "o")])  # fmt: skip
    assert bad.exit_code != 0 and "none.csv: captions file not found" in bad.output

"""The audit end to end on audio through the shipped semantic tokenizer and the CLI.

Planted copies of procedural training clips: exact, shifted by whole 40 ms frames, shifted by a
non-integer number of frames, gain-changed (−3 dB, half a frame off the token grid) and lightly noised
(40 dB SNR); novel clips are procedural clips of another seed whose style and instruments occur in no
training clip ("clearly novel": the procedural styles recur across seeds, and a same-style,
same-instrument piece has nearly the same token histogram, which the paper's histogram criterion
rightly calls similar). ``metrics.audio`` decodes everything.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.slow

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

from metrics.audio import load_dir, save_audio  # noqa: E402
from metrics.intervals import wilson_ci  # noqa: E402
from metrics.memorization import get_tokenizer  # noqa: E402

SR = 16000
FRAME = SR // 25


@pytest.fixture(scope="module")
def tokenizer():
    # the shipped tokenizer is the project's own: a missing or unloadable one is a failure, never a skip
    return get_tokenizer("semantic-ref")


@pytest.fixture(scope="module")
def planted_dirs(tmp_path_factory, tokenizer):
    from musiclm_ref.data import synth
    from musiclm_ref.data.specs import sample_spec
    root = tmp_path_factory.mktemp("memo")
    train, novel, gen, null = root / "train", root / "novel", root / "gen", root / "null"
    synth.generate_corpus(train, n=6, seconds=10.0, seed=21, sample_rate=SR)
    synth.generate_corpus(novel, n=12, seconds=7.0, seed=99, sample_rate=SR)
    synth.generate_corpus(null, n=10, seconds=7.0, seed=77, sample_rate=SR)
    seen = set()
    for i in range(6):
        spec = sample_spec(21, i)
        seen |= {spec.style, spec.melody_instrument, spec.harmony_instrument}
    clips = {c.id: c.wave for c in load_dir(train).clips}
    ids = sorted(clips)
    rng = np.random.default_rng(0)
    gen.mkdir()
    truth = {}

    def plant(name, src, start, wave):
        save_audio(gen / f"{name}.wav", wave, SR)
        truth[name] = (src, start)

    seg = 7 * SR  # windows at 1 s hop: the one at 1 s lies inside the copy, away from both edges
    plant("exact", ids[0], 1.0, clips[ids[0]][SR : SR + seg])
    plant("shift_frames", ids[1], 37 * FRAME / SR, clips[ids[1]][37 * FRAME : 37 * FRAME + seg])
    off = int(1.513 * SR)  # 37.8 frames: not on the token grid
    plant("shift_fraction", ids[2], off / SR, clips[ids[2]][off : off + seg])
    plant("gain", ids[3], 0.5, 0.7 * clips[ids[3]][SR // 2 : SR // 2 + seg])
    w = clips[ids[4]][SR : SR + seg]
    noise = rng.normal(0, np.sqrt(np.mean(w**2)) * 10 ** (-40 / 20), len(w))
    plant("noise", ids[4], 1.0, (w + noise).astype(np.float32))
    novel_clips = [c for i, c in enumerate(load_dir(novel).clips)
                   if not {(s := sample_spec(99, i)).style, s.melody_instrument, s.harmony_instrument} & seen][:3]
    assert len(novel_clips) == 3
    for c in novel_clips:
        save_audio(gen / f"novel_{c.id}.wav", c.wave, SR)
    return train, gen, truth, null


@pytest.fixture(scope="module")
def cli_audit(planted_dirs, tmp_path_factory):
    from click.testing import CliRunner

    from benchmarks.cli import main

    train, gen, _, null = planted_dirs
    out = tmp_path_factory.mktemp("audit_out")
    r = CliRunner().invoke(main, ["memorization", "audit", "--generated", str(gen), "--train", str(train),
                                  "--null", str(null), "--detect", "1", "--phases", "2", "--out", str(out), "--json", "-"])
    assert r.exit_code == 0, r.output
    return out, json.loads((out / "memorization.json").read_text())


def _missed(out, truth, names):
    import csv

    rows = list(csv.DictReader((out / "matches.csv").open()))
    missed = []
    for name in names:
        src, start = truth[name]
        best = [r for r in rows if r["generated_id"] == name and r["train_id"] == src]
        lag = float(best[0]["train_offset_s"]) - float(best[0]["gen_offset_s"]) if best else None
        if lag is None or abs(lag - start) > 0.08 + 1e-6:  # right clip, lag within two token frames
            missed.append((name, src, start, best[:1]))
    return rows, missed


def test_audit_finds_planted_audio_copies(planted_dirs, cli_audit):
    """Exact copies and copies shifted by whole or fractional token frames: right clip, lag within 2 frames."""
    _, _, truth, _ = planted_dirs
    out, _ = cli_audit
    rows, missed = _missed(out, truth, ["exact", "shift_frames", "shift_fraction"])
    assert not missed, missed
    assert any(r["exact"] == "True" for r in rows if r["generated_id"] == "exact")


def test_audit_finds_gain_changed_and_noised_audio_copies(planted_dirs, cli_audit):
    """Short-term level normalization cancels the gain; the −50 dBFS reference sinks the noise floor under
    the tokenizer's log floor; the half-frame phase puts the gain copy back on the token grid."""
    _, _, truth, _ = planted_dirs
    out, _ = cli_audit
    _, missed = _missed(out, truth, ["gain", "noise"])
    assert not missed, missed


def test_audit_outputs(cli_audit):
    """Both matchers side by side with the same keys; the per-clip false-alarm rate and the detection table."""
    out, summary = cli_audit
    assert list(summary["matchers"]) == ["semantic-ot", "embedding-mel"]
    keys = {"tau", "fpr", "exact_rate", "approx_rate", "clip_false_alarm_rate", "clip_false_alarm_ci95",
            "n_null_calibration", "n_null_heldout", "calibration", "detection"}
    for name, m in summary["matchers"].items():
        assert keys <= set(m), name
        assert m["n_null_calibration"] + m["n_null_heldout"] == 10 and m["calibration"]["source"] == "null"
        assert set(summary["detection"][name]) == {"exact", "gain_+6db", "gain_-6db", "noise_40db", "noise_30db", "noise_20db",
                                                   "shift_offgrid", "lowpass_8k", "pitch_+1", "pitch_-1", "tempo_+3%",
                                                   "tempo_-3%"}
        lo, hi = m["clip_false_alarm_ci95"]
        assert (lo, hi) == pytest.approx(wilson_ci(m["calibration"]["clip_false_alarms"], m["n_null_heldout"]))
    assert summary["tau"] == summary["matchers"]["semantic-ot"]["tau"]
    for png in ("match_rate.png", "detection.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    header = (out / "matches.csv").read_text().splitlines()[0]
    assert header.startswith("generated_id,train_id,gen_offset_s,train_offset_s,cost,exact")
    assert "matcher" in header.split(",")
    from metrics.store import read_store

    store = read_store(out)  # the same results store every command writes, beside memorization.json
    assert store.kind == "memorization"
    assert store.systems == ["generated"]
    assert store.metric("generated", "semantic-ot_approx_rate")["value"] == pytest.approx(
        summary["matchers"]["semantic-ot"]["approx_rate"])


def test_audit_reports_no_novel_audio_clip(cli_audit):
    """Novel procedural pieces: the per-clip decision at the default --fpr reports none of them."""
    _, summary = cli_audit
    for name, m in summary["matchers"].items():
        assert [k for k, v in m["best_cost"].items() if k.startswith("novel_") and v is not None] == [], name


def test_audit_bad_input_errors(planted_dirs, tmp_path):
    from click.testing import CliRunner

    from benchmarks.cli import main

    train, _, _, _ = planted_dirs
    short = tmp_path / "short"
    short.mkdir()
    save_audio(short / "tiny.wav", np.sin(np.arange(3 * SR) / 10).astype(np.float32) * 0.3, SR)
    r = CliRunner().invoke(main, ["memorization", "audit", "--generated", str(short), "--train", str(train),
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code != 0
    assert "generated/tiny: 75 tokens is shorter than a window of 125 tokens" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["memorization", "audit", "--generated", str(empty), "--train", str(train),
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code != 0
    assert f"{empty}: no audio files" in r.output


def test_sweep_cli_on_the_reference_model(planted_dirs, tmp_path):
    from click.testing import CliRunner

    from benchmarks.cli import main

    train, _, _, _ = planted_dirs
    r = CliRunner().invoke(main, ["memorization", "sweep", "--train", str(train), "--n", "4", "--prompt-lengths",
                                  "0,25,50", "--fpr", "0.01", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "s" / "memorization.json").read_text())
    assert [row["prompt_tokens"] for row in summary["rows"]] == [0, 25, 50]
    assert (tmp_path / "s" / "match_rate.png").exists() and (tmp_path / "s" / "matches.csv").exists()
    from metrics.store import read_store

    store = read_store(tmp_path / "s")
    assert store.kind == "memorization"
    assert store.metric(store.systems[0], "exact_rate")["value"] == pytest.approx(summary["exact_rate"])
    # prompts are cut with the tokenizer the model's semantic stage reads (since issue 31 not semantic-ref's log-mel one)
    from musiclm_ref.pipeline import MusicLM

    assert summary["tokenizer"] == MusicLM.from_pretrained().semantic.metadata["tokenizer_id"]
    r = CliRunner().invoke(main, ["memorization", "sweep", "--train", str(train), "--n", "4", "--tokenizer", "semantic-ref",
                                  "--out", str(tmp_path / "s2")])
    assert r.exit_code != 0 and "is not the one the semantic stage" in r.output, r.output


def test_audit_cli_search_correction_flag_reaches_the_audit(monkeypatch, tmp_path):
    """``--no-search-correction`` turns τ's searched-windows correction off; the default keeps it on."""
    from click.testing import CliRunner

    import benchmarks.cli.memorization as cli
    from benchmarks.cli import main

    seen = []
    monkeypatch.setattr(cli, "run_audit", lambda *a, **k: seen.append(k["search_correction"]) or {})
    for d in ("gen", "train"):
        (tmp_path / d).mkdir()
    base = ["memorization", "audit", "--generated", str(tmp_path / "gen"), "--train", str(tmp_path / "train"), "--json", "-"]
    for extra in ([], ["--no-search-correction"], ["--search-correction"]):
        r = CliRunner().invoke(main, base + ["--out", str(tmp_path / f"o{len(seen)}")] + extra)
        assert r.exit_code == 0, r.output
    assert seen == [True, False, True]

"""``musiclm-eval score``: FAD + KLD + MCC in one pass, every clip decoded once, pairing by id."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.cli import main
from metrics.audio import load_dir, save_audio
from metrics.commands import compute_score

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread per module

METRIC_KEYS = ["fad_mel", "kld_musiclm", "kld_musiclm_gen_ref", "kld_musiclm_sym", "mcc"]  # keys name the KLD convention


N = 8  # pairs: the first 8 corpus clips, enough for every property and quick on a shared CPU


@pytest.fixture(scope="module")
def reference(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    for p in sorted(small_corpus.glob("*.wav"))[:N]:
        (out / p.name).write_bytes(p.read_bytes())
    return out


@pytest.fixture(scope="module")
def generated(reference, tmp_path_factory):
    """Lightly noised copies of the reference clips, same ids."""
    out = tmp_path_factory.mktemp("generated")
    rng = np.random.default_rng(5)
    for clip in load_dir(reference).clips:
        save_audio(out / f"{clip.id}.wav", clip.wave + 0.01 * rng.standard_normal(len(clip.wave)).astype(np.float32), clip.sr)
    return out


def test_compute_score_keys_per_clip_and_single_decode(small_corpus, reference, generated, tmp_path, monkeypatch):
    import metrics.audio

    calls = []
    real_decode = metrics.audio.decode
    monkeypatch.setattr(metrics.audio, "decode", lambda path, data=None: calls.append(str(path)) or real_decode(path, data))
    per_clip = tmp_path / "per_clip.csv"
    # the captions file covers all 24 corpus clips: a superset of the generated ids is fine
    doc = compute_score(generated, reference, small_corpus / "captions.csv", embedders=["mel"], per_clip=per_clip,
                        n_boot=200)
    assert len(calls) == 2 * N and len(set(calls)) == 2 * N  # each clip decoded exactly once
    assert doc["n_pairs"] == N
    for key in METRIC_KEYS:
        assert np.isfinite(doc[key]), key
        lo, hi = doc[f"{key}_ci95"]
        assert lo <= doc[key] <= hi, key  # FAD too: its interval is bias-corrected and holds the estimate
    assert doc["kld_musiclm_sym"] == pytest.approx(0.5 * (doc["kld_musiclm"] + doc["kld_musiclm_gen_ref"]))
    assert doc["kld_settings"]["convention"] == "musiclm"
    rows = list(csv.DictReader(per_clip.open()))
    assert len(rows) == N and {"id", "kld_musiclm", "kld_musiclm_gen_ref", "mcc", "fad_mel"} <= set(rows[0])
    assert np.mean([float(r["mcc"]) for r in rows]) == pytest.approx(doc["mcc"])
    assert np.mean([float(r["kld_musiclm"]) for r in rows]) == pytest.approx(doc["kld_musiclm"])


def test_kld_convention_option_is_honoured(reference, generated):
    a = compute_score(generated, reference, None, embedders=[], kld_convention="audiocraft", n_boot=50)
    assert a["kld_audiocraft_both"] == pytest.approx(a["kld_audiocraft"] + a["kld_audiocraft_qp"])  # a sum
    assert a["kld_settings"]["convention"] == "audiocraft" and not any(k.startswith("kld_musiclm") for k in a)
    b = compute_score(generated, reference, None, embedders=[], kld_convention="stable-audio", n_boot=50)
    assert b["kld_stable_audio"] != a["kld_audiocraft"]  # the other direction, pooled logits
    assert "mcc" not in a and "fad_mel" not in a


def test_cli_writes_json_and_per_clip_csv(small_corpus, reference, generated, tmp_path):
    out = tmp_path / "res.json"
    result = CliRunner().invoke(main, ["score", "--generated", str(generated), "--reference", str(reference),
                                        "--captions", str(small_corpus / "captions.csv"), "--embedders", "mel",
                                        "--no-cache", "--bootstrap", "100", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert all(k in doc and f"{k}_ci95" in doc for k in METRIC_KEYS)
    assert (tmp_path / "res_per_clip.csv").exists()
    assert f"{N} pairs" in result.output


def test_cli_mismatched_ids_and_label_space_are_clear_errors(reference, generated, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    for p in sorted(generated.glob("*.wav"))[1:]:
        (partial / p.name).write_bytes(p.read_bytes())
    missing = sorted(generated.glob("*.wav"))[0].stem
    r = CliRunner().invoke(main, ["score", "--generated", str(partial), "--reference", str(reference), "--embedders", "",
                                   "--joint", "none", "--no-cache"])
    assert r.exit_code == 1 and f"generated lacks 1 id(s): {missing}" in r.output
    r = CliRunner().invoke(main, ["score", "--generated", str(generated), "--reference", str(reference), "--embedders", "",
                                   "--joint", "none", "--label-space", "audioset"])
    assert r.exit_code == 1 and "classifier leaf-corpus: label space 'corpus', expected 'audioset'" in r.output

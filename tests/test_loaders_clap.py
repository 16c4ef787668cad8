"""LAION-CLAP loader (metrics/embedders/clap.py) on a tiny random-weight transformers ClapModel + ClapProcessor."""

from __future__ import annotations

import numpy as np
import pytest
from loader_fixtures import clap_checkpoint

pytest.importorskip("transformers", reason="transformers is not installed (pip install 'musiclm-eval[clap]')")
SR = 48000


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return clap_checkpoint(tmp_path_factory.mktemp("clap"))


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    return clap_checkpoint(tmp_path_factory.mktemp("clapf"), fusion=True)


def test_joint_and_embedder_share_the_space_and_match_the_package(ckpt):
    import torch
    from transformers import ClapModel, ClapProcessor

    from metrics.models import ModelSpec

    joint = ModelSpec("clap", str(ckpt), kind="joint").build()
    audio = ModelSpec("clap", str(ckpt)).build()
    assert joint.audio.sample_rate == audio.sample_rate == SR and joint.audio.id == audio.id
    wave = np.random.default_rng(0).standard_normal(int(12.5 * SR)).astype(np.float32) * 0.1
    rows = audio.embed(wave)
    assert rows.shape == (2, 16)  # 10 s windows: [0, 10) and [10, 12.5) (repeat-padded by the extractor)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    model, proc = ClapModel.from_pretrained(ckpt).eval(), ClapProcessor.from_pretrained(ckpt)
    with torch.no_grad():
        for i, seg in enumerate((wave[:10 * SR], wave[10 * SR:])):
            f = proc.feature_extractor(seg, sampling_rate=SR, truncation="rand_trunc", padding="repeatpad", return_tensors="pt")
            out = model.get_audio_features(**f)
            np.testing.assert_allclose(rows[i], getattr(out, "pooler_output", out)[0].numpy(), rtol=1e-5, atol=1e-6)
        tok = proc.tokenizer(["calm piano song"], padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        assert tok["input_ids"].shape == (1, 77)
        t = model.get_text_features(**tok)
    np.testing.assert_allclose(joint.embed_text(["calm piano song"])[0], getattr(t, "pooler_output", t)[0].numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(audio.embed(wave), rows)


def test_stable_audio_variant_peak_normalizes_quantizes_and_is_deterministic_with_fusion(fused):
    from metrics.embedders.clap import ClapAudio, int16_round_trip

    m = ClapAudio("clap-sam", str(fused))
    assert m.fusion and m.config["int16_round_trip"] and m.config["peak_dbfs"] == -1.0
    wave = np.random.default_rng(1).standard_normal(int(11 * SR)).astype(np.float32) * 0.05
    (prepared,) = m.prepare(wave)  # the whole clip: the fusion checkpoint handles > 10 s itself
    import pyloudnorm as pyln

    normed = pyln.normalize.peak(wave, -1.0)  # stable-audio-metrics' calls, in its order
    expected = (np.clip(normed, -1, 1) * 32767.0).astype(np.int16) / 32767.0
    np.testing.assert_array_equal(prepared, expected.astype(np.float32))
    assert np.array_equal(int16_round_trip(np.array([0.5, -2.0], np.float32)),
                          np.array([16383 / 32767, -1.0], np.float32))
    a, b = m.embed(wave), m.embed(wave)
    assert a.shape == (1, 16)
    np.testing.assert_array_equal(a, b)  # fusion crops drawn from a seeded generator


def test_missing_checkpoint_names_what_to_download(tmp_path, monkeypatch):
    from metrics.embedders import EmbedderError
    from metrics.embedders.clap import ClapAudio

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderError, match="laion/larger_clap_music.*huggingface-cli download"):
        ClapAudio("clap")
    with pytest.raises(EmbedderError, match="not a transformers CLAP folder"):
        ClapAudio("clap", str(tmp_path))

"""MuQ-MuLan loader (metrics/embedders/muq.py) on a tiny random-weight muq MuQMuLan saved with save_pretrained."""

from __future__ import annotations

import numpy as np
import pytest
from loader_fixtures import muq_mulan_checkpoint

pytest.importorskip("muq", reason="muq is not installed (pip install 'musiclm-eval[muq]')")
SR = 24000


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return muq_mulan_checkpoint(tmp_path_factory.mktemp("muq"))


def test_loads_offline_with_the_package_clip_cut_at_24k(ckpt):
    from metrics.models import ModelSpec

    joint = ModelSpec("muq-mulan", str(ckpt), kind="joint").build()
    audio = joint.audio
    assert audio.sample_rate == SR and audio.dim == 8 and audio.id.startswith("muq-mulan-")
    wave = np.arange(int(23 * SR), dtype=np.float32) / 1e6
    clips = audio.clips(wave).numpy()
    # muq's _get_all_clips: 10 s clips; the 3 s rest completed with the first 7 s of the audio
    assert clips.shape == (3, 10 * SR)
    np.testing.assert_array_equal(clips[1], wave[10 * SR:20 * SR])
    np.testing.assert_array_equal(clips[2], np.concatenate([wave[20 * SR:], wave[:7 * SR]]))
    text = joint.embed_text(["calm piano song", "loud rock with drums"])
    assert text.shape == (2, 8) and np.isfinite(text).all()
    np.testing.assert_array_equal(text, joint.embed_text(["calm piano song", "loud rock with drums"]))


def test_audio_latents_or_a_clear_incompatibility(ckpt):
    """muq 0.1.0 needs transformers<5 to run its conformer; under 5 the loader says so instead of failing obscurely."""
    import torch

    from metrics.embedders import EmbedderError
    from metrics.embedders.muq import MuQMuLanAudio, transformers_major

    audio = MuQMuLanAudio(str(ckpt))
    wave = np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32) * 0.1
    if transformers_major() >= 5:
        with pytest.raises(EmbedderError, match="transformers<5"):
            audio.embed(wave)
        return
    rows = audio.embed(wave)
    with torch.no_grad():
        expected = audio.model(wavs=torch.from_numpy(wave)[None])[0].numpy()
    assert rows.shape == (1, 8)
    np.testing.assert_allclose(rows.mean(0), expected, rtol=1e-5, atol=1e-6)  # extract_audio_latents = mean of clips


def test_missing_weights_name_the_repositories(tmp_path, monkeypatch):
    from metrics.embedders import EmbedderError
    from metrics.embedders.muq import MuQMuLanAudio

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(EmbedderError, match="OpenMuQ/MuQ-MuLan-large.*OpenMuQ/MuQ-large-msd-iter"):
        MuQMuLanAudio()

"""MuQ-MuLan loader (metrics/embedders/muq.py) on a tiny random-weight muq MuQMuLan saved with save_pretrained.

muq 0.1.0 was written for transformers 4; the loader adapts its conformer to transformers 5
(``adapt_conformers``). The strongest check here runs the same checkpoint and audio through muq under a real
transformers 4.57.3 (installed code-only beside the venv by ``make``: ``.venv/peers/transformers4``) in a
subprocess and requires the same latents; measured: bit-identical (max |diff| 0.0) for audio and text.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from loader_fixtures import muq_mulan_checkpoint

pytest.importorskip("muq", reason="muq is not installed (pip install 'musiclm-eval[muq]')")
SR = 24000
TEXTS = ["calm piano song", "loud rock with drums"]
TRANSFORMERS4 = Path(sys.prefix) / "peers" / "transformers4"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return muq_mulan_checkpoint(tmp_path_factory.mktemp("muq"))


@pytest.fixture(scope="module")
def audio(ckpt):
    from metrics.embedders.muq import MuQMuLanAudio

    return MuQMuLanAudio(str(ckpt))


def _wave(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


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
    text = joint.embed_text(TEXTS)
    assert text.shape == (2, 8) and np.isfinite(text).all()
    np.testing.assert_array_equal(text, joint.embed_text(TEXTS))


def test_short_clips_are_completed_with_their_start_as_the_package_does(audio):
    """muq's rule, kept exactly: the rest is completed with the audio's start, which for a clip under 5 s is
    the whole clip once more (so the model sees 2x the clip, not 10 s); no zero padding anywhere."""
    seven, three = _wave(7, seed=4), _wave(3, seed=5)
    np.testing.assert_array_equal(audio.clips(seven).numpy(), np.concatenate([seven, seven[:3 * SR]])[None])
    np.testing.assert_array_equal(audio.clips(three).numpy(), np.concatenate([three, three])[None])
    assert audio.embed(three).shape == (1, 8)


def test_audio_latents_are_per_clip_deterministic_and_average_to_the_package_latent(audio):
    import torch

    wave = _wave(23)
    rows = audio.embed(wave)
    assert rows.shape == (3, 8) and rows.dtype == np.float32 and np.isfinite(rows).all()
    np.testing.assert_array_equal(rows, audio.embed(wave))
    with torch.no_grad():
        expected = audio.model(wavs=torch.from_numpy(wave)[None])[0].numpy()  # MuQMuLan.extract_audio_latents
    np.testing.assert_allclose(rows.mean(0), expected, rtol=1e-5, atol=1e-6)
    other = audio.embed(_wave(23, seed=1))
    assert np.abs(other - rows).max() > 1e-3  # the audio reaches the latent
    assert audio.config["transformers5_adapter"] == (audio.adapted > 0)


def test_adapted_conformer_returns_transformers4_hidden_states(audio):
    """Layer inputs then the final layer norm, computed here by running transformers' layers one by one."""
    import torch
    from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

    from metrics.embedders.muq import transformers_major

    if transformers_major() < 5:
        pytest.skip("transformers 4 returns hidden_states itself; nothing is adapted")
    enc = next(m for m in audio.model.modules() if isinstance(m, Wav2Vec2ConformerEncoder))
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((1, 50, 32)).astype(np.float32))
    with torch.no_grad():
        out = enc(x.clone(), output_hidden_states=True)
        h = enc.dropout(x.clone())
        pos = enc.embed_positions(h) if enc.embed_positions is not None else None
        expected = []
        for layer in enc.layers:
            expected.append(h)
            h = layer(h, attention_mask=None, relative_position_embeddings=pos)
        expected.append(enc.layer_norm(h))
        plain = enc(x.clone())
    assert len(out.hidden_states) == len(enc.layers) + 1
    for got, want in zip(out.hidden_states, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(out.last_hidden_state, expected[-1], rtol=0, atol=0)
    assert getattr(plain, "hidden_states", None) is None  # without the flag: transformers 5's own output


_PEER = r"""
import sys, numpy as np, torch, transformers
from muq import MuQMuLan
m = MuQMuLan.from_pretrained(sys.argv[1], local_files_only=True).eval()
w = np.load(sys.argv[2])
with torch.no_grad():
    rows = torch.stack([m.mulan_module.get_audio_latents(c[None])[0] for c in m._get_all_clips(torch.from_numpy(w))])
    text = m(texts=sys.argv[4].split("|"))
np.savez(sys.argv[3], rows=rows.numpy(), text=text.numpy(), version=transformers.__version__)
"""


def test_same_latents_as_muq_under_real_transformers4(audio, ckpt, tmp_path):
    if not (TRANSFORMERS4 / "transformers").is_dir():
        pytest.skip(f"no transformers 4 peer at {TRANSFORMERS4} (make installs it: pip install --no-deps --target "
                    f"{TRANSFORMERS4} transformers==4.57.3 huggingface_hub==0.36.0 tokenizers==0.22.1)")
    wave = _wave(13, seed=2)  # two clips: a whole one and one completed with the start
    np.save(tmp_path / "w.npy", wave)
    env = dict(os.environ, PYTHONPATH=str(TRANSFORMERS4), USE_TF="0", USE_TORCH="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", _PEER, str(ckpt), str(tmp_path / "w.npy"), str(tmp_path / "p.npz"),
                          "|".join(TEXTS)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    peer = np.load(tmp_path / "p.npz")
    assert str(peer["version"]).startswith("4.")
    np.testing.assert_allclose(audio.embed(wave), peer["rows"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(audio.embed_text(TEXTS), peer["text"], rtol=1e-6, atol=1e-7)


def test_missing_weights_name_the_repositories(tmp_path, monkeypatch):
    from metrics.embedders import EmbedderError
    from metrics.embedders.muq import MuQMuLanAudio

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(EmbedderError, match="OpenMuQ/MuQ-MuLan-large.*OpenMuQ/MuQ-large-msd-iter"):
        MuQMuLanAudio()


def test_a_folder_without_config_is_a_clear_error(tmp_path):
    from metrics.embedders import EmbedderError
    from metrics.embedders.muq import MuQMuLanAudio

    with pytest.raises(EmbedderError, match="not a MuQMuLan folder"):
        MuQMuLanAudio(str(tmp_path))

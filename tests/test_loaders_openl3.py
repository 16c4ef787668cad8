"""OpenL3 loader (metrics/embedders/openl3.py) on a random-weight torchopenl3 PytorchOpenl3 (mel256/music/512)."""

from __future__ import annotations

import numpy as np
import pytest
from loader_fixtures import openl3_checkpoint

pytest.importorskip("torchopenl3", reason="torchopenl3 is not installed (pip install 'musiclm-eval[openl3]')")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return openl3_checkpoint(tmp_path_factory.mktemp("ol3") / "torchopenl3_mel256_music_512.pth.tar")


def test_stereo_embedding_equals_the_package_function_on_the_peak_normalized_clip(ckpt):
    """Our 1024-d rows = torchopenl3.get_audio_embedding (its own resampy -> 48 kHz, 1 s frames, hop 0.5 s,
    center) of the −1 dBFS clip, duplicated L|R as stable-audio-metrics does for a mono file."""
    import torch
    import torchopenl3

    from metrics.models import ModelSpec

    model = ModelSpec("openl3", str(ckpt)).build()
    assert model.sample_rate == 44100 and model.dim == 1024 and model.channels == 2
    wave = np.random.default_rng(0).standard_normal(44100).astype(np.float32) * 0.2
    got = model.embed(wave)
    import pyloudnorm as pyln

    normed = pyln.normalize.peak(wave, -1.0)  # stable-audio-metrics' level step
    net = torchopenl3.core.PytorchOpenl3(input_repr="mel256", embedding_size=512, content_type="music")
    net.load_state_dict(torch.load(ckpt, weights_only=True))
    emb, _ = torchopenl3.get_audio_embedding(normed.astype(np.float64), 44100, model=net.eval(), center=True,
                                             hop_size=0.5, sampler="resampy", embedding_size=512, verbose=False)
    emb = emb[0].cpu().numpy()
    assert got.shape == (2, 1024)  # 1 s at hop 0.5 s with centering: 2 frames
    np.testing.assert_allclose(got[:, :512], emb, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got[:, :512], got[:, 512:])
    np.testing.assert_array_equal(model.embed(wave), got)  # deterministic


def test_stereo_input_is_embedded_per_channel_and_mono_variant_is_512(ckpt):
    from metrics.embedders.openl3 import OpenL3

    rng = np.random.default_rng(1)
    left, right = (rng.standard_normal(22050).astype(np.float32) * s for s in (0.5, 0.1))
    st = OpenL3(str(ckpt), channels=2)
    both = st.embed(np.stack([left, right], axis=1))
    # one peak over both channels (pyln.normalize.peak on [samples, 2]); then L and R separately
    import pyloudnorm as pyln

    normed = pyln.normalize.peak(np.stack([left, right], axis=1), -1.0)
    np.testing.assert_allclose(both[:, :512], st._one(normed[:, 0]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(both[:, 512:], st._one(normed[:, 1]), rtol=1e-5, atol=1e-7)
    mono = OpenL3(str(ckpt), channels=1)
    assert mono.embed(left).shape[1] == 512 and mono.id != st.id
    with pytest.raises(Exception, match="mono .* or stereo"):
        st.embed(np.zeros((100, 3), np.float32))


def test_missing_weights_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    from metrics.embedders import EmbedderError
    from metrics.embedders.openl3 import OpenL3

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(EmbedderError, match=r"torchopenl3_mel256_music_512\.pth\.tar.*hub/checkpoints"):
        OpenL3()

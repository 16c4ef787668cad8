"""MERT loader (metrics/embedders/mert.py) on a tiny random HuBERT-architecture folder (loader_fixtures.mert_checkpoint).

What is checked is the loader's contract with MAD's code: the processor's input, ``hidden_states[24]`` of the whole
clip, the id MAD reads to call a number comparable to the paper, and the errors of a missing or unloadable folder.
MERT's own remote modelling code is not exercised (it cannot be obtained offline): docs/protocol.md, "MAD".
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from loader_fixtures import mert_checkpoint

pytest.importorskip("transformers", reason="transformers is not installed (pip install 'musiclm-eval[mert]')")
SR = 24000


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return mert_checkpoint(tmp_path_factory.mktemp("mert"))


def test_layer_24_frames_of_the_whole_clip_as_mad_reads_them(folder):
    import torch
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    from metrics.embedders import get_embedder
    from metrics.mad import MAD

    m = get_embedder("mert-v1-330m", str(folder))
    assert m.sample_rate == SR and m.dim == 16 and m.layer == 24 and m.id.startswith("mert-v1-330m-L24-")
    wave = np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32) * 0.1
    frames = m.embed(wave)
    model, proc = HubertModel.from_pretrained(folder).eval(), Wav2Vec2FeatureExtractor.from_pretrained(folder)
    with torch.no_grad():
        out = model(**proc(wave, sampling_rate=SR, return_tensors="pt"), output_hidden_states=True)
    assert len(out.hidden_states) == 25 and frames.shape == (((SR // 2 - 10) // 5 + 1 - 3) // 2 + 1, 16)
    np.testing.assert_allclose(frames, out.hidden_states[24][0].numpy(), rtol=1e-5, atol=1e-6)
    # hidden_states[24] is the top layer's output: the last hidden state is it (transformers 4: recorded after the
    # encoder's final layer norm) or its layer norm (transformers 5 records each layer's output by hooks)
    top = torch.as_tensor(frames)
    if not np.allclose(frames, out.last_hidden_state[0].numpy(), rtol=1e-5, atol=1e-6):
        with torch.no_grad():
            top = model.encoder.layer_norm(top)
    np.testing.assert_allclose(top.numpy(), out.last_hidden_state[0].numpy(), rtol=1e-5, atol=1e-5)
    # the processor's normalization is applied: a louder copy gives the same frames
    np.testing.assert_allclose(m.embed(wave * 4), frames, rtol=1e-4, atol=1e-5)
    assert MAD(m.id).comparable_to_paper()


def test_missing_or_unloadable_folders_say_what_is_needed(folder, tmp_path, monkeypatch):
    from metrics.embedders import EmbedderError
    from metrics.embedders.mert import MertEmbedder

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderError, match=r"m-a-p/MERT-v1-330M is not in the Hugging Face cache.*huggingface-cli download"):
        MertEmbedder()
    with pytest.raises(EmbedderError, match="not a MERT folder"):
        MertEmbedder(str(tmp_path))
    with pytest.raises(EmbedderError, match=r"layer 30 does not exist \(hidden states 0\.\.24\)"):
        MertEmbedder(str(folder), layer=30)
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "mert_model", "auto_map": {
        "AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"}}))
    (remote / "preprocessor_config.json").write_text((folder / "preprocessor_config.json").read_text())
    with pytest.raises(EmbedderError, match=r"cannot load MERT offline.*MERT's modelling code.*nnAudio"):
        MertEmbedder(str(remote))

"""Embedder registry, the mel embedder, real TF-Hub loading of tiny SavedModels, torch checkpoints."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from metrics.audio import Clip
from metrics.embedders import Embedder, EmbedderError, available_embedders, get_embedder, register_embedder
from metrics.embedders.mel import MelEmbedder
from metrics.embedders.torch_ckpt import LogMelConvConfig, LogMelConvNet, save_embedder_checkpoint
from metrics.extract import embed_clips

SR = 16000


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


# ----------------------------------------------------------------------------- registry


def test_registry_lists_builtin_and_lazy_entries():
    names = available_embedders()
    assert {"mel", "vggish", "trill", "torch", "classifier", "mulan-ref"} <= set(names)
    with pytest.raises(EmbedderError, match=r"unknown embedder 'nope'; available: .*mel.*vggish"):
        get_embedder("nope")


def test_register_callable_and_lazy_string():
    class Const(Embedder):
        name, id, sample_rate, dim = "const", "const-0", SR, 3

        def embed(self, wave):
            return np.ones((2, 3), np.float32)

    register_embedder("const-test", lambda path=None, device="cpu": Const())
    assert get_embedder("const-test").embed(noise(1)).shape == (2, 3)
    register_embedder("mel-alias-test", "metrics.embedders.mel:factory")
    assert isinstance(get_embedder("mel-alias-test"), MelEmbedder)
    register_embedder("broken-test", "metrics.no_such_module:factory")
    with pytest.raises(EmbedderError, match="embedder 'broken-test' is registered as metrics.no_such_module:factory "
                                            "but it cannot be imported"):
        get_embedder("broken-test")
    with pytest.raises(ValueError, match="contain no ':'"):
        register_embedder("torch:x", Const)


def test_importing_metrics_loads_neither_tensorflow_nor_musiclm_ref():
    code = ("import sys, metrics.embedders, metrics.fad, metrics.extract, metrics.cache, metrics.commands; "
            "print(sorted(m for m in ('tensorflow', 'tensorflow_hub', 'musiclm_ref', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


# ----------------------------------------------------------------------------- mel


def test_mel_embedder_is_deterministic_with_documented_framing():
    mel = get_embedder("mel")
    assert (mel.sample_rate, mel.dim, mel.min_seconds) == (16000, 128, 1.0)
    a = mel.embed(noise(3.2))
    assert a.shape == (5, 128) and a.dtype == np.float32  # 1 s windows, 0.5 s hop: floor((3.2-1)/0.5)+1
    np.testing.assert_array_equal(a, MelEmbedder().embed(noise(3.2)))
    assert mel.id == MelEmbedder().id and mel.id.startswith("mel-")
    louder = mel.embed(noise(3.2) * 4)
    # mean log-mel rises by log(16) in every band for a 4x louder (16x power) signal; std is unchanged
    np.testing.assert_allclose(louder[:, :64] - a[:, :64], np.log(16.0), atol=1e-3)
    np.testing.assert_allclose(louder[:, 64:], a[:, 64:], atol=1e-3)
    with pytest.raises(EmbedderError, match="the mel embedder has no weights"):
        get_embedder("mel", path="/some/dir")
    # each frame is exactly the embedding of its own 1 s window (0.5 s hop)
    wave = noise(3.2)
    for k in range(5):
        np.testing.assert_allclose(a[k], mel.embed(wave[8000 * k: 8000 * k + 16000])[0], rtol=1e-6, atol=1e-6)


def test_mel_filterbank_matches_torchaudio():
    import torchaudio

    from metrics.embedders.mel import mel_filterbank

    ours = mel_filterbank(257, 0.0, 8000.0, 64, 16000)
    np.testing.assert_allclose(ours, torchaudio.functional.melscale_fbanks(257, 0.0, 8000.0, 64, 16000).numpy(), atol=1e-5)


# ----------------------------------------------------------------------------- TF-Hub (tiny SavedModels)

VGGISH_WIN = 15360  # 0.96 s at 16 kHz, hop = window, like VGGish


def vggish_math(wave: np.ndarray, proj: np.ndarray) -> np.ndarray:
    n = len(wave) // VGGISH_WIN
    frames = np.abs(wave[: n * VGGISH_WIN].reshape(n, VGGISH_WIN)).reshape(n, 128, 120).mean(-1)
    return frames @ proj


@pytest.fixture(scope="module")
def tiny_tfhub(tmp_path_factory):
    """Two SavedModels with the call signatures of VGGish and TRILL v3, saved with tf.saved_model.save."""
    pytest.importorskip("tensorflow_hub")
    import tensorflow as tf

    class TinyVGGish(tf.Module):
        def __init__(self, seed):
            super().__init__()
            self.proj = tf.Variable(np.random.default_rng(seed).standard_normal((128, 128)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            frames = tf.signal.frame(waveform, VGGISH_WIN, VGGISH_WIN)
            return tf.matmul(tf.reduce_mean(tf.reshape(tf.abs(frames), [-1, 128, 120]), axis=-1), self.proj)

    class TinyTrill(tf.Module):
        def __init__(self):
            super().__init__()
            self.proj = tf.Variable(np.random.default_rng(2).standard_normal((100, 512)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([], tf.int32)])
        def __call__(self, samples, sample_rate):
            f = tf.signal.frame(samples, 8000, 8000)
            x = tf.reduce_mean(tf.reshape(tf.abs(f), [tf.shape(f)[0], tf.shape(f)[1], 100, 80]), axis=-1)
            return {"embedding": tf.einsum("bfk,kd->bfd", x, self.proj), "layer19": x}

    root = tmp_path_factory.mktemp("tfhub")
    paths = {"vggish": root / "vggish", "vggish2": root / "vggish2", "trill": root / "trill"}
    v1, v2 = TinyVGGish(0), TinyVGGish(1)
    tf.saved_model.save(v1, str(paths["vggish"]))
    tf.saved_model.save(v2, str(paths["vggish2"]))
    tf.saved_model.save(TinyTrill(), str(paths["trill"]))
    paths["proj"] = v1.proj.numpy()
    return paths


def test_vggish_loads_through_tensorflow_hub_and_pads_to_whole_seconds(tiny_tfhub):
    emb = get_embedder("vggish", path=str(tiny_tfhub["vggish"]))
    assert (emb.name, emb.sample_rate, emb.dim, emb.pad_to_seconds) == ("vggish", 16000, 128, 1.0)
    wave = noise(3.0)
    np.testing.assert_allclose(emb.embed(wave), vggish_math(wave, tiny_tfhub["proj"]), rtol=1e-4, atol=1e-5)
    # a 0.5 s clip is zero-padded to 1 s, which yields exactly one 0.96 s frame
    out = embed_clips([Clip("short", noise(0.5), SR)], emb)
    padded = np.pad(noise(0.5), (0, SR // 2))
    assert out["short"].shape == (1, 128)
    np.testing.assert_allclose(out["short"], vggish_math(padded, tiny_tfhub["proj"]), rtol=1e-4, atol=1e-5)
    # the weights hash is part of the id: other weights, other cache keys
    other = get_embedder("vggish", path=str(tiny_tfhub["vggish2"]))
    assert emb.id.startswith("vggish-") and other.id != emb.id


def test_trill_uses_the_embedding_output(tiny_tfhub):
    emb = get_embedder("trill", path=str(tiny_tfhub["trill"]))
    assert emb.dim == 512
    out = emb.embed(noise(2.0))
    assert out.shape == (4, 512) and out.dtype == np.float32


def test_unreachable_model_says_how_to_provide_it(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_hub")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hubcache"))
    with pytest.raises(EmbedderError, match=r"nodir does not exist\. To use vggish offline: .*"
                                            r"vggish/1\?tf-hub-format=compressed.*--embedder-path DIR.*TFHUB_CACHE_DIR"):
        get_embedder("vggish", path=str(tmp_path / "nodir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbedderError, match=r"empty is not a SavedModel directory \(no saved_model.pb\)"):
        get_embedder("trill", path=str(tmp_path / "empty"))
    # a handle that cannot be resolved (the .invalid TLD never resolves) fails with the same advice
    with pytest.raises(EmbedderError, match=r"could not load vggish from https://tfhub.invalid/vggish/1 .*--embedder-path"):
        get_embedder("vggish", path="https://tfhub.invalid/vggish/1")


# ----------------------------------------------------------------------------- torch checkpoints


def test_torch_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = LogMelConvNet(LogMelConvConfig(dim=16, n_classes=4))
    ckpt = save_embedder_checkpoint(tmp_path / "m.pt", model, name="tiny-cnn",
                                    model_ref="metrics.embedders.torch_ckpt:LogMelConvNet", sample_rate=SR, dim=16,
                                    min_seconds=1.0)
    emb = get_embedder(f"torch:{ckpt}")
    assert emb.name == "tiny-cnn" and emb.id.startswith("tiny-cnn-") and emb.dim == 16
    waves = [noise(2.0, 1), noise(2.0, 2), noise(3.0, 3)]
    got = emb.embed_batch(waves)
    with torch.no_grad():
        want = [model.eval().embed_frames(torch.from_numpy(w)[None])[0].numpy() for w in waves]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert got[2].shape == (5, 16)
    # retrained weights → different id
    torch.manual_seed(1)
    ckpt2 = save_embedder_checkpoint(tmp_path / "m2.pt", LogMelConvNet(LogMelConvConfig(dim=16, n_classes=4)),
                                     name="tiny-cnn", model_ref="metrics.embedders.torch_ckpt:LogMelConvNet",
                                     sample_rate=SR, dim=16)
    assert get_embedder("torch", path=str(ckpt2)).id != emb.id


def test_torch_checkpoint_errors(tmp_path):
    with pytest.raises(EmbedderError, match="the torch embedder needs a checkpoint"):
        get_embedder("torch")
    with pytest.raises(EmbedderError, match="nothere.pt: checkpoint not found"):
        get_embedder(f"torch:{tmp_path / 'nothere.pt'}")
    torch.save({"format": "musiclm-eval/torch-embedder/1", "embedder": {"name": "x", "model": "os:system"},
                "config": {}, "state_dict": {}}, tmp_path / "evil.pt")
    with pytest.raises(EmbedderError, match="model 'os:system' is not in a trusted package"):
        get_embedder(f"torch:{tmp_path / 'evil.pt'}")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(EmbedderError, match="plain.pt: not a musiclm-eval embedder checkpoint"):
        get_embedder(f"torch:{tmp_path / 'plain.pt'}")
    torch.save({"obj": Clip("a", np.zeros(3, np.float32), SR)}, tmp_path / "pickled.pt")
    with pytest.raises(EmbedderError, match="pickled.pt: not a loadable torch checkpoint"):  # weights_only=True
        get_embedder(f"torch:{tmp_path / 'pickled.pt'}")


def test_tensorflow_after_the_preload_leaves_torchvision_and_dynamo_importable():
    """``import tensorflow`` then ``import torch._dynamo`` (triton) segfaults here; the loaders call
    ``preload_torch_extensions`` before TensorFlow, after which both orders of use work in one process."""
    pytest.importorskip("tensorflow")
    import os
    import subprocess
    import sys

    code = ("from metrics.embedders.tfhub import preload_torch_extensions; preload_torch_extensions(); "
            "import tensorflow, torch._dynamo, importlib.util; "
            "importlib.util.find_spec('torchvision') and __import__('torchvision.ops'); print('ok')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]

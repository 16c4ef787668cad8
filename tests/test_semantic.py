"""Semantic tokenizer: 25 Hz frame counts, determinism, token range, the HF path with a tiny saved
Wav2Vec2 (layer honoured, numeric parity with the model's own hidden states), save/load, clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from musiclm_ref.semantic import (
    FRAME_RATE,
    HFFeatures,
    LogMelFeatures,
    SemanticError,
    SemanticTokenizer,
    load_tokenizer,
    n_frames,
)
from musiclm_ref.train.semantic import fit_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread per module


def music(seconds=2.0, sr=24000, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    notes = 220 * 2 ** (rng.integers(0, 12, size=int(seconds * 4) + 1) / 12)
    f = notes[(t * 4).astype(int)]
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def tok() -> SemanticTokenizer:
    return fit_tokenizer([(music(seed=s), 24000) for s in range(4)], k=16, iters=5, seed=0)


@pytest.mark.parametrize(("n", "sr"), [(1, 24000), (959, 24000), (960, 24000), (961, 24000), (24000, 24000),
                                       (10 * 24000, 24000), (16000, 16000), (44100 * 3 + 5, 44100), (8000, 8000)])
def test_25_hz_frame_count(tok, n, sr):
    wave = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1
    ids = tok.tokenize(wave, sr)
    assert len(ids) == math.ceil(n * 25 / sr) == n_frames(n, sr)
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < tok.vocab_size


def test_ten_seconds_is_250_tokens_half_the_codec_rate(tok):
    assert tok.frame_rate == FRAME_RATE == 25
    assert len(tok.tokenize(music(10.0), 24000)) == 250


def test_deterministic_and_same_audio_same_tokens(tok, tmp_path):
    from metrics.audio import load_audio, save_audio

    wave = music(3.0, seed=9)
    a = tok.tokenize(wave, 24000)
    assert np.array_equal(a, tok.tokenize(wave.copy(), 24000))
    # the same audio through a file (PCM-16 round trip) gives the same tokens almost everywhere
    clip = load_audio(save_audio(tmp_path / "x.wav", wave, 24000))
    assert np.mean(tok.tokenize(clip.wave, clip.sr) == a) > 0.95
    # and a refit with the same seed is the same tokenizer
    again = fit_tokenizer([(music(seed=s), 24000) for s in range(4)], k=16, iters=5, seed=0)
    assert again.id == tok.id and np.array_equal(again.tokenize(wave, 24000), a)


def test_tokens_follow_the_music(tok):
    wave = music(4.0, seed=3)
    ids = tok.tokenize(wave, 24000)
    assert len(set(ids.tolist())) > 3  # notes change every 0.25 s; tokens must too
    assert tok.centroids.shape == (16, tok.dim) and tok.vocab_size == 16


def test_save_load_round_trip(tok, tmp_path):
    path = tok.save(tmp_path / "semantic_tokenizer.pt")
    back = load_tokenizer(path)
    assert back.id == tok.id and back.id.startswith("semantic-logmel-")
    wave = music(2.0, seed=5)
    assert np.array_equal(back.tokenize(wave, 24000), tok.tokenize(wave, 24000))
    assert load_tokenizer(tmp_path).id == tok.id  # a checkpoint directory works too


def test_logmel_features_shape():
    f = LogMelFeatures()
    assert f(music(1.0), 24000).shape == (25, 128)


def test_bad_inputs_have_clear_errors(tok, tmp_path):
    with pytest.raises(SemanticError, match="1-D mono"):
        tok.tokenize(np.zeros((2, 100), np.float32), 24000)
    with pytest.raises(SemanticError, match="zero samples"):
        tok.tokenize(np.zeros(0, np.float32), 24000)
    with pytest.raises(SemanticError, match="NaN/Inf"):
        tok.tokenize(np.array([0.0, np.nan], np.float32), 24000)
    with pytest.raises(SemanticError, match="floating point"):
        tok.tokenize(np.zeros(100, np.int16), 24000)
    with pytest.raises(SemanticError, match="positive integer"):
        tok.tokenize(np.zeros(100, np.float32), 0)
    with pytest.raises(SemanticError, match="checkpoint not found"):
        load_tokenizer(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"format": "musiclm-eval/codec/1"}, bad)
    with pytest.raises(SemanticError, match=r"bad.pt: not a semantic tokenizer checkpoint"):
        load_tokenizer(bad)
    with pytest.raises(SemanticError, match="only 50 feature frames for k=64"):
        fit_tokenizer([(music(2.0), 24000)], k=64)


# -- the real path: a local transformers model ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_w2v(tmp_path_factory):
    pytest.importorskip("transformers")
    from training_fixtures import save_tiny_wav2vec2

    out = tmp_path_factory.mktemp("w2v")
    return out, save_tiny_wav2vec2(out)


def test_hf_features_match_the_models_own_hidden_states(tiny_w2v):
    path, model = tiny_w2v
    wave16 = music(2.0, sr=16000, seed=1)
    feats = HFFeatures(path, layer=2)
    got = feats(wave16, 16000)
    assert got.shape == (50, 32)
    x = torch.from_numpy(wave16)
    with torch.no_grad():
        h = model(((x - x.mean()) / (x.std() + 1e-7))[None], output_hidden_states=True).hidden_states[2][0]
    assert h.shape[0] == 99  # wav2vec2's valid-conv frame count for 2 s; pooled to 50 frames at 25 Hz
    expected = torch.nn.functional.adaptive_avg_pool1d(h.T[None], 50)[0].T
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_hf_layer_option_is_honoured(tiny_w2v):
    path, _ = tiny_w2v
    wave = music(1.0, seed=2)
    a, b = HFFeatures(path, layer=1)(wave, 24000), HFFeatures(path, layer=3)(wave, 24000)
    assert a.shape == b.shape == (25, 32)
    assert not np.allclose(a, b)
    assert HFFeatures(path, layer=1).id != HFFeatures(path, layer=3).id
    with pytest.raises(SemanticError, match=r"layer 4 out of range; this model has hidden states 0..3"):
        HFFeatures(path, layer=4)


def test_hf_tokenizer_round_trip_and_weight_check(tiny_w2v, tmp_path):
    import shutil

    import transformers

    path, _ = tiny_w2v
    tok = fit_tokenizer([(music(seed=s), 24000) for s in range(3)], HFFeatures(path, layer=2), k=8, iters=4, seed=0)
    assert tok.id.startswith("semantic-hf-wav2vec2-L2-")
    saved = tok.save(tmp_path / "tok.pt")
    wave = music(1.5, seed=4)
    ids = tok.tokenize(wave, 24000)
    assert len(ids) == 38 and ids.max() < 8
    assert np.array_equal(load_tokenizer(saved).tokenize(wave, 24000), ids)
    # the model directory moved: pass its new place
    moved = tmp_path / "moved"
    shutil.copytree(path, moved)
    assert np.array_equal(load_tokenizer(saved, hf_path=moved).tokenize(wave, 24000), ids)
    # different weights: refuse rather than produce tokens from another model
    other = tmp_path / "other"
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config.from_pretrained(path)).save_pretrained(other)
    with pytest.raises(SemanticError, match="model weights differ"):
        load_tokenizer(saved, hf_path=other)


def test_hf_bad_directory(tmp_path):
    with pytest.raises(SemanticError, match="not a directory"):
        HFFeatures(tmp_path / "none")
    with pytest.raises(SemanticError, match="no config.json"):
        HFFeatures(tmp_path)


# -- the shipped tiny tokenizer and the CLI ------------------------------------------------------


def test_shipped_tokenizer_on_held_out_corpus_clips(small_corpus):
    from metrics.audio import load_dir
    from musiclm_ref.semantic import load_memorization_tokenizer

    assert load_tokenizer().features.kind == "musicnn"  # the model's tokenizer since issue 31
    tok = load_memorization_tokenizer()  # the log-mel one, what the memorization audit's semantic-ref means
    assert tok.id.startswith("semantic-logmel-")
    assert tok.vocab_size == 256 and tok.centroids.shape == (256, 128) and tok.frame_rate == 25
    assert tok.metadata["data_hash"] and tok.metadata["command"].startswith("musiclm-eval train semantic")
    clips = load_dir(small_corpus).clips[:4]  # 4 s each
    seqs = [tok.tokenize(c.wave, c.sr) for c in clips]
    assert all(len(s) == 100 and s.dtype == np.int64 and 0 <= s.min() and s.max() < 256 for s in seqs)
    assert np.array_equal(tok.tokenize(clips[0].wave, clips[0].sr), seqs[0])
    # a real vocabulary: several distinct tokens per clip, and different clips use different tokens
    assert all(len(set(s.tolist())) >= 5 for s in seqs)
    assert len(set(np.concatenate(seqs).tolist())) > 20


def test_memorization_hook_resolves():
    import importlib
    from importlib.metadata import entry_points

    from musiclm_ref.semantic import MEMORIZATION, load_memorization_tokenizer

    module, attr = MEMORIZATION.split(":")
    assert getattr(importlib.import_module(module), attr) is load_memorization_tokenizer
    # the installed entry point the registry reads names the same loader (pyproject.toml)
    assert [e.value for e in entry_points(group="musiclm_eval.tokenizers") if e.name == "semantic-ref"] == [MEMORIZATION]


def test_train_semantic_cli(small_corpus, tmp_path):
    import json

    from click.testing import CliRunner

    from benchmarks.cli import main

    out = tmp_path / "ckpt"
    res = CliRunner().invoke(main, ["train", "semantic", "--data", str(small_corpus), "--checkpoint", str(out), "--k", "16",
                                    "--steps", "4", "--seed", "3", "--json", "-"])
    assert res.exit_code == 0, res.output
    entry = json.loads(res.output)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["semantic_tokenizer.pt"]["data_hash"] == entry["data_hash"]
    assert entry["seed"] == 3 and entry["metrics"]["k"] == 16
    tok = load_tokenizer(out)
    assert tok.vocab_size == 16 and tok.id == entry["tokenizer_id"]
    bad = CliRunner().invoke(main, ["train", "semantic", "--data", str(tmp_path), "--checkpoint", str(out)])
    assert bad.exit_code != 0 and "no audio files" in bad.output

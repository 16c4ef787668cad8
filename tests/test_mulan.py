"""MuLan-style joint embedding: tokenizer, the small API, windows, checkpoints, training, shipped figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from musiclm_ref.mulan import (
    SHIPPED_CHECKPOINT,
    HashTokenizer,
    MuLan,
    MulanConfig,
    MulanError,
    load_mulan,
    save_mulan,
)
from musiclm_ref.train.mulan import recall_at_k

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread per module

TINY = MulanConfig(audio_channels=(4, 8), buckets=512, text_dim=16, text_heads=2)


def tiny_mulan(seed: int = 0) -> MuLan:
    torch.manual_seed(seed)
    return MuLan(TINY).eval()


def test_tokenizer_never_fails_and_is_deterministic():
    tok = HashTokenizer(512)
    odd = ["", "   ", "Ünïcödé métal 🎸!!", "x" * 500, "a b " * 200, "lo-fi\nhip\thop"]
    ids, mask = tok(odd)
    assert ids.shape[0] == len(odd) and (ids < 512).all() and (ids >= 0).all()
    assert mask.any(dim=1).all()  # every caption has at least one word (empty → <empty>)
    again, _ = HashTokenizer(512)(odd)
    assert torch.equal(ids, again)  # crc32, not the per-process salted hash()
    assert tok.word_tokens("piano", None) == tok.word_tokens("piano", None)
    with pytest.raises(TypeError, match="list of captions"):
        tok("a single string")


def test_embeddings_are_l2_normalized_with_the_documented_shapes():
    m = tiny_mulan()
    t = m.embed_text(["a calm piano piece", "fast drums", ""])
    assert t.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-5)
    rng = np.random.default_rng(0)
    one = m.embed_audio(rng.standard_normal(24000 * 3).astype(np.float32) * 0.1, 24000)
    assert one.shape == (1, 128)
    many = m.embed_audio([rng.standard_normal(16000 * n).astype(np.float32) * 0.1 for n in (2, 5)], 16000)
    assert many.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, rtol=1e-5)


def test_audio_embedding_is_the_normalized_mean_of_10s_windows_at_1s_stride():
    m = tiny_mulan()
    wave = np.random.default_rng(1).standard_normal(16000 * 12).astype(np.float32) * 0.1
    win = m.windows(wave)
    assert win.shape == (3, 160000)  # starts at 0, 1, 2 s
    np.testing.assert_array_equal(win[2], wave[32000:192000])
    per = m.window_embeddings(wave, 16000)
    mean = per.mean(0)
    np.testing.assert_allclose(m.embed_audio(wave, 16000)[0], mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip_and_errors(tmp_path):
    m = tiny_mulan()
    path = save_mulan(m, tmp_path / "m.pt", meta={"seed": 0})
    back = load_mulan(path)
    assert back.meta == {"seed": 0}
    np.testing.assert_allclose(back.embed_text(["soft strings"]), m.embed_text(["soft strings"]), rtol=1e-6)
    wave = np.random.default_rng(2).standard_normal(16000).astype(np.float32)
    np.testing.assert_allclose(back.embed_audio(wave, 16000), m.embed_audio(wave, 16000), rtol=1e-5, atol=1e-6)
    with pytest.raises(MulanError, match="nope.pt: MuLan checkpoint not found"):
        load_mulan(tmp_path / "nope.pt")
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(MulanError, match="other.pt: not a MuLan checkpoint \\(format 'something-else'"):
        load_mulan(other)


def test_recall_at_k_on_constructed_embeddings():
    eye = np.eye(120)
    assert recall_at_k(eye, eye, k=1) == 1.0
    assert recall_at_k(eye, np.roll(eye, 1, axis=0), k=1) == 0.0  # every caption's best clip is another one


def test_training_loop_lowers_the_loss(small_corpus):
    from musiclm_ref.train.mulan import MulanTrainConfig, fit_mulan

    torch.set_num_threads(1)
    res = fit_mulan(small_corpus, MulanTrainConfig(epochs=8, seed=0, batch_size=8, model=TINY, crop_frames=100))
    assert np.mean(res.losses[-3:]) < np.mean(res.losses[:3])
    assert res.metrics["n"] >= 2 and -1 <= res.metrics["mcc_own"] <= 1


def test_train_mulan_writes_the_checkpoint_and_its_manifest_entry(small_corpus, tmp_path):
    """The one trainer contract: train_mulan(data, out, cfg) saves ``out``, its sidecar manifest, and returns the entry."""
    from metrics.artifacts import manifest_entries
    from musiclm_ref.train.mulan import MulanTrainConfig, train_mulan

    torch.set_num_threads(1)
    out = tmp_path / "m.pt"
    entry = train_mulan(small_corpus, out, MulanTrainConfig(epochs=1, batch_size=8, model=TINY, crop_frames=100, command="c"))
    assert manifest_entries(tmp_path / "m.json") == {"m": entry}
    assert entry["command"] == "c" and entry["epochs"] == 1 and entry["metrics"]["n_train"] == 20
    assert load_mulan(out).cfg == TINY


def test_shipped_checkpoint_retrieves_unseen_captions_and_registers(small_corpus):
    """Measured on the fixture corpus (seed 1234; the shipped model trained on the seed-7 corpus of its
    manifest): captions retrieve their own clip far above chance and match it better than other clips.
    A missing or unloadable shipped checkpoint fails here."""
    from metrics.embedders import get_embedder
    from musiclm_ref.train.mulan import load_corpus

    model = load_mulan()
    corpus = load_corpus(small_corpus, model)
    model.eval()
    with torch.no_grad():
        audio = model.audio_latent(corpus.mels).numpy()
    text = model.embed_text(corpus.captions)
    n = len(text)
    recall = recall_at_k(text, audio, k=5, n_candidates=n)
    rng = np.random.default_rng(0)
    chance = np.mean([recall_at_k(text, audio[rng.permutation(n)], k=5, n_candidates=n) for _ in range(50)])
    assert recall >= 0.7 and recall >= chance + 0.4, (recall, chance)  # measured 0.92 vs 0.22
    sims = text @ audio.T
    own, other = np.trace(sims) / n, (sims.sum() - np.trace(sims)) / (n * (n - 1))
    assert own - other >= 0.25, (own, other)  # measured 0.457 vs −0.009
    manifest = json.loads(SHIPPED_CHECKPOINT.with_suffix(".json").read_text())
    assert manifest["command"].startswith("musiclm-eval train mulan")
    assert SHIPPED_CHECKPOINT.stat().st_size < 3 * 2**20
    emb = get_embedder("mulan-ref")
    out = emb.embed(np.random.default_rng(0).standard_normal(16000 * 11).astype(np.float32) * 0.1)
    assert out.shape == (2, 128)
    assert emb.id.startswith("mulan-ref:")

"""The musicnn semantic features (``MusicnnFeatures``): musicnn's frame-level activations over a whole clip,
pooled to the tokenizer's 25 Hz.

Properties: one token per 40 ms for any length (``n_frames``); deterministic; a saved tokenizer loads to the
same tokens; the whole-sequence path agrees with the 187-frame patch musicnn was run on wherever the patch
edges are out of the receptive field (and differs near them, so the check can fail); a checkpoint whose
musicnn weights changed is refused; ``train semantic --features musicnn-msd`` writes a musicnn tokenizer,
conflicts with ``--hf-model``, and a resume left by log-mel features refuses musicnn ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from metrics.audio import save_audio
from musiclm_ref.data.render import render
from musiclm_ref.data.specs import sample_spec
from musiclm_ref.semantic import MusicnnFeatures, SemanticError, SemanticTokenizer, features_from_dict, n_frames

SR = 16000
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def features():
    return MusicnnFeatures("musicnn-msd")


@pytest.fixture(scope="module")
def tokenizer(features):
    from musiclm_ref.train.semantic import fit_tokenizer

    clips = [(render(sample_spec(31, i), 3.0, SR), SR) for i in range(3)]
    return fit_tokenizer(clips, features, k=8, iters=5, seed=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("musicnn_corpus")
    for i in range(3):
        save_audio(root / f"c{i}.wav", render(sample_spec(32, i), 2.0, SR), SR)
    return root


def test_features_shape_groups_and_id(features):
    from metrics.embedders.musicnn import FRONTEND_VERSION

    assert features.kind == "musicnn" and features.groups == (561, 192) and features.dim == 753
    assert features.weights_sha256[:16] in features.id and f"fe{FRONTEND_VERSION}" in features.id
    x = features(render(sample_spec(31, 5), 2.0, SR), SR)
    assert x.shape == (50, 753) and x.dtype == np.float32 and np.isfinite(x).all() and x.std() > 0


@pytest.mark.parametrize(("seconds", "sr"), [(1.0, 16000), (10.3, 24000), (2.51, 22050), (0.1, 48000)])
def test_one_token_per_40_ms_for_any_length(tokenizer, seconds, sr):
    wave = render(sample_spec(31, 7), seconds, sr)
    tokens = tokenizer.tokenize(wave, sr)
    assert len(tokens) == n_frames(len(wave), sr) == int(np.ceil(len(wave) * 25 / sr))
    assert tokens.dtype == np.int64 and tokens.min() >= 0 and tokens.max() < tokenizer.vocab_size
    if seconds == 10.3:
        assert len(tokens) == 258 and len(np.unique(tokens)) > 1


def test_deterministic_and_checkpoint_round_trip(tokenizer, tmp_path):
    wave = render(sample_spec(31, 8), 4.0, SR)
    a, b = tokenizer.tokenize(wave, SR), tokenizer.tokenize(wave.copy(), SR)
    assert np.array_equal(a, b)
    tokenizer.save(tmp_path / "semantic_tokenizer.pt")
    loaded = SemanticTokenizer.load(tmp_path)
    assert loaded.features.kind == "musicnn" and loaded.id == tokenizer.id
    assert np.array_equal(loaded.tokenize(wave, SR), a)


def test_whole_clip_frames_match_the_patch_path_inside_the_receptive_field(features):
    from metrics.embedders.musicnn import PATCH_FRAMES, clip_log_mel, run_frames

    logmel = clip_log_mel(render(sample_spec(31, 9), 6.0, 24000), 24000)  # 376 frames
    start = 150
    whole = run_frames(features.loaded, logmel)
    patch = run_frames(features.loaded, logmel[start : start + PATCH_FRAMES])
    assert whole.shape == (len(logmel), 753) and patch.shape == (PATCH_FRAMES, 753)
    inner = slice(80, PATCH_FRAMES - 80)
    # float32 only: the convolutions sum in another order for another length (seen: ≤ 1.5e-4 on values up to ~80)
    np.testing.assert_allclose(patch[inner], whole[start + inner.start : start + inner.stop], atol=1e-4, rtol=1e-4)
    # near the patch edge the zero padding is in view: the two paths must differ there (the check can fail)
    assert np.abs(patch[0] - whole[start]).max() > 1e-2


def test_short_clip_and_changed_weights_are_refused(features):
    with pytest.raises(SemanticError, match="too short for musicnn's STFT"):
        features(np.zeros(300, np.float32), 24000)
    d = features.to_dict()
    assert features_from_dict(d).id == features.id
    with pytest.raises(SemanticError, match="weights differ"):
        features_from_dict({**d, "weights_sha256": "0" * 64})
    with pytest.raises(SemanticError, match="front end version differ"):
        features_from_dict({**d, "frontend_version": d["frontend_version"] + 1})


def test_cli_fits_a_musicnn_tokenizer(corpus, tmp_path):
    from benchmarks.cli import main
    from musiclm_ref.semantic import load_tokenizer

    out = tmp_path / "tok"
    res = CliRunner().invoke(main, ["train", "semantic", "--data", str(corpus), "--checkpoint", str(out),
                                    "--features", "musicnn-msd", "--k", "8", "--steps", "2"])
    assert res.exit_code == 0, res.output
    tok = load_tokenizer(out)
    assert tok.features.kind == "musicnn" and tok.features.name == "musicnn-msd" and tok.vocab_size == 8
    assert tok.metadata["features"]["kind"] == "musicnn" and "musicnn-msd" in tok.id
    bad = CliRunner().invoke(main, ["train", "semantic", "--data", str(corpus), "--checkpoint", str(tmp_path / "x"),
                                    "--features", "musicnn-mtt", "--hf-model", str(corpus)])
    assert bad.exit_code == 2 and "--hf-model" in bad.output and "--features" in bad.output


def test_a_resume_left_by_logmel_features_refuses_musicnn_ones(corpus, tmp_path):
    from musiclm_ref.train.semantic import SemanticTrainConfig, train_semantic

    def stop(line: str) -> None:
        raise KeyboardInterrupt(line)

    with pytest.raises(KeyboardInterrupt):
        train_semantic(corpus, tmp_path, SemanticTrainConfig(k=8, iters=2, checkpoint_every=1, progress=stop))
    assert (tmp_path / "semantic_tokenizer.pt.resume.features").is_file()
    with pytest.raises(SemanticError, match="another config or data"):
        train_semantic(corpus, tmp_path, SemanticTrainConfig(k=8, iters=2, checkpoint_every=1, features="musicnn-msd"))

"""musicnn port: the front end against librosa, patching, the shipped weights, the float16 quirk.

The parity of the network with musicnn's own TF graph is tests/test_musicnn_parity.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from metrics.embedders import available_embedders, get_embedder
from metrics.embedders.musicnn import (
    CHECKPOINT_DIR,
    MIN_SAMPLES,
    PATCH_FRAMES,
    log_mel,
    mel_power,
    patches,
    slaney_filterbank,
)


@pytest.fixture(scope="module")
def noise_clip() -> np.ndarray:
    return (0.5 * np.random.default_rng(3).standard_normal(16000 * 4)).astype(np.float32)


def test_slaney_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    ours = slaney_filterbank(16000, 512, 96)
    theirs = librosa.filters.mel(sr=16000, n_fft=512, n_mels=96, htk=False, norm="slaney")
    assert ours.shape == theirs.shape == (96, 257)
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()
    # a different size too: the formula, not a table for one configuration
    other = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=40, fmin=30.0, fmax=9000.0)
    assert np.abs(slaney_filterbank(22050, 1024, 40, 30.0, 9000.0) - other).max() <= 1e-5 * other.max()


def test_mel_power_matches_librosa_with_reflect_padding(noise_clip):
    librosa = pytest.importorskip("librosa")
    kw = dict(y=noise_clip, sr=16000, hop_length=256, n_fft=512, n_mels=96)
    reflect = librosa.feature.melspectrogram(**kw, pad_mode="reflect").T
    ours = mel_power(noise_clip)
    assert ours.shape == reflect.shape == (1 + len(noise_clip) // 256, 96)
    assert np.abs(ours - reflect).max() <= 1e-5 * reflect.max()
    # librosa >= 0.10's constant padding differs at the edges: the port follows training time
    constant = librosa.feature.melspectrogram(**kw, pad_mode="constant").T
    assert np.abs(ours[0] - constant[0]).max() > 1e-3 * reflect.max()


def test_log_mel_keeps_float16_rounding_and_logs_in_float32(noise_clip):
    librosa = pytest.importorskip("librosa")
    mel = librosa.feature.melspectrogram(y=noise_clip, sr=16000, hop_length=256, n_fft=512, n_mels=96, pad_mode="reflect").T
    expected = np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)
    diff = np.abs(log_mel(noise_clip) - expected)
    # float32 (librosa) vs float64 (ours) mel power can land on either side of a float16 rounding
    # boundary in a few bins; elsewhere the two agree to float32 precision
    assert (diff > 1e-5).mean() < 1e-3
    assert diff.max() < np.log10(1 + 2**-10) * 1.01  # at most one float16 ulp apart
    with np.errstate(over="ignore"):
        quirk = np.log10(10000 * mel.astype(np.float16) + 1)  # musicnn's extractor, literally
    assert np.isinf(quirk).any() and np.isfinite(log_mel(noise_clip)).all()


def test_patches_are_non_overlapping_187_frame_windows():
    x = np.arange(626 * 96, dtype=np.float32).reshape(626, 96)  # a 10 s clip's frames
    p = patches(x)
    assert p.shape == (3, PATCH_FRAMES, 96)
    assert np.array_equal(p[1], x[187:374]) and np.array_equal(p[2], x[374:561])
    assert patches(x[:186]).shape == (0, PATCH_FRAMES, 96)
    assert len(log_mel(np.zeros(MIN_SAMPLES, np.float32))) == PATCH_FRAMES  # the shortest clip gives one patch


def test_shipped_checkpoints_have_licence_and_manifest():
    manifest = json.loads((CHECKPOINT_DIR / "manifest.json").read_text())
    assert manifest["source"] == "musicnn==0.1.0" and len(manifest["wheel_sha256"]) == 64
    assert "ISC" in manifest["licence"] and "Permission to use" in (CHECKPOINT_DIR / "LICENSE").read_text()
    for name in ("musicnn-mtt", "musicnn-msd"):
        assert name in available_embedders()
        assert (CHECKPOINT_DIR / manifest["models"][name]["file"]).is_file()


@pytest.mark.parametrize("name", ["musicnn-mtt", "musicnn-msd"])
def test_embedder_gives_one_200d_frame_per_patch(name, noise_clip):
    emb = get_embedder(name)
    assert emb.dim == 200 and emb.sample_rate == 16000 and emb.id.startswith(name)
    ten = np.tile(noise_clip, 3)[: 16000 * 10]
    out = emb.embed_batch([ten, noise_clip])
    assert out[0].shape == (3, 200) and out[1].shape == (1, 200)
    assert np.allclose(out[1], emb.embed(noise_clip), atol=1e-5)  # batching does not change a clip's frames
    assert np.isfinite(out[0]).all()


def test_embedder_rejects_a_path_that_is_not_a_musicnn_checkpoint(tmp_path):
    from metrics.embedders import EmbedderError

    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(EmbedderError, match="x.pt"):
        get_embedder("musicnn-mtt", str(bad))


def test_loud_and_quiet_versions_of_a_clip_get_different_tags():
    """The float16 quirk made every loud patch inf in musicnn's extractor; here loudness is heard."""
    from metrics.embedders.musicnn import load_tagger
    from musiclm_ref.data.render import render
    from musiclm_ref.data.specs import sample_spec

    wave = render(sample_spec(0, 3, "rock"), 6.0, 16000)
    loud = (0.9 * wave / np.abs(wave).max()).astype(np.float32)
    quiet = (0.03 * loud).astype(np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(10000 * mel_power(loud).astype(np.float16)).any()  # the quirk would hit this clip
    tagger = load_tagger("musicnn-mtt")
    a, b = tagger.tag(loud, 16000), tagger.tag(quiet, 16000)
    assert b["quiet"] > a["quiet"] + 0.1
    assert max(abs(a[k] - b[k]) for k in a) > 0.1
    assert tagger.window_logits(loud, 16000).shape == (2, 50)
    # a clip at another rate is resampled to 16 kHz first (same number of 3 s patches)
    from metrics.audio import resample

    assert tagger.window_logits(resample(loud, 16000, 24000), 24000).shape == (2, 50)


@pytest.mark.parametrize("name", ["musicnn-mtt", "musicnn-msd"])
def test_classifier_gives_window_logits_with_its_labels(name, noise_clip):
    from metrics.embedders import musicnn

    clf = getattr(musicnn, name.split("-")[1] + "_logits")()
    assert clf.activation == "sigmoid" and len(clf.labels) == clf.dim == 50
    assert clf.labels[:2] == (("guitar", "classical") if name == "musicnn-mtt" else ("rock", "pop"))
    z = clf.embed(noise_clip)
    assert z.shape == (1, 50)
    assert np.allclose(z, clf.window_logits(noise_clip, 16000), atol=1e-5)
    # the penultimate embedder and the logits come from one forward pass of the same weights
    assert clf.weights_sha256 == get_embedder(name).loaded.weights_sha256
    with pytest.raises(ValueError, match="shorter than one"):
        clf.window_logits(noise_clip[: MIN_SAMPLES - 1], 16000)


def test_tag_command_writes_file_tag_probabilities(tmp_path):
    from click.testing import CliRunner

    from benchmarks.cli import main
    from metrics.audio import save_audio
    from metrics.embedders.musicnn import load_tagger
    from musiclm_ref.data.render import render
    from musiclm_ref.data.specs import sample_spec

    wave = render(sample_spec(0, 1, "ambient"), 4.0, 16000)
    good = save_audio(tmp_path / "a.wav", 0.5 * wave / np.abs(wave).max(), 16000)
    short = save_audio(tmp_path / "short.wav", wave[:16000], 16000)
    out = tmp_path / "tags.json"
    res = CliRunner().invoke(main, ["tag", str(good), "--model", "musicnn-mtt", "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert list(doc) == [str(good)] and len(doc[str(good)]) == 50
    from metrics.audio import load_audio

    expected = load_tagger("musicnn-mtt").tag(load_audio(good, sr=16000).wave, 16000)
    assert all(abs(doc[str(good)][t] - p) < 1e-6 for t, p in expected.items())
    assert max(expected, key=expected.get) in res.output.split("\n")[0]
    res = CliRunner().invoke(main, ["tag", str(good), str(short)])
    assert res.exit_code != 0 and "short.wav" in res.output and "too short" in res.output
    res = CliRunner().invoke(main, ["tag", str(tmp_path), "--on-error", "skip", "--model", "musicnn-msd"])
    assert res.exit_code == 0 and "skipped" in res.output and "short.wav" in res.output


def test_tag_command_prints_json_to_stdout(tmp_path):
    from click.testing import CliRunner

    from benchmarks.cli import main
    from metrics.audio import save_audio

    wave = (0.3 * np.random.default_rng(0).standard_normal(16000 * 3)).astype(np.float32)
    f = save_audio(tmp_path / "noise.wav", wave, 16000)
    res = CliRunner().invoke(main, ["tag", str(f), "--json", "-"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc) == {str(f)} and abs(sum(doc[str(f)].values())) > 0 and all(0 <= p <= 1 for p in doc[str(f)].values())


@pytest.mark.filterwarnings("ignore::metrics.fad.SingularCovarianceWarning")
def test_score_with_musicnn_embedder_classifier_and_kad(small_corpus, tmp_path):
    """The pipeline resolves both registry names: FAD/KAD on the penultimate layer, KLD on the 50 tags."""
    import shutil

    from metrics.commands import compute_score
    from metrics.models import CLASSIFIERS, ModelSpec

    assert {"musicnn-mtt", "musicnn-msd"} <= set(CLASSIFIERS.names())
    assert ModelSpec("musicnn-msd", kind="classifier").build().labels[0] == "rock"
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    for d in (gen, ref):
        d.mkdir()
        for p in sorted(small_corpus.glob("*.wav"))[:4]:
            shutil.copy(p, d / p.name)
    doc = compute_score(gen, ref, None, embedders=("musicnn-mtt",), classifier="musicnn-mtt", joint=None,
                        n_boot=0, kad=True)
    assert doc["n_pairs"] == 4
    identical = [k for k in doc if k.startswith("kld") and not k.endswith(("_ci95", "_reason"))]
    assert identical and all(abs(doc[k]) < 1e-9 for k in identical if isinstance(doc[k], float))  # same audio: KLD 0
    assert "fad_musicnn-mtt" in doc and "kad_musicnn-mtt" in doc


def test_real_orchestral_recordings_are_tagged_classical():
    """Real recorded music (Debian's wesnoth-1.16-music, GPL-2+, Ogg Vorbis), excerpts cut here: the
    MagnaTagATune tagger hears an orchestra. Skips only when the package is not installed."""
    import soundfile as sf

    from benchmarks.real_music import real_pieces
    from metrics.audio import resample
    from metrics.embedders.musicnn import load_tagger

    files = [f for f in real_pieces() if sf.info(f).duration > 150]
    if len(files) < 8:
        pytest.skip(f"real orchestral recordings not installed: apt-get install wesnoth-1.16-music (found {len(files)})")
    tagger = load_tagger("musicnn-mtt")
    orchestral, top5 = [], 0
    for f in files[:8]:
        info = sf.info(f)
        w, sr = sf.read(f, start=60 * info.samplerate, frames=10 * info.samplerate, dtype="float32")
        p = tagger.tag(resample(w.mean(1) if w.ndim == 2 else w, sr, 16000), 16000)
        orchestral.append(max(p["classical"], p["strings"], p["violin"]))
        top5 += bool({"classical", "strings", "violin"} & set(sorted(p, key=p.get, reverse=True)[:5]))
        assert max(p, key=p.get) not in ("techno", "electronic", "beat", "dance"), (f, max(p, key=p.get))
    assert top5 >= 5, top5  # measured: 6 of 8 pieces (excerpts at 60 s)
    assert np.mean(orchestral) > 0.2, orchestral  # measured: 0.30

"""PaSST loader (metrics/embedders/passt.py) on a tiny random-weight hear21passt PaSST saved as the releases are."""

from __future__ import annotations

import numpy as np
import pytest
from loader_fixtures import passt_checkpoint

pytest.importorskip("hear21passt", reason="hear21passt is not installed (pip install 'musiclm-eval[passt]')")

SR = 32000


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return passt_checkpoint(tmp_path_factory.mktemp("passt") / "passt-tiny.pt")


def test_registered_classifier_gives_527_window_logits_at_32k(ckpt):
    from metrics.models import ModelSpec

    model = ModelSpec("passt", str(ckpt), kind="classifier").build()
    assert model.sample_rate == SR and model.activation == "sigmoid" and len(model.labels) == 527
    wave = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.1
    out = model.embed(wave)
    assert out.shape == (1, 527) and out.dtype == np.float32 and np.isfinite(out).all()
    again = ModelSpec("passt", str(ckpt), kind="classifier").build().embed(wave)
    np.testing.assert_array_equal(out, again)  # deterministic across loads (eval mode: no mel augmentation)


def test_logits_are_the_package_wrapper_on_the_same_window(ckpt):
    """The same numbers as hear21passt's own PasstBasicWrapper(mode="logits") assembled here from its classes."""
    import torch
    from hear21passt.models.passt import PaSST
    from hear21passt.models.preprocess import AugmentMelSTFT
    from hear21passt.wrapper import PasstBasicWrapper

    from metrics.embedders.passt import PasstLogits

    net = PaSST(img_size=(128, 998), stride=(10, 10), embed_dim=64, depth=1, num_heads=1, distilled=True, num_classes=527)
    net.load_state_dict(torch.load(ckpt, weights_only=True))
    mel = AugmentMelSTFT(n_mels=128, sr=SR, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192, htk=False,
                         fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)
    ref = PasstBasicWrapper(mel=mel, net=net, mode="logits").eval()
    wave = np.random.default_rng(1).standard_normal(3 * SR).astype(np.float32) * 0.1
    with torch.no_grad():
        expected = ref(torch.from_numpy(wave)[None])[0].numpy()
    np.testing.assert_allclose(PasstLogits("passt", str(ckpt)).embed(wave)[0], expected, rtol=1e-5, atol=1e-5)


def test_audiocraft_windowing_splits_without_padding_and_drops_short_tails(ckpt):
    import torch

    from metrics.embedders.passt import PasstLogits

    m = PasstLogits("passt", str(ckpt))
    wave = np.random.default_rng(2).standard_normal(int(23.1 * SR)).astype(np.float32)
    got = m.windows(wave)
    # audiocraft: torch.split(wav, 10 s) and keep segments longer than 0.15 s
    expected = [s.numpy() for s in torch.split(torch.from_numpy(wave), 10 * SR) if s.shape[-1] > int(0.15 * SR)]
    assert [len(w) for w in got] == [len(w) for w in expected] == [320000, 320000, 99200]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)  # no level change in this convention
    assert len(m.windows(wave[: int(10.1 * SR)])) == 1  # a 0.1 s tail is dropped


def test_stable_audio_windowing_overlaps_pads_and_peak_normalizes(ckpt):
    from metrics.embedders.passt import PasstLogits

    m = PasstLogits("passt-sam", str(ckpt))
    wave = np.random.default_rng(3).standard_normal(23 * SR).astype(np.float32) * 0.3
    got = m.windows(wave)
    # stable-audio-metrics: starts range(0, max(step, len - step), step), step 5 s; windows padded to 10 s
    starts = list(range(0, max(5 * SR, len(wave) - 5 * SR), 5 * SR))
    assert len(got) == len(starts) == 4 and all(len(w) == 10 * SR for w in got)
    peak = 10 ** (-1 / 20)
    scale = peak / np.abs(wave).max()
    np.testing.assert_allclose(got[0], wave[: 10 * SR] * scale, rtol=1e-5, atol=1e-6)
    assert np.abs(np.concatenate(got)).max() == pytest.approx(peak, rel=1e-5)
    assert not got[3][8 * SR:].any()  # 15 s..23 s then zero padding
    assert m.config["peak_dbfs"] == -1.0 and m.id != PasstLogits("passt", str(ckpt)).id


def test_missing_weights_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    from metrics.embedders import EmbedderError
    from metrics.embedders.passt import PasstLogits

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(EmbedderError, match=r"passt-s-f128-p16-s10-ap\.476-swa\.pt.*hub/checkpoints"):
        PasstLogits("passt")
    with pytest.raises(EmbedderError, match="nope.pt: PaSST weights not found"):
        PasstLogits("passt", str(tmp_path / "nope.pt"))


def test_cached_weights_are_found_in_torch_home(ckpt, tmp_path, monkeypatch):
    import shutil

    from metrics.embedders.passt import CHECKPOINT, PasstLogits

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, tmp_path / "hub" / "checkpoints" / CHECKPOINT)
    assert PasstLogits("passt").path.name == CHECKPOINT

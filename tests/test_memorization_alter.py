"""The audit's pitch alteration is torchaudio's ``pitch_shift``, computed on each filter phase's support only.

``sinc_resample`` is checked against torchaudio's own kernel (``_get_sinc_resample_kernel``) applied in
float64 — the exact filter, so the only gap is float32 summation — and the whole alteration against
torchaudio's ``pitch_shift`` at a low sample rate, where torchaudio's full kernel is still cheap to build.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.memorization.alter import pitch, sinc_resample, tempo


@pytest.mark.parametrize("orig,new", [(1059, 1000), (1000, 1059), (1887, 2000), (160, 441), (7, 5)])
def test_sinc_resample_applies_torchaudios_kernel(orig, new):
    from torchaudio.functional.functional import _get_sinc_resample_kernel

    x = torch.from_numpy(np.random.default_rng(orig).standard_normal(3 * orig + 17).astype(np.float32))
    got = sinc_resample(x, orig, new)
    kernel, width = _get_sinc_resample_kernel(orig, new, 1)
    padded = torch.nn.functional.pad(x.double(), (width, width + orig))
    want = torch.nn.functional.conv1d(padded[None, None], kernel.double(), stride=orig).transpose(1, 2).reshape(-1)
    want = want[: int(torch.ceil(torch.as_tensor(new * len(x) / orig)))]
    assert got.shape == want.shape and got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), want.numpy(), rtol=0, atol=2e-6)
    assert torch.equal(sinc_resample(x, 3 * orig, 3 * new), got)  # the common factor is taken out first


@pytest.mark.parametrize("semitones", [1.0, -1.0])
def test_pitch_alteration_equals_torchaudio_pitch_shift(semitones):
    import torchaudio.functional as AF

    sr = 2000  # 2000 · 2^(±1/12) → 2118/2000 and 1887/2000: torchaudio's whole kernel stays small here
    rng = np.random.default_rng(3)
    w = (0.3 * rng.standard_normal(int(1.7 * sr))).astype(np.float32)
    got = pitch(semitones)(w, sr, rng)
    want = AF.pitch_shift(torch.from_numpy(w)[None], sr, semitones, n_fft=2048, hop_length=512)[0].numpy()
    assert got.shape == want.shape == w.shape and got.dtype == np.float32
    # torchaudio's float32 conv1d over its mostly-zero kernel rounds at ~1e-4 here (ours is within 3e-7 of float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-4)
    assert np.abs(got - w).max() > 0.1  # it did shift


def test_tempo_alteration_is_the_phase_vocoder_stretch():
    sr = 2000
    w = np.sin(2 * np.pi * 220 * np.arange(3 * sr) / sr).astype(np.float32)
    fast = tempo(1.5)(w, sr, None)
    assert fast.shape == (2 * sr,) and fast.dtype == np.float32
    spec = np.abs(np.fft.rfft(fast[sr // 2 : -sr // 2]))
    assert abs(np.argmax(spec) * sr / (len(fast) - sr) - 220) < 2  # pitch kept

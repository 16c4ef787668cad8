"""Peers side by side: the same quantity computed by a peer package's own function on the same statistics.

- ``frechet-audio-distance`` (gudgud96, 0.3.4): ``FrechetAudioDistance.calculate_frechet_distance``. Its
  package imports ``laion_clap``, ``encodec`` and ``torchlibrosa`` at import time (model back ends this test
  does not use) and pins ``numpy<2`` on Python < 3.13, so it cannot be installed with its dependencies
  beside this project's numpy 2; ``pip install --no-deps frechet-audio-distance==0.3.4`` installs the code,
  and this test stubs only those three unrelated imports before importing it. The function itself runs as
  shipped. Where the package is absent the test skips with that reason.
- ``fadtk`` 1.1.0 (``fadtk.fad.calc_frechet_distance`` / ``calc_embd_statistics``): its pins (``numpy<2``,
  ``transformers<5``, ``laion-clap``) do not resolve here, but its code imports with what is installed;
  ``make`` installs it with ``--no-deps`` (plus ``hypy-utils``, which it imports). It takes the trace of
  ``sqrt(S1 S2)`` from a general (non-symmetric) eigendecomposition ``V diag(sqrt(D)) V^-1``; measured against
  ours: 2e-14 (d=16), 6e-15 (d=128), 4e-13 (d=512) relative.
- audiocraft 1.3.0 ``audiocraft/metrics/kld.py`` (``kl_divergence``, ``PasstKLDivergenceMetric``): the
  package's ``__init__`` imports its whole training stack (av, flashy, hydra, xformers, spacy…, pinned to
  torch 2.1), which cannot be installed beside this project's torch. ``make`` installs its code with
  ``--no-deps`` (+ ``torchmetrics``, which ``kld.py`` subclasses); ``_audiocraft_kld`` registers the parent
  packages ``audiocraft``, ``audiocraft.metrics``, ``audiocraft.data`` by their installed paths without
  running their ``__init__`` files, so exactly two installed files execute: ``metrics/kld.py`` and
  ``data/audio_utils.py`` (its ``convert_audio``). The metric is then run as shipped — windowing, softmax,
  pairing, sums — with a tiny random-weight hear21passt PaSST in the place ``get_basic_model`` fills (the
  released weights cannot be downloaded here).

Why the numbers differ at all: the peer takes ``scipy.linalg.sqrtm`` of the (non-symmetric) product
``sigma1 @ sigma2`` in complex arithmetic and drops the imaginary part; ours takes the trace of
``sqrt(sqrt(S1) S2 sqrt(S1))`` from symmetric eigendecompositions (``metrics/fad.py``). Mathematically equal;
measured here: 3e-14 (d=16), 8e-14 (d=128), 2e-13 (d=512) relative; the test requires ≤ 1e-6.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest


def _stub_attr(attr: str):
    if attr.startswith("__"):
        raise AttributeError(attr)
    return type(attr, (), {})


def _peer_fad():
    import importlib.util

    if importlib.util.find_spec("frechet_audio_distance") is None:
        pytest.skip("frechet-audio-distance is not installed (pip install --no-deps frechet-audio-distance==0.3.4; "
                    "with its dependencies it would downgrade numpy below 2)")
    stubs = {}
    for name in ("laion_clap", "encodec", "torchlibrosa", "torchlibrosa.stft", "torchlibrosa.augmentation"):
        if importlib.util.find_spec(name.split(".")[0]) is None:
            mod = types.ModuleType(name)
            mod.__getattr__ = _stub_attr  # names imported from a back end this test never uses
            stubs[name] = mod
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        from frechet_audio_distance.fad import FrechetAudioDistance
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return FrechetAudioDistance.calculate_frechet_distance


def _stats(rng, n, d, shift):
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3 + shift
    return x


@pytest.mark.parametrize("d,n", [(16, 400), (128, 1000)])
def test_fad_matches_frechet_audio_distance(d, n):
    from metrics.fad import EmbeddingStats, frechet_distance

    peer = _peer_fad()
    rng = np.random.default_rng(d)
    a, b = _stats(rng, n, d, 0.0), _stats(rng, n, d, 0.2)
    sa, sb = EmbeddingStats.from_embeddings(a), EmbeddingStats.from_embeddings(b)
    ours = frechet_distance(sa.mean, sa.cov, sb.mean, sb.cov)
    theirs = float(np.real(peer(None, np.mean(a, 0), np.cov(a, rowvar=False), np.mean(b, 0), np.cov(b, rowvar=False))))
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert ours > 0


@pytest.mark.parametrize("d,n", [(16, 400), (128, 1000)])
def test_fad_matches_fadtk(d, n):
    """fadtk's own statistics (np.mean / np.cov) and distance on the same embeddings."""
    pytest.importorskip("fadtk", reason="fadtk is not installed (make installs it: pip install --no-deps fadtk==1.1.0 "
                                        "hypy-utils==1.0.29)")
    from fadtk.fad import calc_embd_statistics, calc_frechet_distance

    from metrics.fad import EmbeddingStats, frechet_distance

    rng = np.random.default_rng(100 + d)
    a, b = _stats(rng, n, d, 0.0), _stats(rng, n, d, 0.2)
    sa, sb = EmbeddingStats.from_embeddings(a), EmbeddingStats.from_embeddings(b)
    ours = frechet_distance(sa.mean, sa.cov, sb.mean, sb.cov)
    theirs = float(np.real(calc_frechet_distance(*calc_embd_statistics(a), *calc_embd_statistics(b))))
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert ours > 0


def _audiocraft_kld():
    """audiocraft.metrics.kld as installed, without the package __init__ files (module docstring)."""
    import importlib
    import importlib.util

    if "audiocraft.metrics.kld" in sys.modules:
        return sys.modules["audiocraft.metrics.kld"]
    if importlib.util.find_spec("audiocraft") is None or importlib.util.find_spec("torchmetrics") is None:
        pytest.skip("audiocraft's code is not installed (make installs it: pip install --no-deps audiocraft==1.3.0; "
                    "pip install torchmetrics)")
    for name in ("audiocraft", "audiocraft.metrics", "audiocraft.data"):
        if name not in sys.modules:
            sys.modules[name] = importlib.util.module_from_spec(importlib.util.find_spec(name))  # not executed
    return importlib.import_module("audiocraft.metrics.kld")


def _window_logits(rng, windows, classes=527, scale=3.0):
    return (rng.standard_normal((windows, classes)) * scale).astype(np.float64)


def test_kld_audiocraft_convention_matches_audiocraft_kl_divergence():
    """Every reported number of the ``audiocraft`` convention against audiocraft's kl_divergence + compute()."""
    import torch

    from metrics.kld import kld_metrics

    peer = _audiocraft_kld()
    rng = np.random.default_rng(7)
    windows = {"a": 3, "b": 1, "c": 2}
    ref = {k: _window_logits(rng, n) for k, n in windows.items()}
    gen = {k: _window_logits(rng, n) for k, n in windows.items()}
    metrics = kld_metrics("audiocraft", n_boot=0)
    for m in metrics.values():
        m.update("reference", ref)
        m.update("generated", gen)
    ours = {k: m.compute().value for k, m in metrics.items()}
    # audiocraft.KLDivergenceMetric.update on the stacked windows (float64 here: the formula, not float32 sums)
    ids = sorted(windows)
    target = torch.softmax(torch.from_numpy(np.concatenate([ref[i] for i in ids])), dim=-1)
    pred = torch.softmax(torch.from_numpy(np.concatenate([gen[i] for i in ids])), dim=-1)
    pq = peer.kl_divergence(pred, target).sum().item() / len(target)
    qp = peer.kl_divergence(target, pred).sum().item() / len(target)
    assert ours["kld_audiocraft"] == pytest.approx(pq, rel=1e-6)
    assert ours["kld_audiocraft_qp"] == pytest.approx(qp, rel=1e-6)
    assert ours["kld_audiocraft_both"] == pytest.approx(pq + qp, rel=1e-6)
    assert pq != pytest.approx(qp, rel=1e-3)  # the two directions are told apart


def test_passt_kld_end_to_end_matches_audiocraft_metric(tmp_path):
    """Audio in, KL out: our ``passt`` classifier + ``audiocraft`` convention vs audiocraft's
    PasstKLDivergenceMetric.update/compute with the same (tiny, random-weight) PaSST network.

    32 kHz mono input (so audiocraft's julius resampling is the identity); clip lengths 23 s (windows 10, 10, 3 s)
    and 20.1 s (10, 10, and a 0.1 s tail both drop). Measured difference: 2e-8 / 8e-8 / 4e-8 relative (pq / qp / both), from audiocraft's
    float32 softmax and running sums (``kld_pq_sum`` is a float32 tensor) against our float64 arithmetic on the
    same float32 logits.
    """
    import torch
    from loader_fixtures import passt_checkpoint

    from metrics.embedders.passt import SAMPLE_RATE, PasstLogits
    from metrics.kld import kld_metrics

    peer = _audiocraft_kld()
    ckpt = passt_checkpoint(tmp_path / "passt-tiny.pt")
    state = torch.load(ckpt, weights_only=True)
    for k in ("head.1.weight", "head_dist.weight"):  # untrained heads give near-uniform softmaxes, whose KL
        state[k] = state[k] * 40.0                     # (~1e-4) is all eps and float32 rounding: spread them
    torch.save(state, ckpt)
    ours_model = PasstLogits("passt", str(ckpt))
    metric = peer.PasstKLDivergenceMetric.__new__(peer.PasstKLDivergenceMetric)
    peer.KLDivergenceMetric.__init__(metric)  # its states; _initialize_model would download the released weights
    metric.model, metric.model_sample_rate = ours_model.model, SAMPLE_RATE
    metric.max_input_frames, metric.min_input_frames = 10 * SAMPLE_RATE, int(0.15 * SAMPLE_RATE)

    rng = np.random.default_rng(11)
    lengths = {"x": int(23 * SAMPLE_RATE), "y": int(20.1 * SAMPLE_RATE)}
    ref = {k: (rng.standard_normal(n) * 0.1).astype(np.float32) for k, n in lengths.items()}
    gen = {k: (rng.standard_normal(n) * 0.3).astype(np.float32) for k, n in lengths.items()}
    metrics = kld_metrics("audiocraft", n_boot=0)
    for m in metrics.values():
        m.update("reference", {k: ours_model.embed(w) for k, w in ref.items()})
        m.update("generated", {k: ours_model.embed(w) for k, w in gen.items()})
    ours = {k: m.compute() for k, m in metrics.items()}
    assert ours["kld_audiocraft"].extra["n_window_pairs"] == 5

    for k in lengths:  # one clip per update call, as batches of equal-length clips [B, C, T]
        metric.update(torch.from_numpy(gen[k])[None, None], torch.from_numpy(ref[k])[None, None],
                      torch.tensor([lengths[k]]), torch.tensor([SAMPLE_RATE]))
    theirs = metric.compute()
    assert int(metric.weight) == 5
    assert theirs["kld_pq"] > 0.05  # the heads were spread: a KL well above eps and rounding
    assert ours["kld_audiocraft"].value == pytest.approx(theirs["kld_pq"], rel=1e-6)
    assert ours["kld_audiocraft_qp"].value == pytest.approx(theirs["kld_qp"], rel=1e-6)
    assert ours["kld_audiocraft_both"].value == pytest.approx(theirs["kld_both"], rel=1e-6)

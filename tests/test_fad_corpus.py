"""FAD on the procedural corpus grows monotonically with the severity of each degradation.

Reference = the even-indexed half of a 48-clip × 4 s procedural corpus (24 clips); evaluated set = the
other half (held out), degraded at severity 0 (identity), 0.25, 0.5, 0.75, 1 by ``musiclm_ref.data.degrade``
(noise: SNR 40→0 dB, low-pass: cutoff 8 kHz→500 Hz, clipping: threshold 1.0→0.05). Checked for the
weight-free ``mel`` embedder and for a *trained* torch embedder: a small log-mel CNN trained in this
test (Adam, a few hundred steps, seeded) to predict the corpus tags from 1 s windows of the reference
half, saved as a checkpoint and loaded back through the registry (``torch:<ckpt>``); its
penultimate layer is the embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.audio import Clip, load_dir, resample
from metrics.embedders import get_embedder
from metrics.embedders.torch_ckpt import LogMelConvConfig, LogMelConvNet, save_embedder_checkpoint
from metrics.extract import embed_clips
from metrics.fad import EmbeddingStats, fad
from musiclm_ref.data import degrade as degrade_mod
from musiclm_ref.data import synth
from musiclm_ref.data.specs import TAG_VOCAB, tags_to_multihot

SEVERITIES = [0.0, 0.25, 0.5, 0.75, 1.0]
KINDS = ["noise", "lowpass", "clip"]
SR = 16000


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Resampling, degradation and training here are many small torch ops: on a shared 2-core machine
    intra-op threads only contend (measured ~20x slower), so use one and restore the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """48 clips × 4 s (the first 24 are ``small_corpus``'s): with 24 clips per side the FAD between the
    two clean halves is small enough that even the mildest degradation step is visible."""
    out = tmp_path_factory.mktemp("corpus48")
    synth.generate_corpus(out, n=48, seconds=4.0, seed=1234, sample_rate=24000)
    return out


@pytest.fixture(scope="module")
def sets(corpus):
    """(reference clips, {kind: [held-out clips degraded at each severity]}), all at 16 kHz.

    Degradations run at the corpus rate (24 kHz), then each clip is resampled once to 16 kHz.
    """
    clips = load_dir(corpus).clips
    to16 = lambda cid, wave, sr: Clip(cid, resample(wave, sr, SR), SR)  # noqa: E731
    ref = [to16(c.id, c.wave, c.sr) for c in clips[::2]]
    held_out = clips[1::2]
    degraded = {
        kind: [[to16(c.id, degrade_mod.degrade(c.wave, c.sr, kind, sev, seed=7), c.sr) for c in held_out]
               for sev in SEVERITIES]
        for kind in KINDS
    }
    return ref, degraded


def train_tagger(corpus, ref_ids: list[str], out: Path, steps: int = 150):
    """Train ``LogMelConvNet`` on the corpus tags of ``ref_ids``; returns (checkpoint path, losses)."""
    torch.manual_seed(0)
    labels = synth.load_labels(corpus)
    model = LogMelConvNet(LogMelConvConfig(dim=32, channels=16, n_classes=len(TAG_VOCAB)))
    waves, targets = [], []
    for clip in load_dir(corpus, sr=SR, ids=ref_ids).clips:
        w = model.windows(torch.from_numpy(clip.wave))
        waves.append(w)
        targets.append(torch.from_numpy(tags_to_multihot(labels.loc[clip.id, "tags"])).expand(len(w), -1))
    x, y = torch.cat(waves), torch.cat(targets).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    path = save_embedder_checkpoint(out, model, name="tiny-tagger", model_ref="metrics.embedders.torch_ckpt:LogMelConvNet",
                                    sample_rate=SR, dim=32, min_seconds=1.0)
    return path, losses


@pytest.fixture(scope="module")
def trained_embedder(corpus, sets, tmp_path_factory):
    path, losses = train_tagger(corpus, [c.id for c in sets[0]], tmp_path_factory.mktemp("ckpt") / "tagger.pt")
    assert np.mean(losses[-20:]) < 0.6 * np.mean(losses[:20])  # it learned the tags: not a random net
    return get_embedder(f"torch:{path}")


def fad_curve(embedder, sets, kind: str) -> list[float]:
    ref, degraded = sets
    ref_stats = EmbeddingStats.from_embeddings(embed_clips(ref, embedder), embedder=embedder.id)
    return [fad(ref_stats, embed_clips(clips, embedder)).value for clips in degraded[kind]]


@pytest.mark.parametrize("kind", KINDS)
def test_fad_grows_with_severity_mel(sets, kind):
    values = fad_curve(get_embedder("mel"), sets, kind)
    assert all(b > a for a, b in zip(values, values[1:])), values


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_fad_grows_with_severity_trained_torch_embedder(sets, trained_embedder, kind):
    values = fad_curve(trained_embedder, sets, kind)
    assert all(b > a for a, b in zip(values, values[1:])), values

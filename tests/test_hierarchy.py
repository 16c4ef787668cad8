"""benchmarks/hierarchy.py: the coarse stage's NLL under true / shuffled / NULL semantic tokens."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from benchmarks.hierarchy import coarse_nll, derangement
from musiclm_ref.stages import Stage, StageError, TokenSpec, stage_config
from musiclm_ref.token_corpus import TokenCorpus
from musiclm_ref.train.stage import StageTrainConfig, fit_stage

SPEC = TokenSpec(mulan_levels=12, mulan_codebook=4, semantic_codebook=16, acoustic_levels=12, acoustic_codebook=16)
MICRO = dict(depth=1, dim=32, heads=2, ff_dim=64)


def corpus(n: int = 8, seconds: int = 2, seed: int = 0, copy_semantic: bool = False, copy_chroma: bool = False) -> TokenCorpus:
    """Random tokens; with ``copy_semantic`` every acoustic code of frame f is S[f // 2] (S fully determines A),
    with ``copy_chroma`` it is the chroma token C[f // 2] (the melody determines A)."""
    g = torch.Generator().manual_seed(seed)
    sem = torch.randint(0, 16, (n, seconds * 25), generator=g)
    ac = torch.randint(0, 16, (n, seconds * 50, 12), generator=g)
    chroma = torch.randint(0, 13, (n, seconds * 25), generator=g)
    if copy_semantic:
        ac = sem.repeat_interleave(2, dim=1)[..., None].expand(-1, -1, 12).clone()
    if copy_chroma:
        ac = chroma.repeat_interleave(2, dim=1)[..., None].expand(-1, -1, 12).clone()
    mulan = torch.randint(0, 4, (n, 12), generator=g)
    return TokenCorpus([f"c{i}" for i in range(n)], sem, ac, mulan, None, SPEC, chroma=chroma)


def micro_coarse(crop: float = 1.0) -> Stage:
    torch.manual_seed(0)
    return Stage(replace(stage_config("coarse", "tiny", SPEC, transformer=MICRO), crop_seconds=crop))


def test_derangement_has_no_fixed_point_and_is_seeded():
    for n in (2, 3, 17):
        p = derangement(n, seed=5)
        assert sorted(p) == list(range(n)) and not np.any(p == np.arange(n))
    assert list(derangement(17, 5)) == list(derangement(17, 5)) != list(derangement(17, 6))
    with pytest.raises(ValueError, match="at least 2 clips"):
        derangement(1, 0)


def test_true_condition_equals_the_training_loss_per_crop():
    """Independent formulation: ``Stage.loss`` (mean cross-entropy of a batch) on each crop of each clip."""
    c, st = corpus(4), micro_coarse().eval()
    per = coarse_nll(st, c, seed=0)
    frames = st.config.frames
    with torch.no_grad():
        for i in range(4):
            crops = []
            for s in range(0, c.acoustic.shape[1] - frames + 1, frames):
                cond = st.conditioning(1, c.mulan[i : i + 1], None)
                ctx = st.with_chroma(st.semantic_context(c.semantic[i : i + 1, s // 2 : (s + frames) // 2]), None)
                crops.append(float(st.loss(cond, c.acoustic[i : i + 1, s : s + frames, :4], ctx)))
            assert per["true"][i].mean() == pytest.approx(np.mean(crops), abs=1e-5)


def test_shuffling_identical_semantic_tokens_changes_nothing():
    c = corpus(5)
    c.semantic[:] = c.semantic[0]
    per = coarse_nll(micro_coarse(), c, seed=3)
    np.testing.assert_allclose(per["shuffled"], per["true"], atol=1e-6)
    assert not np.allclose(per["null"], per["true"])  # NULL tokens are a different context


def test_gap_detects_a_stage_that_follows_the_semantic_tokens():
    """Trained where S fully determines the acoustic codes, the stage must be far worse with shuffled S."""
    train, held = corpus(16, copy_semantic=True, seed=1), corpus(6, copy_semantic=True, seed=2)
    st = micro_coarse(crop=0.2)  # 10 frames: short sequences, so a few steps learn the alignment
    fit_stage(st, train, StageTrainConfig(steps=150, batch=16, lr=5e-3, warmup=10), progress=False)
    per = coarse_nll(st, held, seed=0)
    gap = (per["shuffled"] - per["true"]).mean(1)
    assert (gap > 0.1).all(), gap  # untrained: ~0 (test_shuffling_identical…: exactly 0 without information)


def test_chroma_gain_detects_a_stage_that_follows_the_melody():
    """Trained where the chroma tokens fully determine the acoustic codes (S random), the stage must be far
    better with the clip's own chroma than with none, and a stage without chroma refuses a melody."""
    train, held = corpus(16, copy_chroma=True, seed=1), corpus(6, copy_chroma=True, seed=2)
    st = micro_coarse(crop=0.2)
    assert st.config.chroma  # the tiny preset's coarse stage hears the chroma
    fit_stage(st, train, StageTrainConfig(steps=300, batch=16, lr=5e-3, warmup=10), progress=False)
    per = coarse_nll(st, held, seed=0)
    gain = (per["true"] - per["true_chroma"]).mean(1)
    assert (gain > 0.1).all(), gain
    plain = Stage(replace(stage_config("coarse", "tiny", SPEC, transformer=MICRO), chroma=False))
    ctx = plain.semantic_context(held.semantic[:, :5])
    assert torch.equal(plain.with_chroma(ctx, None), ctx)
    with pytest.raises(StageError, match="without chroma"):
        plain.with_chroma(ctx, held.chroma[:, :5])
    with pytest.raises(StageError, match=r"chroma tokens must lie in \[0, 13\)"):
        st.with_chroma(ctx, held.chroma[:, :5] + 13)


def test_chroma_tokens_name_the_pitch_class_loop_a_short_melody_and_refuse_bad_input():
    """Independent check: a 440 Hz tone is pitch class A (9) in every frame, also when a 0.3 s tone is looped to
    fill 2 s; silence is unvoiced (12); an empty or non-finite melody is an InputError."""
    from metrics.errors import InputError
    from musiclm_ref.chroma import UNVOICED, chroma_tokens

    sr = 24000
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * np.arange(2 * sr) / sr)).astype(np.float32)
    assert (chroma_tokens(tone, sr, 50) == 9).all()
    short = chroma_tokens(tone[: int(0.3 * sr)], sr, 50)
    assert len(short) == 50 and (short[short != UNVOICED] == 9).mean() > 0.9
    quiet = np.concatenate([tone[:sr], np.zeros(sr, np.float32)])
    assert (chroma_tokens(quiet, sr, 50)[30:] == UNVOICED).all()
    for bad in (np.zeros(0, np.float32), np.full(100, np.nan, np.float32)):
        with pytest.raises(InputError, match="melody must be a non-empty, finite mono wave"):
            chroma_tokens(bad, sr, 10)

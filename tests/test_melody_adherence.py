"""Melody adherence: audiocraft's chroma cosine (as audiocraft writes it), raw chroma accuracy, CREPE on rendered melodies."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.melody_adherence import (
    ChromaCosine,
    PitchAdherence,
    chroma_cosine_sums,
    melody_metric,
    raw_chroma_accuracy,
)
from metrics.metric import MetricError

librosa = pytest.importorskip("librosa", reason="the melody extra (librosa, torchcrepe) is not installed")


def audiocraft_chroma(wave: np.ndarray, sr: int = 32000, radix2_exp: int = 14, argmax: bool = True) -> np.ndarray:
    """audiocraft/modules/chroma.py: ChromaExtractor.forward, written with torchaudio as audiocraft does."""
    import torch
    import torchaudio

    n = 2**radix2_exp
    fbanks = torch.from_numpy(librosa.filters.chroma(sr=sr, n_fft=n, tuning=0, n_chroma=12))
    spec = torchaudio.transforms.Spectrogram(n_fft=n, win_length=n, hop_length=n // 4, power=2, center=True, pad=0,
                                             normalized=True)
    wav = torch.from_numpy(wave.astype(np.float32))[None]
    raw = torch.einsum("cf,...ft->...ct", fbanks, spec(wav))
    norm = torch.nn.functional.normalize(raw, p=torch.inf, dim=-2, eps=1e-6).transpose(1, 2)
    if argmax:
        idx = norm.argmax(-1, keepdim=True)
        norm[:] = 0
        norm.scatter_(dim=-1, index=idx, value=1)
    t = int(np.ceil(len(wave) / (n // 4)))  # ChromaCosineSimilarityMetric's chroma_lens
    return norm[0, :t].numpy()


def rendered(style: str, index: int, seconds: float, sr: int, timbre: str | None = None, octave: int = 0) -> np.ndarray:
    from dataclasses import replace

    from musiclm_ref.data.render import render
    from musiclm_ref.data.specs import sample_spec, with_timbre

    spec = sample_spec(3, index, style)
    if timbre:
        spec = with_timbre(spec, timbre)
    if octave:
        spec = replace(spec, octave_shift=octave)
    w = render(spec, seconds, sr)
    return (0.5 * w / np.abs(w).max()).astype(np.float32)


def test_chroma_matches_audiocraft_extractor():
    from metrics.melody_adherence import AudiocraftChroma

    rng = np.random.default_rng(0)
    wave = rendered("waltz", 1, 2.5, 32000) + 0.01 * rng.standard_normal(80000).astype(np.float32)
    hard = AudiocraftChroma().embed(wave)
    assert hard.shape == (int(np.ceil(len(wave) / 4096)), 12)
    assert np.array_equal(hard, audiocraft_chroma(wave))
    soft = AudiocraftChroma(argmax=False).embed(wave)
    assert np.abs(soft - audiocraft_chroma(wave, argmax=False)).max() < 1e-4
    short = wave[:9000]  # shorter than one 16384 window: padded to one window as audiocraft does
    assert np.array_equal(AudiocraftChroma().embed(short), audiocraft_chroma(short))


def test_chroma_cosine_is_frame_weighted_like_audiocraft():
    import torch

    rng = np.random.default_rng(1)
    pairs = {f"c{i}": (np.eye(12)[rng.integers(0, 12, n)], np.eye(12)[rng.integers(0, 12, n)]) for i, n in enumerate((5, 40, 9))}
    m = ChromaCosine(n_boot=0)
    m.update("reference", {k: a for k, (a, _) in pairs.items()})
    m.update("generated", {k: b for k, (_, b) in pairs.items()})
    res = m.compute()
    cos_sum, weight = 0.0, 0
    for a, b in pairs.values():  # audiocraft: cosine_sum += cos.sum(); weight += t
        cos = torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=1, eps=1e-8)
        cos_sum, weight = cos_sum + float(cos.sum()), weight + len(a)
    assert res.value == pytest.approx(cos_sum / weight, abs=1e-12)
    assert res.per_item["c1"] == pytest.approx(chroma_cosine_sums(*pairs["c1"])[0] / 40)
    assert m.value_on([], ["c1", "c1"]) == pytest.approx(res.per_item["c1"])
    same = chroma_cosine_sums(pairs["c0"][0], pairs["c0"][0])
    assert same == (5.0, 5)


def contour(f0: list[float], voiced: list[bool]) -> np.ndarray:
    return np.stack([np.asarray(f0, float), np.where(voiced, 0.9, 0.05)], axis=1)


def test_raw_chroma_accuracy_counts_octave_errors_as_correct():
    ref = contour([220, 220, 440, 440, 330, 0], [True, True, True, True, True, False])
    assert raw_chroma_accuracy(ref, ref) == 1.0
    octave = contour([440, 110, 880, 220, 660, 0], [True] * 5 + [False])
    assert raw_chroma_accuracy(ref, octave) == 1.0
    semitone = contour([220 * 2 ** (1 / 12)] * 2 + [440 * 2 ** (1 / 12)] * 2 + [330, 0], [True] * 5 + [False])
    assert raw_chroma_accuracy(ref, semitone) == pytest.approx(1 / 5)
    within = contour([220 * 2 ** (40 / 1200)] * 5 + [0], [True] * 5 + [False])  # 40 cents sharp: within 50
    assert raw_chroma_accuracy(ref, within) == pytest.approx(4 / 5)  # the 330 Hz frame is 552 cents away mod octave
    unvoiced = contour([220, 220, 440, 440, 330, 0], [False, True, True, True, True, False])
    assert raw_chroma_accuracy(ref, unvoiced) == pytest.approx(4 / 5)  # an unvoiced guess is never right
    assert raw_chroma_accuracy(contour([0, 0], [False, False]), ref) is None
    assert raw_chroma_accuracy(ref, ref[:3]) == 1.0  # common frames only


def test_pitch_metric_pairs_by_id_and_reports_what_it_skipped():
    ref = contour([220, 440, 330], [True] * 3)
    m = melody_metric("pitch", n_boot=0)
    assert isinstance(m, PitchAdherence)
    m.update("reference", {"a": ref, "b": ref, "silent": contour([0, 0, 0], [False] * 3), "lonely": ref})
    m.update("generated", {"a": ref, "b": contour([233, 466, 350], [True] * 3), "silent": ref})
    res = m.compute()
    assert res.per_item == {"a": 1.0, "b": 0.0}
    assert res.value == 0.5 and res.extra["skipped"] == ["silent"] and res.extra["unpaired"] == ["lonely"]
    assert m.value_on([], ["a", "a", "b"]) == pytest.approx(2 / 3)
    with pytest.raises(MetricError, match="pitch' or 'chroma"):
        melody_metric("loudness")


def test_crepe_hears_the_same_melody_through_another_instrument():
    pytest.importorskip("torchcrepe")
    from metrics.melody_adherence import CrepePitch

    crepe = CrepePitch("tiny")
    prompt = crepe.embed(rendered("lullaby", 2, 3.0, 16000, timbre="flute"))
    assert prompt.shape == (151, 2)
    same_melody = crepe.embed(rendered("lullaby", 2, 3.0, 16000, timbre="piano"))
    octave_up = crepe.embed(rendered("lullaby", 2, 3.0, 16000, timbre="flute", octave=1))
    other = crepe.embed(rendered("lullaby", 7, 3.0, 16000, timbre="flute"))
    rca = {k: raw_chroma_accuracy(prompt, v) for k, v in (("same", same_melody), ("octave", octave_up), ("other", other))}
    # measured (seed 3): same melody on piano 0.48 (its notes decay into unvoiced frames), an octave up
    # on flute 0.81, another melody 0.15
    assert rca["octave"] > 0.6 and min(rca["same"], rca["octave"]) > rca["other"] + 0.25, rca


def test_melody_adherence_on_clips_prompt_vs_other_melody():
    pytest.importorskip("torchcrepe")
    from metrics.audio import Clip
    from metrics.melody_adherence import melody_adherence

    prompts = [Clip(f"m{i}", rendered("lullaby", i, 2.5, 24000, timbre="flute"), 24000) for i in (2, 7)]
    same = [Clip(c.id, rendered("lullaby", i, 2.5, 24000, timbre="flute", octave=1), 24000) for c, i in zip(prompts, (2, 7))]
    swapped = [Clip(c.id, rendered("lullaby", i, 2.5, 24000, timbre="flute"), 24000) for c, i in zip(prompts, (7, 2))]
    follows = melody_adherence(prompts, same, n_boot=0)
    ignores = melody_adherence(prompts, swapped, n_boot=0)
    assert set(follows) == {"melody_rca", "chroma_cosine"}
    assert follows["melody_rca"].value > ignores["melody_rca"].value + 0.25
    assert follows["chroma_cosine"].value > ignores["chroma_cosine"].value

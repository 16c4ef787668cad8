"""The procedural corpus must be cheap: the issue asks for 200 clips × 10 s in well under a minute on 2 cores.

Rendering one 10 s clip of every style is the unit (≈ 80 ms CPU per clip measured at the time of
writing, so 200 clips ≈ 16 s on one core); the corpus benchmark adds WAV/CSV writing and the worker
pool. Degradations are timed too, because metric-validation sweeps run them on whole corpora.
"""

from __future__ import annotations

import pytest

from musiclm_ref.data.degrade import DEGRADATIONS, degrade
from musiclm_ref.data.render import render
from musiclm_ref.data.specs import STYLES, sample_spec
from musiclm_ref.data.synth import generate_corpus


def test_render_one_clip_per_style(benchmark):
    specs = [sample_spec(0, i, style) for i, style in enumerate(sorted(STYLES))]
    waves = benchmark(lambda: [render(s, 10.0, 24000) for s in specs])
    assert len(waves) == len(STYLES)


def test_corpus_40_clips_two_workers(benchmark, tmp_path):
    info = benchmark.pedantic(
        lambda: generate_corpus(tmp_path / "c", n=40, seconds=10.0, seed=0, workers=2), rounds=1, iterations=1
    )
    assert info.n == 40


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_degrade_10s(benchmark, kind):
    wave = render(sample_spec(0, 0), 10.0, 24000)
    out = benchmark(degrade, wave, 24000, kind, 0.5)
    assert out.shape == wave.shape

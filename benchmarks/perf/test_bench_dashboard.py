"""The dashboard on a 5,000-clip × 3-system results directory: loading, filtering and a cached page rerun.

The issue asks for a dashboard that stays fast at MusicCaps scale. What must be fast is a *rerun*
(every widget change reruns the script): loading is cached on (path, mtimes), so a rerun only pays
for filtering and laying out one caption's clips. Audio files are not written (only the selected
clip's files are ever opened), so the fixture costs a CSV, not 15,000 WAVs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dashboards
from dashboards.per_clip import clip_choices, filter_clips, worst_clips
from dashboards.runs import ENV_RESULTS, higher_is_better, load_run
from metrics.store import write_store

N_CLIPS, SYSTEMS = 5000, ("musiclm-ref", "baseline-a", "baseline-b")
ASPECTS = ["pop", "rock", "mellow", "piano", "drums", "female vocal", "ambient", "guitar", "upbeat", "low quality"]


@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("dash_bench") / "big"
    ytids = [f"yt{i:09d}" for i in range(N_CLIPS)]
    aspects = [str([str(a) for a in rng.choice(ASPECTS, size=3, replace=False)]) for _ in ytids]
    frames = [pd.DataFrame({
        "system": s, "ytid": ytids, "caption": [f"caption number {i} with some words" for i in range(N_CLIPS)],
        "audio_path": [f"{s}/{y}.wav" for y in ytids], "reference_path": [f"reference/{y}.wav" for y in ytids],
        "mcc": rng.normal(0.4, 0.1, N_CLIPS), "kld": rng.gamma(2.0, 1.0, N_CLIPS),
        "fad_vggish": rng.gamma(3.0, 1.0, N_CLIPS), "aspect_list": aspects,
    }) for s in SYSTEMS]
    metrics = {"fad_vggish": {"value": 4.0, "ci95": [3.5, 4.5]}, "kld": {"value": 1.5, "ci95": [1.4, 1.6]},
               "mcc": {"value": 0.4, "ci95": [0.39, 0.41]}}
    write_store(out, "compare", {s: {"n_clips": N_CLIPS, "metrics": metrics} for s in SYSTEMS},
                per_clip=pd.concat(frames, ignore_index=True), reference={"dir": "reference", "n_clips": N_CLIPS},
                metadata={"embedders": {"vggish": "v1"}, "protocol": {}})
    return out


def test_load_run_5000_clips(benchmark, big_run):
    run = benchmark.pedantic(load_run, args=(big_run,), rounds=3, iterations=1)
    assert len(run.per_clip) == N_CLIPS * len(SYSTEMS) and run.problems == []


def test_filter_and_worst_5000_clips(benchmark, big_run):
    run = load_run(big_run)

    def work():
        shown = filter_clips(run.per_clip, ["rock", "piano"], "caption")
        return clip_choices(shown), worst_clips(run.per_clip, "baseline-a", "kld", 20,
                                                    higher_is_better=higher_is_better([run], "kld"))

    choices, worst = benchmark.pedantic(work, rounds=3, iterations=1)
    assert 0 < len(choices) < N_CLIPS and len(worst) == 20


def test_cached_clips_page_rerun_5000_clips(benchmark, big_run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(ENV_RESULTS, os.fspath(big_run))
    at = AppTest.from_file(str(Path(dashboards.__file__).with_name("app.py")), default_timeout=120).run()
    at.sidebar.radio[0].set_value("Clips").run()  # first run fills the cache

    at = benchmark.pedantic(lambda: at.run(), rounds=3, iterations=1)
    assert not at.exception
    assert at.caption[0].value == f"{N_CLIPS} of {N_CLIPS} clips match."

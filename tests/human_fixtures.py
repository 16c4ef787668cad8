"""Tiny listening-study inputs built on the fly: sine-tone WAVs per system and a MusicCaps-style captions CSV.

System names are distinctive words so a blinding test can search served pages and URLs for them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metrics.audio import save_audio

SYSTEMS = ("zebrasynth", "okapiwave")


def make_sources(root: Path, systems: tuple[str, ...] = SYSTEMS, n_items: int = 6, seconds: float = 1.0,
                 sr: int = 16000, reference: bool = True, seed: int = 0) -> tuple[dict[str, Path], Path | None, Path]:
    """Write ``root/<system>/<ytid>.wav`` (and ``root/ground_truth``) plus ``root/captions.csv``."""
    rng = np.random.default_rng(seed)
    ids = [f"yt{i:04d}" for i in range(n_items)]
    t = np.arange(int(seconds * sr)) / sr
    names = list(systems) + (["ground_truth"] if reference else [])
    dirs = {}
    for k, name in enumerate(names):
        d = root / name
        for i, ytid in enumerate(ids):
            f = 220.0 * 2 ** ((i + 3 * k) / 12)
            wave = 0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(len(t))
            save_audio(d / f"{ytid}.wav", wave.astype(np.float32), sr)
        dirs[name] = d
    captions = root / "captions.csv"
    pd.DataFrame({"ytid": ids, "caption": [f"A calm tune number {i} with soft piano." for i in range(n_items)]}).to_csv(
        captions, index=False)
    ref = dirs.pop("ground_truth") if reference else None
    return dirs, ref, captions


def make_study(root: Path, n_items: int = 6, ratings_per_pair: int = 6, **kw):
    """A small study in ``root/study.db`` (16 kHz sources and store, so no resampling): (url, CreatedStudy).

    Loudness matching is on (the default); the playback gate is off unless ``playback_min_fraction`` is given.
    """
    from human_eval.design import create_study

    dirs, ref, captions = make_sources(root, n_items=n_items)
    url = f"sqlite:///{root / 'study.db'}"
    kw.setdefault("sample_rate", 16000)
    kw.setdefault("seed", 3)
    kw.setdefault("playback_min_fraction", None)  # tests that drive the app without playing; playback tests set it
    return url, create_study(url, dirs, captions, reference=ref, ratings_per_pair=ratings_per_pair, **kw)


def rate_everything(Session_, rater_id: int, answer_for=lambda view: 1) -> int:
    """Drive one rater through the Python API to the end of their sequence; returns how many they rated."""
    from human_eval import assign

    n = 0
    while (view := assign.view_for(Session_, rater_id)) is not None:
        assign.submit_rating(Session_, rater_id, view.assignment_id, answer_for(view))
        n += 1
    return n

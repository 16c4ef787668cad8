"""Small results directories for the dashboard tests, written with the project's own writers.

Every value here is fixed (no randomness beyond a seeded tone generator) so the tests can compare
what the dashboard shows against these numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.audio import save_audio
from metrics.store import write_store

SR = 8000
YTIDS = ["yt0aaaaaaaa", "yt1bbbbbbbb", "yt2cccccccc", "yt3dddddddd"]
CAPTIONS = [
    "A mellow piano ballad with soft strings.",
    "Energetic rock with distorted guitars and loud drums.",
    "Ambient synth pads, slow and dreamy.",
    "Upbeat pop song with a catchy female vocal.",
]
ASPECTS = [
    "['mellow', 'piano', 'strings']",
    "['rock', 'distorted guitar', 'loud drums']",
    "['ambient', 'synth', 'mellow']",
    "['pop', 'female vocal', 'upbeat']",
]
SYSTEMS = {"musiclm-ref": "gen_ref", "baseline": "gen_base"}
# per-clip scores: system -> metric -> 4 values (one per ytid)
SCORES = {
    "musiclm-ref": {"mcc": [0.61, 0.42, 0.55, 0.30], "kld": [1.10, 2.40, 0.90, 3.20], "fad_mel": [0.8, 1.9, 0.7, 2.6],
                    "melody_rca": [0.90, 0.35, 0.60, 0.20], "chroma_cosine": [0.80, 0.50, 0.30, 0.70]},
    "baseline": {"mcc": [0.20, 0.15, 0.33, 0.05], "kld": [2.90, 3.70, 1.80, 4.10], "fad_mel": [2.2, 3.1, 1.5, 3.9],
                 "melody_rca": [0.40, 0.10, 0.55, 0.25], "chroma_cosine": [0.45, 0.60, 0.20, 0.35]},
}
# fad_mel, kld and mcc are written as an older writer left them (no direction: the store's name fallback);
# the melody metrics carry the direction their Metric declares, as every store written now does.
METRICS = {
    "musiclm-ref": {"fad_mel": {"value": 4.123456, "ci95": [3.5, 4.9]}, "kld": {"value": 1.9, "ci95": [1.2, 2.6]},
                    "mcc": {"value": 0.47, "ci95": [0.38, 0.55]},
                    "melody_rca": {"value": 0.5125, "ci95": [0.3, 0.7], "higher_is_better": True},
                    "chroma_cosine": {"value": 0.575, "ci95": [0.4, 0.7], "higher_is_better": True}},
    "baseline": {"fad_mel": {"value": 9.87, "ci95": [8.1, 11.2]}, "kld": {"value": 3.125, "ci95": None},
                 "mcc": {"value": 0.1825, "ci95": [0.1, 0.26]},
                 "melody_rca": {"value": 0.325, "ci95": [0.2, 0.5], "higher_is_better": True},
                 "chroma_cosine": {"value": 0.4, "ci95": [0.25, 0.55], "higher_is_better": True}},
}
HIGHER_IS_BETTER = {"fad_mel": False, "kld": False, "mcc": True, "melody_rca": True, "chroma_cosine": True}
MEMO = {
    "tau": 0.0123, "fpr": 8.0e-5, "exact_rate": 0.0021, "approx_rate": 0.0315,
    "rows": [{"prompt_tokens": t, "exact_rate": r / 10, "approx_rate": r, "exact_ci95": [0.0, r / 5],
              "approx_ci95": [r / 2, r * 1.5]} for t, r in [(0, 0.01), (50, 0.02), (100, 0.04), (250, 0.08)]],
}
DEGRADATION = {"embedder": "mel", "curves": {"noise": [{"severity": s, "fad": 10 * s} for s in (0.0, 0.25, 0.5, 1.0)],
                                             "lowpass": [{"severity": s, "fad": 4 * s} for s in (0.0, 0.5, 1.0)]}}


def tone(freq: float, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def metadata(protocol: dict | None = None, embedders: dict | None = None) -> dict:
    return {
        "versions": {"musiclm-eval": "0.1.0", "torch": "2.14.1"},
        "git_commit": "abc1234",
        "seeds": {"bootstrap": 0},
        "embedders": embedders or {"mel": "mel-64-v1"},
        "checkpoints": {"mulan-ref": "f00d" * 16},
        "protocol": protocol or {"sample_rate": 16000, "normalize": "none", "kld_direction": "ref||gen"},
    }


def make_results_dir(root: Path, name: str = "run_a", protocol: dict | None = None,
                     embedders: dict | None = None, extras: bool = True) -> Path:
    """A complete results dir: results.json, per_clip.csv, WAVs, degradation.json and memorization/."""
    out = root / name
    ref = out / "reference"
    for i, y in enumerate(YTIDS):
        save_audio(ref / f"{y}.wav", tone(220 * (i + 1), seed=i), SR)
    rows = []
    for k, (system, folder) in enumerate(SYSTEMS.items()):
        for i, y in enumerate(YTIDS):
            save_audio(out / folder / f"{y}.wav", tone(230 * (i + 1) + 10 * k, seed=10 + i), SR)
            rows.append({
                "system": system, "ytid": y, "caption": CAPTIONS[i],
                # writers take ordinary paths: one system relative to the cwd, the other absolute;
                # the store records both relative to itself
                "audio_path": os.path.relpath(out / folder / f"{y}.wav") if k == 0 else str(out / folder / f"{y}.wav"),
                "reference_path": str(ref / f"{y}.wav"),
                **{m: v[i] for m, v in SCORES[system].items()},
                "aspect_list": ASPECTS[i],
            })
    systems = {s: {"dir": out / SYSTEMS[s], "n_clips": len(YTIDS), "missing_ids": [], "skipped": [],
                   "metrics": METRICS[s]} for s in SYSTEMS}
    write_store(out, "compare", systems, per_clip=pd.DataFrame(rows), reference={"dir": ref, "n_clips": len(YTIDS)},
                metadata=metadata(protocol, embedders), created="2025-01-01T00:00:00Z")
    if extras:
        (out / "degradation.json").write_text(json.dumps(DEGRADATION))
        memo = out / "memorization"
        memo.mkdir()
        (memo / "memorization.json").write_text(json.dumps(MEMO))
        train = memo / "train"
        save_audio(train / "tr000001.wav", tone(440, seed=99), SR)
        pd.DataFrame([
            {"generated_id": YTIDS[0], "train_id": "tr000001", "gen_offset_s": 1.0, "train_offset_s": 12.5,
             "cost": 0.004, "exact": True, "generated_path": f"../gen_ref/{YTIDS[0]}.wav",
             "train_path": "train/tr000001.wav"},
            {"generated_id": YTIDS[2], "train_id": "tr000777", "gen_offset_s": 0.0, "train_offset_s": 3.0,
             "cost": 0.011, "exact": False},
        ]).to_csv(memo / "matches.csv", index=False)
    return out


def make_demo_store(root: Path) -> Path:
    """The layout ``make run`` leaves: audio in folders beside the store, written from ``root`` as the cwd
    with cwd-relative paths (``results/demo/reference/…``), through ``write_store``. Returns the store."""
    demo = root / "results" / "demo"
    rows = []
    for i, y in enumerate(YTIDS):
        save_audio(demo / "reference" / f"{y}.wav", tone(220 * (i + 1), seed=i), SR)
        for k, system in enumerate(SYSTEMS):
            save_audio(demo / "systems" / system / f"{y}.wav", tone(230 * (i + 1) + 10 * k, seed=10 + i), SR)
            rows.append({"system": system, "ytid": y, "caption": CAPTIONS[i], "aspect_list": ASPECTS[i],
                         "audio_path": f"results/demo/systems/{system}/{y}.wav",
                         "reference_path": f"results/demo/reference/{y}.wav",
                         **{m: v[i] for m, v in SCORES[system].items()}})
    cwd = os.getcwd()
    os.chdir(root)
    try:
        write_store("results/demo/results", "compare",
                    {s: {"dir": f"results/demo/systems/{s}", "n_clips": len(YTIDS), "metrics": METRICS[s]} for s in SYSTEMS},
                    per_clip=pd.DataFrame(rows), reference={"dir": "results/demo/reference", "n_clips": len(YTIDS)},
                    metadata=metadata())
    finally:
        os.chdir(cwd)
    return demo / "results"


def make_study_db(root: Path, answers: tuple[int, ...] = (2, 1, -1, 2, 0, 1)) -> str:
    """A finished 2-rater study (built and rated through human_eval's API); returns its SQLite URL.

    Each rater answers their trials by cycling through ``answers`` (+2 strong left … −2 strong right).
    """
    from human_fixtures import make_sources

    from human_eval import db
    from human_eval.assign import rater_by_token, submit_rating, view_for
    from human_eval.design import create_study

    dirs, ref, captions = make_sources(root / "sources", n_items=4, seconds=0.5, sr=8000)
    url = f"sqlite:///{root / 'study.db'}"
    created = create_study(url, dirs, captions, reference=ref, ratings_per_pair=4, ratings_per_trial=2, raters=2,
                           attention_checks=0, seed=0, sample_rate=8000, seconds=0.5)
    engine = db.open_db(url)
    try:
        sessions = db.sessions(engine)
        for token in created.tokens:
            with sessions() as s:
                rater_id = rater_by_token(s, token).id
            k = 0
            while (view := view_for(sessions, rater_id)) is not None:
                submit_rating(sessions, rater_id, view.assignment_id, answers[k % len(answers)])
                k += 1
    finally:
        engine.dispose()
    return url

"""The procedural captioned music corpus: the project's embedded default data set and metric test bed.

Each clip is a small piece of music — chords, a bass line, a melody and drums — rendered from a
``ClipSpec`` that is drawn from ``(seed, index)`` alone, so clip *i* is the same whatever *n* is, and
work can be split across processes without changing a byte. A clip's id names everything its bytes
depend on — ``syn-s<seed>-<settings>-<index>`` (``clip_id``) — so corpora made with other seeds or
settings never collide on ids, and a training split recorded as settings + split (``split_record``)
can be regenerated id for id (what tests/test_splits.py checks every shipped manifest against). Captions are generated from the same
spec, so every word about instruments, tempo, mood and style is true of the audio: that is what makes
the corpus usable for training the classifier and MuLan, and for checking that metrics move the
right way.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.artifacts import data_hash
from metrics.audio import save_audio
from metrics.errors import InputError
from metrics.io import file_sha256
from metrics.musiccaps import write_captions
from musiclm_ref.data.render import render
from musiclm_ref.data.specs import NOTE_NAMES, STYLES, audioset_labels, caption_for, sample_spec, tempo_class
from musiclm_ref.data.splits import clip_id, split_indices, split_of, split_record


@dataclass
class CorpusInfo:
    out_dir: str
    n: int
    seconds: float
    sample_rate: int
    seed: int
    data_sha256: str
    styles: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    ids: dict = field(default_factory=dict)  # split_record(): the settings that regenerate the ids, and their digest

    def summary(self) -> str:
        styles = ", ".join(f"{k} {v}" for k, v in sorted(self.styles.items()))
        return (
            f"corpus: {self.n} clips × {self.seconds:g} s at {self.sample_rate} Hz (seed {self.seed}) in {self.out_dir}\n"
            f"  splits: train {self.splits.get('train', 0)}, eval {self.splits.get('eval', 0)}\n"
            f"  styles: {styles}\n"
            f"  data sha256: {self.data_sha256[:16]}…"
        )


def _render_job(args: tuple) -> None:
    """Render and write one clip in the worker (sending 10 s of float32 back costs more than writing it)."""
    spec, seconds, sr, path = args
    save_audio(path, render(spec, seconds, sr), sr)


def _pool_context():
    # fork avoids re-importing scipy/pandas in every worker (seconds on a loaded machine); the
    # workers only run numpy/scipy code, so forking is safe. spawn where fork does not exist.
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def generate_corpus(
    out_dir: str | Path,
    n: int,
    seconds: float = 10.0,
    seed: int = 0,
    sample_rate: int = 24000,
    styles: list[str] | None = None,
    workers: int = 1,
    split: str | None = None,
) -> CorpusInfo:
    """Write ``<ytid>.wav``, ``captions.csv`` (MusicCaps columns) and ``labels.csv`` to ``out_dir``.

    With ``styles``, clip i gets style ``styles[i % len(styles)]`` (balanced); otherwise its own draw.
    Clip i is in the eval split when ``i % 5 == 4`` (20 %, independent of seed and n); captions.csv
    marks those rows ``is_audioset_eval = is_balanced_subset = True``. ``split="eval"`` (or ``"train"``)
    writes only the first ``n`` clips of that split — the same bytes and ids as in the full corpus.
    ``workers`` renders in parallel processes; the bytes do not depend on it.
    """
    if n < 1:
        raise InputError("n must be at least 1")
    if seconds <= 0:
        raise InputError("seconds must be positive")
    for s in styles or []:
        if s not in STYLES:
            raise InputError(f"unknown style {s!r}; expected one of {', '.join(sorted(STYLES))}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = [sample_spec(seed, i, styles[i % len(styles)] if styles else None) for i in split_indices(n, split)]
    ident = {s.index: clip_id(seed, s.index, seconds, sample_rate, styles) for s in specs}
    jobs = [(s, seconds, sample_rate, out / f"{ident[s.index]}.wav") for s in specs]
    if workers > 1 and n > 1:
        with _pool_context().Pool(min(workers, n)) as pool:
            for _ in pool.imap_unordered(_render_job, jobs, chunksize=2):
                pass
    else:
        for j in jobs:
            _render_job(j)
    cap_rows, label_rows = [], []
    for spec in specs:
        ytid = ident[spec.index]
        caption, aspects = caption_for(spec, np.random.default_rng([seed, spec.index, 15485863]))
        part = split_of(spec.index)
        cap_rows.append({
            "ytid": ytid, "start_s": 0, "end_s": seconds, "audioset_positive_labels": audioset_labels(spec),
            "aspect_list": aspects, "caption": caption, "author_id": 0,
            "is_balanced_subset": part == "eval", "is_audioset_eval": part == "eval",
        })  # fmt: skip
        label_rows.append({
            "ytid": ytid, "split": part, "style": spec.style, "tempo_bpm": spec.tempo,
            "tempo_class": tempo_class(spec.tempo), "key": NOTE_NAMES[spec.key], "mode": spec.mode,
            "meter": f"{spec.meter}/4", "drums": spec.drums, "instruments": ";".join(spec.instruments),
            "mood": spec.mood, "melody_id": spec.melody_id, "tags": ";".join(spec.tags),
        })  # fmt: skip
    write_captions(pd.DataFrame(cap_rows), out / "captions.csv")
    pd.DataFrame(label_rows).to_csv(out / "labels.csv", index=False, lineterminator="\n")
    files = {p.name: file_sha256(p) for p in out.iterdir()
             if p.is_file() and (p.suffix == ".wav" or p.name in ("captions.csv", "labels.csv"))}  # fmt: skip
    info = CorpusInfo(
        str(out), n, seconds, sample_rate, seed, data_hash(files),
        dict(Counter(s.style for s in specs)), dict(Counter(r["split"] for r in label_rows)),
        split_record(seed, n, seconds, sample_rate, styles, split),
    )  # fmt: skip
    # the folder's own record (without out_dir, so that the same seed gives the same bytes anywhere)
    record = {k: v for k, v in asdict(info).items() if k != "out_dir"}
    (out / "corpus.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return info


def load_labels(data_dir: str | Path) -> pd.DataFrame:
    """``labels.csv`` with ``tags``/``instruments`` as lists, indexed by ytid."""
    path = Path(data_dir) / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found (is this a corpus made by `musiclm-eval synth`?)")
    df = pd.read_csv(path, dtype={"ytid": str}, keep_default_na=False)
    for col in ("tags", "instruments"):
        df[col] = [[t for t in str(v).split(";") if t] for v in df[col]]
    return df.set_index("ytid", drop=False)

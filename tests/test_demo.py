"""The demo's derived folders: rebuilt on every run, so an earlier run's clips are never scored as this run's."""

from __future__ import annotations

import soundfile as sf

from benchmarks.demo import split_folder
from musiclm_ref.data.synth import generate_corpus, load_labels


def test_split_folder_is_rebuilt_not_merged(tmp_path):
    generate_corpus(tmp_path / "corpus", n=10, seconds=0.5, seed=3, workers=1)
    out = tmp_path / "reference"
    out.mkdir()
    (out / "syn00004.wav").write_bytes(b"stale clip of an old run")  # an id the corpus no longer has
    labels = load_labels(tmp_path / "corpus")
    eval_ids = sorted(labels.index[labels["split"] == "eval"])
    sf.write(out / f"{eval_ids[0]}.wav", [0.0] * 100, 24000)  # same id, other audio
    split_folder(tmp_path / "corpus", out, "eval")
    assert sorted(p.stem for p in out.glob("*.wav")) == eval_ids
    for i in eval_ids:
        assert (out / f"{i}.wav").read_bytes() == (tmp_path / "corpus" / f"{i}.wav").read_bytes()

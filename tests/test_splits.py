"""Clean splits and ids: ids unique across seeds and settings, every shipped piece's training clips recorded,
and no evaluation clip among them."""

from __future__ import annotations

import hashlib
import json

import pytest

from musiclm_ref.data.splits import (
    HELD_OUT,
    SHIPPED_MANIFESTS,
    clip_id,
    corpus_ids,
    held_out_ids,
    ids_from_record,
    leaks,
    manifest_entries,
    shipped_training_ids,
    split_record,
)
from musiclm_ref.data.synth import generate_corpus, load_labels

# every fitted piece the project ships (a new one must record its train_splits to pass)
PIECES = {"codec.pt", "semantic_tokenizer.pt", "semantic_tokenizer_logmel.pt", "mulan_rvq.pt", "melody.pt", "semantic_stage.pt", "coarse_stage.pt",
          "fine_stage.pt", "mulan-tiny", "classifier-tiny"}


def test_ids_unique_across_seeds_and_settings():
    sets = [corpus_ids(0, 50), corpus_ids(1, 50), corpus_ids(0, 50, seconds=4.0), corpus_ids(0, 50, sample_rate=16000),
            corpus_ids(0, 50, styles=["rock"]), corpus_ids(0, 50, styles=["rock", "jazz"])]
    flat = [i for s in sets for i in s]
    assert len(flat) == len(set(flat)) == 300
    assert clip_id(0, 4) == "syn-s0-10s-00004" and clip_id(12, 3, 2.5, 16000) == "syn-s12-2.5s-16000hz-00003"


def test_files_match_ids_and_split_bytes_match_full_corpus(tmp_path):
    full = generate_corpus(tmp_path / "full", n=10, seconds=1.0, seed=5)
    ev = generate_corpus(tmp_path / "ev", n=2, seconds=1.0, seed=5, split="eval")
    assert sorted(p.stem for p in (tmp_path / "full").glob("*.wav")) == sorted(corpus_ids(5, 10, 1.0))
    assert list(load_labels(tmp_path / "ev").index) == corpus_ids(5, 2, 1.0, split="eval") == ["syn-s5-1s-00004", "syn-s5-1s-00009"]
    assert set(load_labels(tmp_path / "ev")["split"]) == {"eval"} and ev.splits == {"eval": 2} and full.splits == {"train": 8, "eval": 2}
    for i in corpus_ids(5, 2, 1.0, split="eval"):
        a, b = (tmp_path / "full" / f"{i}.wav").read_bytes(), (tmp_path / "ev" / f"{i}.wav").read_bytes()
        assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    # corpus.json records the settings that regenerate the ids
    rec = json.loads((tmp_path / "ev" / "corpus.json").read_text())["ids"]
    assert ids_from_record(rec) == list(load_labels(tmp_path / "ev").index)
    assert corpus_ids(5, 10, 1.0, part="eval") == ids_from_record(split_record(5, 10, 1.0, part="eval"))


def test_tampered_record_is_refused():
    rec = split_record(0, 20, part="train")
    assert len(ids_from_record(rec)) == 16
    with pytest.raises(ValueError, match="regenerates 20 ids"):
        ids_from_record({**rec, "part": None})
    with pytest.raises(ValueError, match="lacks seed"):
        ids_from_record({k: v for k, v in rec.items() if k != "seed"})


def test_every_shipped_piece_records_its_training_split():
    seen = shipped_training_ids()  # raises naming the manifest when a record is missing or stale
    assert {k.split(":", 1)[1] for k in seen} == PIECES
    assert all(len(ids) >= 200 for ids in seen.values())
    for m in SHIPPED_MANIFESTS:
        for name, entry in manifest_entries(m).items():
            assert entry["train_splits"] and all(len(r["ids_sha256"]) == 64 for r in entry["train_splits"]), (m, name)


def test_no_eval_id_in_any_training_manifest():
    """The demo's and benchmarks.hierarchy's evaluation clips (up to 1000 of them) were seen by no piece."""
    assert leaks(held_out_ids(1000)) == {}
    assert leaks(held_out_ids(200, seconds=5.0)) == {}
    assert HELD_OUT["seed"] not in {r["seed"] for m in SHIPPED_MANIFESTS for e in manifest_entries(m).values()
                                    for r in e["train_splits"]}


def test_the_one_held_out_rule_keeps_every_shipped_record_valid():
    """``metrics.artifacts.is_held_out`` is the corpus split every shipped record was written with: each piece
    fitted on a corpus' train part (stages, MuLan, classifier) saw no clip the rule holds out, and every
    evaluation clip is one the rule holds out (docs/protocol.md, "Held-out clips")."""
    from metrics.artifacts import is_held_out

    train_parts = [(m, name, r) for m in SHIPPED_MANIFESTS for name, entry in manifest_entries(m).items()
                   for r in entry["train_splits"] if r["generator"].endswith("generate_corpus") and r["part"] == "train"]
    assert {name for _, name, _ in train_parts} >= {"semantic_stage.pt", "coarse_stage.pt", "fine_stage.pt", "mulan-tiny",
                                                    "classifier-tiny"}
    for m, name, r in train_parts:
        assert not any(map(is_held_out, ids_from_record(r))), (m, name)
    assert all(map(is_held_out, held_out_ids(1000)))


def test_leak_check_can_fail(tmp_path):
    # the old demo evaluated on seed 0's eval split, which the codec, tokenizer and RVQ were fitted on
    found = leaks(corpus_ids(0, 100, part="eval"))
    assert {k.split(":", 1)[1] for k in found} == {"codec.pt", "semantic_tokenizer.pt", "semantic_tokenizer_logmel.pt",
                                                   "mulan_rvq.pt", "melody.pt"}
    assert found["manifest.json:codec.pt"][0] == "syn-s0-10s-00004"
    # a manifest without train_splits is an error, not silently clean
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps({"x.pt": {"command": "musiclm-eval train x"}}))
    with pytest.raises(ValueError, match="x.pt: no train_splits recorded"):
        leaks(held_out_ids(5), manifests=[bad])

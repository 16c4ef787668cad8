"""The artifact layer (metrics/artifacts.py): every trained piece is read, saved, described and held out one way.

- a checkpoint of another kind (or a missing one) is refused by every piece's loader with the file and the
  expected kind in the message;
- a save interrupted mid-write leaves the previous file intact, and no module writes or reads a torch
  checkpoint except through the layer;
- one held-out rule: the corpus split, the classifier's rows, stage training, streamed training and the
  codec all hold out the clips ``is_held_out`` names.
"""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest
import torch

from metrics import artifacts
from metrics.artifacts import (
    CheckpointError,
    data_hash,
    ids_sha256,
    is_held_out,
    manifest_entries,
    manifest_entry,
    read_checkpoint,
    save_checkpoint,
    split_held_out,
    write_manifest_entry,
    write_sidecar,
)

ROOT = Path(__file__).resolve().parents[1]

# (module, format constant, loader, error class): every trained piece's checkpoint loader
PIECES = [
    ("musiclm_ref.codec", "CHECKPOINT_FORMAT", "load_codec", "CodecError"),
    ("musiclm_ref.semantic", "CHECKPOINT_FORMAT", "load_tokenizer", "SemanticError"),
    ("musiclm_ref.mulan", "CHECKPOINT_FORMAT", "load_mulan", "MulanError"),
    ("musiclm_ref.pipeline", "RVQ_FORMAT", "load_mulan_rvq", "PipelineError"),
    ("musiclm_ref.stages", "CHECKPOINT_FORMAT", "load_stage", "StageError"),
    ("musiclm_ref.melody", "CHECKPOINT_FORMAT", "load_melody", "MelodyError"),
    ("metrics.classifier", "CHECKPOINT_FORMAT", "load_classifier", "ClassifierError"),
    ("metrics.embedders.torch_ckpt", "FORMAT", "load_torch_embedder", "EmbedderError"),
]


def _piece(module: str, fmt: str, loader: str, error: str):
    mod = importlib.import_module(module)
    err = getattr(mod, error, None) or getattr(importlib.import_module("metrics.embedders"), error)
    return getattr(mod, fmt), getattr(mod, loader), err


@pytest.mark.parametrize("piece", PIECES, ids=[p[0].rsplit(".", 1)[-1] for p in PIECES])
def test_a_checkpoint_of_another_kind_names_the_file_and_the_expected_kind(piece, tmp_path):
    fmt, load, error = _piece(*piece)
    other = save_checkpoint({"format": "musiclm-eval/something-else/1", "state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(error) as e:
        load(other)
    msg = str(e.value)
    assert str(other) in msg and repr(fmt) in msg and "'musiclm-eval/something-else/1'" in msg, msg
    assert "not a" in msg
    with pytest.raises(error, match=r"nothere\.pt: .*not found"):
        load(tmp_path / "nothere.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(error, match=r"garbage\.pt: "):
        load(garbage)


def test_the_layer_error_defaults_to_checkpoint_error_an_input_error(tmp_path):
    from metrics.errors import InputError

    with pytest.raises(CheckpointError, match=r"x\.pt: not a thing \(format None, expected 'f/1'\)"):
        read_checkpoint(save_checkpoint({"state_dict": {}}, tmp_path / "x.pt"), "f/1", "a thing")
    assert issubclass(CheckpointError, InputError)


def _interrupting_save(obj, f, *a, **kw):
    f.write(b"PK\x03\x04 half a checkpoint")
    raise RuntimeError("disk full")


def test_an_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = save_checkpoint({"format": "f/1", "value": torch.tensor([1.0])}, tmp_path / "ckpt.pt")
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _interrupting_save)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({"format": "f/1", "value": torch.tensor([2.0])}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert float(read_checkpoint(path, "f/1", "a test checkpoint")[0]["value"]) == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind
    with pytest.raises(RuntimeError):  # a first save interrupted leaves no file at all
        monkeypatch.setattr(torch, "save", _interrupting_save)
        save_checkpoint({"format": "f/1"}, tmp_path / "new.pt")
    assert not (tmp_path / "new.pt").exists()


def test_a_pieces_saver_goes_through_the_layer(tmp_path, monkeypatch):
    """The MuLan RVQ as one real piece: its saver interrupted mid-write keeps the old RVQ."""
    from musiclm_ref.pipeline import load_mulan_rvq, save_mulan_rvq
    from musiclm_ref.quantize import ResidualVQ

    torch.manual_seed(0)
    old = ResidualVQ(4, 2, 8).fit(torch.randn(64, 4), iters=2, seed=0)
    path = save_mulan_rvq(old, tmp_path / "mulan_rvq.pt")
    monkeypatch.setattr(torch, "save", _interrupting_save)
    with pytest.raises(RuntimeError, match="disk full"):
        save_mulan_rvq(ResidualVQ(4, 2, 8).fit(torch.randn(64, 4) + 5, iters=2, seed=1), path)
    monkeypatch.undo()
    assert load_mulan_rvq(path).to_dict().keys() == old.to_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(load_mulan_rvq(path).codebooks, old.codebooks))


# modules that may call torch.save / torch.load themselves, and why
TORCH_IO_ALLOWED = {
    "metrics/artifacts.py": "the layer itself",
    "metrics/embedders/passt.py": "loads the upstream PaSST weights (a third-party state dict, not a project checkpoint)",
    "metrics/embedders/openl3.py": "loads the converted upstream OpenL3 weights (a third-party state dict)",
    "musiclm_ref/pipeline.py": "torch.save into a BytesIO to hash tensors (_bytes_sha), no file",
}


def _torch_io_calls(src: str, name: str = "<src>") -> list[str]:
    """``torch.save`` / ``torch.load`` calls in a module's source, as ``line: torch.save``."""
    return [f"{node.lineno}: torch.{node.func.attr}" for node in ast.walk(ast.parse(src, name))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("save", "load")
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"]  # fmt: skip


def test_no_module_writes_or_reads_a_torch_checkpoint_outside_the_layer():
    offenders = []
    for pkg in ("metrics", "musiclm_ref", "benchmarks", "dashboards", "human_eval"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in TORCH_IO_ALLOWED:
                offenders += [f"{rel}:{c}" for c in _torch_io_calls(path.read_text(), rel)]
    assert not offenders, "use metrics.artifacts.save_checkpoint / read_checkpoint:\n" + "\n".join(offenders)


def test_the_layer_check_can_fail():
    """The scan above sees a stray save or load (guards against a scan that silently matches nothing)."""
    src = "import torch\n\ndef f(m, p):\n    torch.save(m.state_dict(), p)\n    return torch.load(p, weights_only=True)\n"
    assert _torch_io_calls(src) == ["4: torch.save", "5: torch.load"]
    assert _torch_io_calls("from metrics.artifacts import save_checkpoint\nsave_checkpoint({}, 'p')\n") == []


# -- manifests and hashes ----------------------------------------------------------------------


def test_manifest_entries_merge_atomically_in_one_style(tmp_path):
    m = tmp_path / "manifest.json"
    a = manifest_entry("musiclm-eval train codec --data D", 0, "ab" * 32, metrics={"x": 1.0}, preset="tiny")
    write_manifest_entry(m, "codec.pt", a)
    write_manifest_entry(m, "melody.pt", manifest_entry("musiclm-eval train melody", 1, None, train_splits=[{"n": 2}]))
    got = manifest_entries(m)
    assert set(got) == {"codec.pt", "melody.pt"} and got["codec.pt"] == a
    assert {"command", "seed", "data_hash", "metrics"} <= set(got["melody.pt"]) and got["melody.pt"]["train_splits"] == [{"n": 2}]
    side = write_sidecar(tmp_path / "mulan-tiny.pt", a)
    assert side.name == "mulan-tiny.json" and manifest_entries(side) == {"mulan-tiny": a}
    m.write_text("[1, 2]")
    with pytest.raises(artifacts.ManifestError, match=r"manifest\.json: a manifest maps"):
        write_manifest_entry(m, "codec.pt", a)
    assert json.loads(m.read_text()) == [1, 2]  # left as it was


def test_one_data_hash_and_one_ids_digest():
    class Clip:
        def __init__(self, id, sha256):
            self.id, self.sha256 = id, sha256

    clips = [Clip("b", "2" * 64), Clip("a", "1" * 64)]
    assert artifacts.clips_hash(clips) == data_hash({"a": "1" * 64, "b": "2" * 64}) == data_hash([("b", "2" * 64), ("a", "1" * 64)])
    assert data_hash({"a": "1" * 64}) != data_hash({"a": "3" * 64}) != data_hash({"c": "3" * 64})
    assert ids_sha256(["b", "a"]) == ids_sha256(["a", "b"]) != ids_sha256(["a"])
    from musiclm_ref.data import splits
    from musiclm_ref.data.folder import AudioFolder

    assert splits.ids_sha256 is ids_sha256 and AudioFolder.ids_hash.__doc__ and "ids_sha256" in AudioFolder.ids_hash.__doc__


# -- the one held-out rule -----------------------------------------------------------------------


def test_the_held_out_rule_is_one_in_five_by_corpus_index_else_by_id_hash():
    from musiclm_ref.data.splits import clip_id, split_of

    for seed, seconds, sr in [(0, 10.0, 24000), (7, 4.0, 16000), (1, 1.0, 24000)]:
        for i in range(40):
            ident = clip_id(seed, i, seconds, sr)
            assert is_held_out(ident) == is_held_out(f"sub/dir/{ident}") == (split_of(i) == "eval") == (i % 5 == 4)
    other = [f"track-{i}" for i in range(2000)]
    frac = sum(map(is_held_out, other)) / len(other)
    assert 0.17 < frac < 0.23
    train, held = split_held_out(reversed(other))
    assert (train, held) == split_held_out(other) and not set(train) & set(held) and len(train) + len(held) == 2000
    lone = next(i for i in other if is_held_out(i))
    assert split_held_out([lone]) == ([lone], [])  # never nothing to train on


def test_every_trainer_uses_the_one_rule():
    """The codec, stage training (corpus and streamed) and data.splits import the layer's rule, not a copy."""
    import musiclm_ref.data.splits
    import musiclm_ref.data.stream  # noqa: F401
    import musiclm_ref.train.codec
    import musiclm_ref.train.stages

    assert musiclm_ref.train.codec.split_held_out is split_held_out
    assert musiclm_ref.data.splits.held_out_index is artifacts.held_out_index
    ids = [f"syn-s3-4s-{i:05d}" for i in range(12)] + ["x", "y", "z"]
    train_rows, held_rows = musiclm_ref.train.stages._split(ids)
    assert [ids[i] for i in held_rows] == [i for i in ids if is_held_out(i)] and len(train_rows) + len(held_rows) == 15
    src = (ROOT / "musiclm_ref" / "data" / "stream.py").read_text()
    assert "split_held_out(by_id)" in src


def test_the_corpus_split_the_classifier_and_mulan_hold_out_the_same_clips(tmp_path):
    import pandas as pd

    from metrics.classifier_training import read_tag_labels
    from musiclm_ref.data.synth import generate_corpus

    generate_corpus(tmp_path, n=10, seconds=1.0, seed=3)
    labels = pd.read_csv(tmp_path / "labels.csv", dtype=str)
    assert {r.ytid: r.split == "eval" for r in labels.itertuples()} == {r.ytid: is_held_out(r.ytid) for r in labels.itertuples()}
    rows = read_tag_labels(tmp_path)
    assert sorted(r[0] for r in rows if r[1] == "eval") == split_held_out(labels["ytid"])[1]
    assert len(split_held_out(labels["ytid"])[1]) == 2

"""MCC: the formula on constructed embeddings, pairing by id, and the shipped MuLan on the corpus."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.audio import PairingError
from metrics.embedders import EmbedderError
from metrics.errors import EvalError
from metrics.mcc import MCC, JointModelError, parse_joint_spec
from metrics.models import ModelSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread per module


def _mcc(text: dict, audio: dict, n_boot: int = 1000, seed: int = 0):
    """MCC through the ``MCC`` metric: captions on the reference side, audio windows on the generated side."""
    m = MCC(n_boot=n_boot, seed=seed)
    m.update("reference", text)
    m.update("generated", audio)
    return m.compute()


def test_known_value_on_constructed_embeddings():
    text = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 2.0]), "c": np.array([3.0, 4.0])}
    audio = {"a": np.array([[2.0, 0.0]]), "b": np.array([[1.0, 1.0]]), "c": np.array([[-3.0, -4.0], [-6.0, -8.0]])}
    res = _mcc(text, audio)
    expected = [1.0, 1 / math.sqrt(2), -1.0]
    assert res.value == pytest.approx(np.mean(expected))
    assert res.per_item == pytest.approx(dict(zip("abc", expected)))
    lo, hi = res.ci95
    assert -1.0 <= lo <= res.value <= hi <= 1.0


def test_pairing_by_id_ignores_order(rng):
    ids = [f"clip{i:02d}" for i in range(10)]
    text = {i: rng.standard_normal(8) for i in ids}
    audio = {i: rng.standard_normal((3, 8)) for i in ids}
    shuffled = {i: audio[i] for i in rng.permutation(ids)}
    a, b = _mcc(text, audio, seed=3), _mcc(text, shuffled, seed=3)
    assert a.value == b.value and a.ci95 == b.ci95 and a.per_item == b.per_item
    with pytest.raises(PairingError, match="1 generated clip.s. have no caption"):
        _mcc({i: text[i] for i in ids[:-1]}, audio)


def test_bad_embeddings_are_clear_errors():
    with pytest.raises(ValueError, match="audio embeddings: zero-length"):
        _mcc({"a": np.ones(3), "b": np.ones(3)}, {"a": np.array([[1.0, 0, 0]]), "b": np.zeros((2, 3))})


def test_unknown_joint_model_is_a_clear_error(tmp_path):
    with pytest.raises(JointModelError, match="unknown joint model 'nope'"):
        parse_joint_spec("nope")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(EvalError, match="bad.pt"):
        ModelSpec(*parse_joint_spec(str(bad)), kind="joint").build()


def test_clap_backend_needs_a_checkpoint_and_the_package(tmp_path):
    with pytest.raises(EmbedderError, match="CLAP checkpoint not found"):
        ModelSpec(*parse_joint_spec(f"clap:{tmp_path / 'missing.pt'}"), kind="joint").build()


def test_mcc_on_corpus_own_captions_beat_shuffled(small_corpus):
    from metrics.audio import load_dir
    from metrics.musiccaps import load_captions

    joint = ModelSpec(*parse_joint_spec("mulan-ref"), kind="joint").build()  # as the pipeline builds it
    clips = load_dir(small_corpus, sr=joint.audio.sample_rate).clips
    caps = load_captions(small_corpus / "captions.csv")["caption"].to_dict()
    ids = sorted(caps)
    audio = {c.id: joint.audio.embed(c.wave) for c in clips}
    text = dict(zip(ids, joint.embed_text([caps[i] for i in ids])))
    own = _mcc(text, audio, n_boot=200)
    rolled = dict(zip(ids, [text[i] for i in ids[7:] + ids[:7]]))  # every clip gets another clip's caption
    assert own.value > _mcc(rolled, audio, n_boot=200).value
    # pairing is by id: the clips in reversed file order give the same score
    assert _mcc(text, dict(reversed(list(audio.items()))), n_boot=200).value == own.value

"""MCC: the formula on constructed embeddings, pairing by id, and the shipped MuLan on the corpus."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.audio import PairingError
from metrics.mcc import JointModelError, cycle_consistency, load_joint, mcc_for_clips


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch thread: on a shared 2-core machine two threads per process oversubscribe it badly."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_known_value_on_constructed_embeddings():
    text = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    audio = np.array([[2.0, 0.0], [1.0, 1.0], [-3.0, -4.0]])
    res = cycle_consistency(text, audio, ids=["a", "b", "c"])
    expected = [1.0, 1 / math.sqrt(2), -1.0]
    assert res.value == pytest.approx(np.mean(expected))
    assert res.per_item == pytest.approx(dict(zip("abc", expected)))
    lo, hi = res.ci95
    assert -1.0 <= lo <= res.value <= hi <= 1.0


def test_pairing_by_id_ignores_order(rng):
    ids = [f"clip{i:02d}" for i in range(10)]
    text = {i: rng.standard_normal(8) for i in ids}
    audio = {i: rng.standard_normal(8) for i in ids}
    shuffled = {i: audio[i] for i in rng.permutation(ids)}
    a = cycle_consistency(text, audio, seed=3)
    b = cycle_consistency(text, shuffled, seed=3)
    assert a.value == b.value and a.ci95 == b.ci95 and a.per_item == b.per_item
    with pytest.raises(PairingError, match="audio lacks 1 id"):
        cycle_consistency(text, {i: audio[i] for i in ids[:-1]})


def test_bad_embeddings_are_clear_errors():
    with pytest.raises(ValueError, match="audio embeddings: zero-length"):
        cycle_consistency(np.ones((2, 3)), np.array([[1.0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="differ in shape"):
        cycle_consistency(np.ones((2, 3)), np.ones((3, 3)))


def test_unknown_joint_model_is_a_clear_error(tmp_path):
    with pytest.raises(JointModelError, match="unknown joint model 'nope'"):
        load_joint("nope")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(JointModelError, match="bad.pt: not a readable PyTorch checkpoint"):
        load_joint(str(bad))


def test_clap_backend_needs_a_checkpoint_and_the_package(tmp_path):
    with pytest.raises(JointModelError, match="CLAP checkpoint not found"):
        load_joint(f"clap:{tmp_path / 'missing.pt'}")


def test_mcc_on_corpus_own_captions_beat_shuffled(small_corpus):
    from metrics.audio import load_dir
    from metrics.musiccaps import load_captions

    joint = load_joint("mulan-ref")
    clips = load_dir(small_corpus).clips
    caps = load_captions(small_corpus / "captions.csv")["caption"].to_dict()
    ids = sorted(caps)
    audio = {c.id: joint.embed_audio(c.wave, c.sr)[0] for c in clips}
    text = dict(zip(ids, joint.embed_text([caps[i] for i in ids])))
    own = cycle_consistency(text, audio)
    rolled = dict(zip(ids, [text[i] for i in ids[7:] + ids[:7]]))  # every clip gets another clip's caption
    assert own.value > cycle_consistency(rolled, audio).value
    # the clip-level entry point pairs by id: reversed file order gives the same score
    assert mcc_for_clips(list(reversed(clips)), caps, joint).value == pytest.approx(own.value, abs=1e-6)
    with pytest.raises(PairingError, match="have no caption"):
        mcc_for_clips(clips, {i: caps[i] for i in ids[1:]}, joint)

"""One forward pass per model per clip, whatever roles the model plays (issue #28 item 2).

A model registered both as an embedder (FAD/KAD) and as a classifier (KLD) — musicnn-mtt in the demo —
is a network with two heads; ``metrics.extract`` runs it once per clip for both roles. A counting
model proves the count and that the values equal those of the roles run alone; clips with the same
audio under several ids (the demo's melody prompts) are computed once too.
"""

from __future__ import annotations

import numpy as np
import pytest

from metrics.audio import save_audio
from metrics.embedders import EMBEDDERS, Embedder
from metrics.extract import extract, shared_passes
from metrics.models import CLASSIFIERS, ModelSpec

SR = 16000
NAME = "counting-twin"


class Twin(Embedder):
    """Two heads of one 'network' over 0.25 s frames: 4 features (the embedder) and 3 logits (the classifier)."""

    sample_rate = SR
    shared_forward = "counting-twin/1"
    forwarded: list[int] = []  # clips per forward call, over every instance

    def __init__(self, head: str):
        self.head, self.name = head, NAME
        self.dim = 4 if head == "emb" else 3
        self.id = f"{NAME}-{head}"
        self.labels = ("a", "b", "c")
        self.activation = "softmax"

    def embed_heads(self, waves: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        Twin.forwarded.append(len(waves))
        frames = [np.asarray(w[: len(w) // 4000 * 4000], np.float64).reshape(-1, 4000) for w in waves]
        feats = [np.stack([f.mean(1), f.std(1), np.abs(f).max(1), (f**2).mean(1)], 1).astype(np.float32) for f in frames]
        return {"emb": feats, "logits": [10 * f[:, :3] for f in feats]}

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.embed_heads([wave])[self.head][0]


@pytest.fixture
def twin(monkeypatch):
    monkeypatch.setitem(EMBEDDERS._entries, NAME, lambda path=None, device="cpu": Twin("emb"))
    monkeypatch.setitem(CLASSIFIERS._entries, NAME, lambda path=None, device="cpu": Twin("logits"))
    Twin.forwarded = []
    return Twin


@pytest.fixture
def clips(tmp_path):
    rng = np.random.default_rng(5)
    for d in ("ref", "sys"):
        for i in range(12):
            save_audio(tmp_path / d / f"c{i:02d}.wav", (0.2 * rng.standard_normal(SR)).astype(np.float32), SR)
    return tmp_path


def test_a_model_in_two_roles_is_forwarded_once_per_clip_with_the_same_values(twin, clips):
    paths = sorted((clips / "ref").glob("*.wav"))
    models = {"embedder": ModelSpec(NAME).build(), "classifier": ModelSpec(NAME, kind="classifier").build()}
    assert shared_passes(models) == [("embedder", "classifier")]
    both = extract(paths, models, batch_size=5)
    assert sum(twin.forwarded) == len(paths)  # one forward per clip for both roles
    twin.forwarded = []
    alone = {k: extract(paths, {k: m}, batch_size=5)[k] for k, m in models.items()}
    assert sum(twin.forwarded) == 2 * len(paths)  # the roles run alone: two passes, the old cost
    for k in models:
        assert list(both[k]) == list(alone[k]) == [p.stem for p in paths]
        for cid in both[k]:
            np.testing.assert_array_equal(both[k][cid], alone[k][cid])


def test_evaluate_runs_the_twin_once_per_clip_and_scores_as_if_separate(twin, clips, monkeypatch):
    from metrics.evaluate import Plan, evaluate

    plan = Plan(embedders=(NAME,), classifier=NAME)
    ev = evaluate(clips / "ref", {"sys": clips / "sys"}, plan, n_boot=0)
    assert sum(twin.forwarded) == 24  # 12 reference + 12 system clips, each forwarded once
    monkeypatch.setattr(Twin, "shared_forward", None)  # the old behaviour: each role its own pass
    twin.forwarded = []
    old = evaluate(clips / "ref", {"sys": clips / "sys"}, plan, n_boot=0)
    assert sum(twin.forwarded) == 48
    got, want = ev.systems["sys"].metrics, old.systems["sys"].metrics
    assert set(got) == set(want) and {f"fad_{NAME}", "kld_musiclm"} <= set(got)
    for key in want:
        assert got[key].value == want[key].value, key


def test_a_clip_seconds_wrapper_keeps_the_shared_pass_and_its_length(twin):
    a, b = ModelSpec(NAME, seconds=1.0).build(), ModelSpec(NAME, kind="classifier", seconds=1.0).build()
    c = ModelSpec(NAME, kind="classifier", seconds=2.0).build()
    assert shared_passes({"a": a, "b": b, "c": c}) == [("a", "b"), ("c",)]  # other length: another input
    wave = np.ones(int(1.5 * SR), np.float32)
    assert a.embed_heads([wave])["emb"][0].shape == (4, 4)  # cropped to 1 s before the shared forward


def test_musicnn_as_embedder_and_classifier_is_one_pass_listed_once(tmp_path, monkeypatch, capsys):
    import metrics.embedders.musicnn as mn

    calls = []
    real = mn.run_patches
    monkeypatch.setattr(mn, "run_patches", lambda loaded, x, *a, **k: calls.append(len(x)) or real(loaded, x, *a, **k))
    rng = np.random.default_rng(6)
    paths = [tmp_path / f"m{i}.wav" for i in range(3)]
    for p in paths:  # 4 s: one 3 s musicnn patch each
        save_audio(p, (0.2 * rng.standard_normal(4 * SR)).astype(np.float32), SR)
    models = {"embedder:musicnn-mtt": ModelSpec("musicnn-mtt").build(),
              "classifier:musicnn-mtt": ModelSpec("musicnn-mtt", kind="classifier").build(),
              "embedder:mel": ModelSpec("mel").build()}
    out = extract(paths, models, progress=True)
    assert len(calls) == 1  # 3 clips, one batch, one forward for both heads
    err = capsys.readouterr().err
    assert "embed musicnn-mtt+mel" in err and "musicnn-mtt+musicnn-mtt" not in err
    tagger = models["classifier:musicnn-mtt"]
    for p in paths:  # the tagger's logits through the shared pass match it alone (batching moves float32 ulps)
        np.testing.assert_allclose(out["classifier:musicnn-mtt"][p.stem], tagger.embed_batch([_wave(p)])[0],
                                   rtol=1e-4, atol=1e-4)


def _wave(path) -> np.ndarray:
    from metrics.audio import load_audio

    return load_audio(path, sr=SR).wave


def test_clips_with_the_same_audio_are_computed_once(twin, clips, tmp_path):
    from metrics.cache import EmbeddingCache

    src = sorted((clips / "ref").glob("*.wav"))[0]
    copies = tmp_path / "prompts"
    copies.mkdir()
    for i in range(5):  # one melody prompt under five ids, as the demo writes them
        (copies / f"p{i}.wav").write_bytes(src.read_bytes())
    model = {"m": ModelSpec(NAME).build()}
    out = extract(sorted(copies.glob("*.wav")), model, cache=EmbeddingCache(tmp_path / "cache"))["m"]
    assert sum(twin.forwarded) == 1
    assert list(out) == [f"p{i}" for i in range(5)]
    for cid in out:
        np.testing.assert_array_equal(out[cid], out["p0"])

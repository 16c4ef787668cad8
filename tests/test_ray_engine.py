"""``--engine ray``: same numbers as the local engine, survives a killed worker, optional extra.

One module-scoped local Ray (``num_cpus=2``, no dashboard) serves every test; Ray-only tests skip
cleanly when ``ray`` is not importable, the missing-extra test runs everywhere.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from metrics.audio import AudioError, SilentAudioWarning, scan_dir
from metrics.cache import EmbeddingCache
from metrics.embedders import Embedder, get_embedder
from metrics.engine import LOCAL, EngineUnavailableError, make_engine, stats_of

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (extra 'ray')")


@pytest.fixture(scope="module")
def ray_cluster():
    if not HAVE_RAY:
        pytest.skip("ray is not installed (extra 'ray')")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # test-module classes (the crashing embedder) must reach the workers by value, not by import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def mel() -> Embedder:
    return get_embedder("mel")


@pytest.fixture(scope="module")
def local_embs(small_corpus, mel):
    return LOCAL.embed(list(scan_dir(small_corpus).values()), mel)


@needs_ray
def test_stats_cli_ray_equals_local_and_shares_the_cache(ray_cluster, small_corpus, local_embs, mel, tmp_path):
    """`stats --engine ray` (per-batch partial stats merged on the driver) = local per-clip folds to 1e-10,
    and the entries it caches are the local engine's keys: a local run on the same cache is all hits."""
    from benchmarks.cli import main
    from metrics.fad import EmbeddingStats

    cache_dir = tmp_path / "cache"
    out = tmp_path / "ray.npz"
    res = CliRunner().invoke(main, ["stats", "--audio", str(small_corpus), "--stats", str(out), "--embedder", "mel",
                                     "--cache-dir", str(cache_dir), "--engine", "ray", "--no-progress"])
    assert res.exit_code == 0, res.output
    got, ref = EmbeddingStats.load(out), stats_of(local_embs, mel)
    assert (got.n, got.n_clips, got.embedder) == (ref.n, ref.n_clips, ref.embedder) == (ref.n, 24, mel.id)
    np.testing.assert_allclose(got.mean, ref.mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.cov, ref.cov, rtol=0, atol=1e-10)
    assert got.config == ref.config

    cache = EmbeddingCache(cache_dir)
    again = LOCAL.embed(list(scan_dir(small_corpus).values()), mel, cache)
    assert (cache.hits, cache.misses) == (24, 0)
    assert all(np.array_equal(again[k], local_embs[k]) for k in local_embs)


@needs_ray
def test_embed_and_error_policy_match_local(ray_cluster, small_corpus, local_embs, mel, tmp_path):
    """Per-clip embeddings are bit-identical; bad files give the local engine's skips and messages."""
    paths = list(scan_dir(small_corpus).values())[:4]
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    import soundfile as sf

    sf.write(tmp_path / "short.wav", np.zeros(4000, np.float32), 16000)  # 0.25 s: shorter than one mel window
    sf.write(tmp_path / "tiny.wav", np.zeros(10, np.float32), 16000)
    items = [*paths, tmp_path / "broken.wav", tmp_path / "tiny.wav", tmp_path / "short.wav"]
    from metrics.ray_engine import RayEngine

    engine = RayEngine(actors=1)  # one actor starts faster on the shared 2-core machine
    with pytest.warns(SilentAudioWarning) as local_warned:
        want = LOCAL.embed(items, mel, on_error="skip")
    with pytest.warns(SilentAudioWarning) as ray_warned:  # raised in a worker, re-emitted here
        got = engine.embed(items, mel, on_error="skip")
    assert sorted(str(w.message) for w in ray_warned) == sorted(str(w.message) for w in local_warned)
    assert len(ray_warned) == 2
    assert list(got) == list(want)
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert [vars(s) for s in got.skipped] == [vars(s) for s in want.skipped] and len(want.skipped) == 3
    for k in list(want)[:4]:
        assert np.array_equal(got[k], local_embs[k])
    items = [*paths[:2], tmp_path / "broken.wav"]
    with pytest.raises(AudioError) as local_err:
        LOCAL.embed(items, mel)
    with pytest.raises(AudioError) as ray_err:
        engine.embed(items, mel)
    assert str(ray_err.value) == str(local_err.value)


class CrashOnceMel(Embedder):
    """The mel embedder, except that the first process to embed anything dies (``os._exit``) —
    a worker killed mid-extraction. The marker file makes it crash exactly once across restarts."""

    def __init__(self, marker: Path):
        self.inner = get_embedder("mel")
        for attr in ("name", "id", "sample_rate", "dim", "min_seconds", "pad_to_seconds"):
            setattr(self, attr, getattr(self.inner, attr))
        self.marker = str(marker)

    def embed_batch(self, waves):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return self.inner.embed_batch(waves)


@needs_ray
def test_killed_worker_is_restarted_and_result_is_identical(ray_cluster, small_corpus, local_embs, mel, tmp_path):
    from metrics.ray_engine import RayEngine

    paths = list(scan_dir(small_corpus).values())[:8]
    marker = tmp_path / "crashed"
    crashing = CrashOnceMel(marker)
    s, skipped = RayEngine(actors=1).stats(paths, crashing, EmbeddingCache(tmp_path / "cache"))
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker really died
    ref = stats_of({k: local_embs[k] for k in sorted(local_embs)[:8]}, mel)
    assert not skipped and (s.n, s.n_clips) == (ref.n, 8)
    np.testing.assert_allclose(s.mean, ref.mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(s.cov, ref.cov, rtol=0, atol=1e-10)
    # partial progress lives in the shared cache: a rerun embeds nothing
    cache = EmbeddingCache(tmp_path / "cache")
    LOCAL.embed(paths, mel, cache)
    assert (cache.hits, cache.misses) == (8, 0)


def test_missing_ray_extra_names_the_extra(monkeypatch, small_corpus, tmp_path):
    """Without ray, `--engine ray` is a clear error naming the extra; the local engine still works."""
    from benchmarks.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(EngineUnavailableError, match=r"pip install 'musiclm-eval\[ray\]'"):
        make_engine("ray")
    res = CliRunner().invoke(main, ["stats", "--audio", str(small_corpus), "--stats", str(tmp_path / "s.npz"),
                                     "--embedder", "mel", "--no-cache", "--engine", "ray"])
    assert res.exit_code == 1
    assert "--engine ray needs Ray" in res.output and "pip install 'musiclm-eval[ray]'" in res.output
    assert make_engine("local") is LOCAL
    with pytest.raises(EngineUnavailableError, match="--ray-address only applies to --engine ray"):
        make_engine("local", "auto")


def _planted_tokens(seed: int = 4):
    """Token-level copies (exact, shifted, lightly changed) and novel clips, as in test_memorization."""
    k, d = 64, 8
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(k, d))

    def style(n):
        pal = rng.choice(k, 12, replace=False)
        return np.concatenate([rng.choice(pal, 4, replace=False)[rng.integers(0, 4, 25)] for _ in range(-(-n // 25))])[:n]

    train = {f"tr{i:02d}": style(250) for i in range(7)}
    gen = {}
    for i in range(3):
        t0 = int(rng.integers(0, 100))
        gen[f"exact{i}"] = train[f"tr{i:02d}"][t0:t0 + 150].copy()
        gen[f"shift{i}"] = np.concatenate([style(30), train[f"tr{i + 3:02d}"][t0:t0 + 150]])
    changed = train["tr06"][40:190].copy()
    idx = rng.choice(150, 10, replace=False)
    changed[idx] = rng.integers(0, k, 10)
    gen["changed"] = changed
    for i in range(3):
        gen[f"novel{i}"] = style(150)
    return gen, train, c


@needs_ray
def test_sharded_audit_equals_local(ray_cluster):
    """The distributed join (3 shards of whole training clips, one Ray task each) gives the local
    audit's matches (ids, offsets, exact flags, window counts), rates and pair counts exactly; costs
    agree to the solver's tolerance — the batched Sinkhorn's ε schedule depends on the largest cost in
    its batch, and shards batch different pairs together — and a shard skips only its own exact copies
    in the candidate search, so it solves at least as many pairs (see docs/ray.md)."""
    import json
    import warnings

    from metrics.memorization import FewNegativesWarning, shard_clips
    from metrics.ray_engine import RayEngine

    gen, train, c = _planted_tokens()
    kw = {"fpr": 0.05, "gen_hop": 25, "train_hop": 3, "seed": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewNegativesWarning)
        want = LOCAL.audit(gen, train, c, **kw)
        got = RayEngine().audit(gen, train, c, shards=3, **kw)
    assert len(shard_clips(train, 3)) == 3
    assert sorted(k for s in shard_clips(train, 3) for k in s) == sorted(train)
    def strip(matches):
        return [{k: v for k, v in m.items() if k not in ("cost", "min_cost")} for m in matches]

    assert strip(got.matches) == strip(want.matches)
    np.testing.assert_allclose([m["cost"] for m in got.matches], [m["cost"] for m in want.matches], rtol=1e-4)
    assert {m["generated_id"] for m in want.matches if m["exact"]} >= {"exact0", "exact1", "exact2"}
    assert {m["generated_id"] for m in want.matches} >= {"shift0", "shift1", "shift2", "changed"}
    assert got.n_solved >= want.n_solved
    g, w = got.to_dict(), want.to_dict()
    for key in ("matches", "best_cost", "n_solved"):
        g.pop(key, None), w.pop(key, None)
    assert json.dumps(g, sort_keys=True, default=str) == json.dumps(w, sort_keys=True, default=str)
    np.testing.assert_allclose([got.best_cost[k] for k in sorted(want.best_cost)],
                               [want.best_cost[k] for k in sorted(want.best_cost)], rtol=1e-4)


@needs_ray
def test_memorization_audit_cli_ray_equals_local(ray_cluster, small_corpus, tmp_path):
    """`memorization audit --engine ray` on audio: the local command's matches (a 3 s excerpt of a
    training clip found in it at its offset) and summary."""
    import json

    from benchmarks.cli import main
    from metrics.audio import load_audio, save_audio

    train, gen = tmp_path / "train", tmp_path / "gen"
    train.mkdir(), gen.mkdir()
    clips = [load_audio(p) for p in list(scan_dir(small_corpus).values())[:6]]
    for c in clips[:5]:
        save_audio(train / f"{c.id}.wav", c.wave, c.sr)
    src = clips[2]
    save_audio(gen / "copy.wav", src.wave[src.sr // 2: src.sr // 2 + 3 * src.sr], src.sr)  # 0.5–3.5 s
    save_audio(gen / "novel.wav", clips[5].wave[: 3 * clips[5].sr], clips[5].sr)
    docs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        r = CliRunner().invoke(main, ["memorization", "audit", "--generated", str(gen), "--train", str(train),
                                      "--window-s", "2", "--embedder", "none", "--detect", "0",
                                      "--out", str(out), "--engine", engine])
        assert r.exit_code == 0, r.output
        docs[engine] = json.loads((out / "memorization.json").read_text())
    local, ray_doc = docs["local"], docs["ray"]
    for key in ("tau", "exact_rate", "approx_rate", "n_pairs", "n_matched_pairs", "pairs_by_clip", "n_generated"):
        assert ray_doc[key] == local[key], key
    rows = {e: (tmp_path / e / "matches.csv").read_text().splitlines() for e in ("local", "ray")}
    head = rows["local"][0].split(",")
    keep = [i for i, h in enumerate(head) if h not in ("cost", "min_cost", "align")]
    assert [[r.split(",")[i] for i in keep] for r in rows["ray"]] == [[r.split(",")[i] for i in keep] for r in rows["local"]]
    import csv

    best = [r for r in csv.DictReader(rows["local"]) if r["generated_id"] == "copy" and r["train_id"] == src.id]
    assert best, rows["local"]
    lag = float(best[0]["train_offset_s"]) - float(best[0]["gen_offset_s"])
    assert abs(lag - 0.5) <= 0.08 + 1e-6  # the excerpt starts 0.5 s into its source (two-frame tolerance)


@needs_ray
def test_a_model_in_two_roles_is_one_pass_on_ray_with_the_local_values(ray_cluster, tmp_path, monkeypatch):
    """musicnn-mtt as embedder and classifier (the demo's case): the Ray engine runs one dataset — one
    forward per clip giving both heads (``shared_passes``) — and both heads equal the local engine's."""
    from metrics.extract import extract
    from metrics.models import ModelSpec
    from metrics.ray_engine import RayEngine

    rng = np.random.default_rng(3)
    import soundfile as sf

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"c{i}.wav")
        sf.write(paths[-1], (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32), 16000)
    specs = {"embedder": ModelSpec("musicnn-mtt"), "classifier": ModelSpec("musicnn-mtt", kind="classifier")}
    models = {k: s.build() for k, s in specs.items()}
    passes = []
    real = RayEngine._dataset
    monkeypatch.setattr(RayEngine, "_dataset", lambda self, rows, ms, *a, **kw: passes.append(
        [m.id for m in ms]) or real(self, rows, ms, *a, **kw))
    got = RayEngine(actors=1).extract(paths, models, specs, EmbeddingCache(tmp_path / "cache"))
    assert passes == [[models["embedder"].id, models["classifier"].id]]
    want = extract(paths, models)
    for k in models:
        assert list(got[k]) == list(want[k]) == [p.stem for p in paths]
        for cid in want[k]:
            np.testing.assert_allclose(got[k][cid], want[k][cid], rtol=0, atol=1e-5)
    cache = EmbeddingCache(tmp_path / "cache")  # both heads were cached by the one pass
    again = extract(paths, models, cache)
    assert (cache.hits, cache.misses) == (6, 0) and all(np.array_equal(again[k][c], got[k][c]) for k in models for c in got[k])

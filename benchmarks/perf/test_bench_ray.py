"""FAD statistics on the Ray engine vs the local engine: cost vs corpus size with 1 and 2 local workers.

Workload: N clips × 4 s of 16 kHz noise-plus-tones WAV (no resampling), no cache, batch 8, through
``Engine.stats``. Embedder: ``mel`` plus, per clip, a fixed stand-in for a neural network's forward
pass (``FORWARD_MATMULS`` seeded 512×512 float64 matrix products, ≈0.27 GFLOP each, result discarded)
— the bare ``mel`` embedder costs ~5 ms per clip, too little for any engine to matter. Engines: — the local engine (per-clip folds in this process) and the Ray
engine with an actor pool of 1 or 2 actors (decode + embed + per-batch partial statistics in the
actor, partials merged on the driver), on one local Ray started with ``num_cpus=2``. One round per
case: each Ray run builds its actor pool afresh, so the figure includes that fixed cost (actor
start ≈ seconds), which is what a user pays per command.

What to read from it: the slope (seconds per extra clip) shows the parallel speed-up, the
intercept the fixed overhead of a Ray Data pipeline. On this 2-core machine shared with other jobs,
2 actors can at best halve the slope. The correctness gate: every Ray result equals the local
statistics to 1e-10.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from metrics.audio import save_audio
from metrics.embedders import Embedder
from metrics.embedders.mel import MelEmbedder
from metrics.engine import LOCAL

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (extra 'ray')")

SECONDS, SR = 4.0, 16000
SIZES = (8, 24)
FORWARD_MATMULS = 8


class BusyMel(Embedder):
    """``mel`` embeddings after a fixed amount of dense compute per clip (a model's forward pass)."""

    def __init__(self):
        self.inner = MelEmbedder()
        for attr in ("name", "id", "sample_rate", "dim", "min_seconds", "pad_to_seconds"):
            setattr(self, attr, getattr(self.inner, attr))
        self.w = np.random.default_rng(0).standard_normal((512, 512)) / 512**0.5

    def embed(self, wave: np.ndarray) -> np.ndarray:
        x = np.resize(wave.astype(np.float64), (512, 512))
        for _ in range(FORWARD_MATMULS):
            x = np.tanh(x @ self.w)
        return self.inner.embed(wave)


@pytest.fixture(scope="module")
def ray_local():
    import sys

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # BusyMel reaches the actors by value
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("ray_bench")
    t = np.arange(int(SECONDS * SR)) / SR
    paths = []
    for i in range(max(SIZES)):
        wave = 0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
        paths.append(save_audio(root / f"clip{i:03d}.wav", wave.astype(np.float32), SR))
    return paths


@pytest.fixture(scope="module")
def local_stats(corpus):
    mel = MelEmbedder()  # same id and embeddings as BusyMel: also checks the busy work changes nothing
    return {n: LOCAL.stats(corpus[:n], mel)[0] for n in SIZES}


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("engine", ["local", "ray-1", "ray-2"])
def test_stats_cost_vs_size(benchmark, ray_local, corpus, local_stats, engine, n):
    from metrics.ray_engine import RayEngine

    mel = BusyMel()
    run = LOCAL if engine == "local" else RayEngine(actors=int(engine[-1]))
    s, _ = benchmark.pedantic(lambda: run.stats(corpus[:n], mel), rounds=1, iterations=1)
    ref = local_stats[n]
    np.testing.assert_allclose(s.mean, ref.mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(s.cov, ref.cov, rtol=0, atol=1e-10)
    seconds = benchmark.stats.stats.mean
    benchmark.extra_info.update({"engine": engine, "clips": n, "audio_s": n * SECONDS, "clips_per_s": n / seconds,
                                 "rtf": seconds / (n * SECONDS)})

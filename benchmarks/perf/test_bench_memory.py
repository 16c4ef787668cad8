"""Bounded memory at MusicCaps scale: ``compare`` over N clips × 10 s × (reference + 2 systems).

The evaluation pipeline streams clips (decode → every model → outputs kept, waveform dropped), so peak
RSS must not grow with the number of clips beyond the small per-clip outputs (O(clips × dim)) and the
O(dim²) statistics. Each case runs ``musiclm-eval compare`` in a fresh process (its peak RSS is the
child's ``ru_maxrss``) with mel + classifier + joint model and no cache, and records peak RSS and
clips/s. The correctness gate: every system's FAD/KLD/MCC is finite and counts every clip.

Sizes: ``BENCH_MEMORY_CLIPS`` (comma-separated; default ``100,400``); the issue's figure is
``BENCH_MEMORY_CLIPS=5521`` (MusicCaps), target peak RSS < 3 GB. ``BENCH_MEMORY_BOOTSTRAP`` (default 100)
sets ``--bootstrap``; 1000 is ``compare``'s default, which ``compare_memory``'s figures use. Clips are
seeded band-limited noise with a few tones (written once per size into a temp dir), so the work is the
models', not the corpus'. Each record also keeps the load average at start and end, and the commit.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SIZES = [int(s) for s in os.environ.get("BENCH_MEMORY_CLIPS", "100,400").split(",") if s.strip()]
SR, SECONDS = 16000, 10.0


def _write_set(root: Path, name: str, n: int, seed: int) -> Path:
    import soundfile as sf

    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * SECONDS)) / SR
    for i in range(n):
        f = rng.uniform(110, 880, size=3)
        wave = 0.1 * np.sin(2 * np.pi * f[:, None] * t).sum(0) + 0.02 * rng.standard_normal(len(t))
        sf.write(d / f"clip{i:05d}.wav", wave.astype(np.float32), SR, subtype="PCM_16")
    return d


def _captions(path: Path, n: int) -> Path:
    lines = ["ytid,caption"] + [f"clip{i:05d},a calm piano piece with soft strings" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _commit() -> str:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("n", SIZES)
def test_bench_compare_memory(benchmark, tmp_path, n):
    ref = _write_set(tmp_path, "reference", n, 0)
    a, b = _write_set(tmp_path, "a", n, 1), _write_set(tmp_path, "b", n, 2)
    caps = _captions(tmp_path / "captions.csv", n)
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "benchmarks.cli", "compare", "--system", f"a={a}", "--system", f"b={b}",
           "--reference", str(ref), "--captions", str(caps), "--out", str(out), "--embedders", "mel",
           "--no-cache", "--no-progress", "--bootstrap", os.environ.get("BENCH_MEMORY_BOOTSTRAP", "100")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "POT_BACKEND_DISABLE_TENSORFLOW": "1"}
    timing = {}
    load_start = os.getloadavg()  # the machine is shared: clips/s means little without the load it ran under
    commit = _commit()  # before the run: on a shared tree HEAD may move while it runs

    def run():
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True)
        timing["s"] = time.perf_counter() - t0

    benchmark.pedantic(run, rounds=1, iterations=1)
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB → GiB (largest child so far)
    doc = json.loads((out / "results.json").read_text())
    for name in ("a", "b"):  # correctness gate
        m = doc["systems"][name]["metrics"]
        assert doc["systems"][name]["n_clips"] == n
        for key in ("fad_mel", "kld_musiclm", "mcc"):
            assert m[key]["value"] is not None and np.isfinite(m[key]["value"]), (name, key)
    benchmark.extra_info.update({"clips": n, "sets": 3, "bootstrap": int(cmd[-1]), "seconds_per_clip": SECONDS, "peak_rss_gb": round(peak_gb, 3),
                                 "clips_per_s": round(3 * n / timing["s"], 2), "wall_s": round(timing["s"], 1),
                                 "loadavg_start": [round(x, 1) for x in load_start],
                                 "loadavg_end": [round(x, 1) for x in os.getloadavg()], "commit": commit})
    assert peak_gb < 3.0, f"peak RSS {peak_gb:.2f} GB for {n} clips × 3 sets"

"""What verifying embedding-cache entries costs: a warm run's reads with and without the checks.

Every ``EmbeddingCache.get`` re-hashes the entry's array (sha256 of dtype, shape and bytes) and compares
its key and code version (``metrics/cache.py``), so a changed, copied or stale entry is a miss, never a
number. Workload: ``N`` entries of one MusicCaps clip's VGGish embedding ([10, 128] float32, seeded), read
back as a warm ``compare`` reads them.

- ``verified`` — ``EmbeddingCache.get(key, code)`` on every entry (the ``.npz`` format: array + meta).
- ``unchecked`` — ``np.load`` of the same arrays saved as bare ``.npy`` files: the earlier format, what a
  read cost before verification (and what it could not catch).
- ``verify_all`` — ``EmbeddingCache.verify`` over the whole cache (``musiclm-eval cache verify``).

``extra_info`` records µs per entry and the ratio verified / unchecked. Correctness gates: every verified
read returns the array that was written, bit for bit; an entry re-saved with one float changed (a valid
file, CRCs recomputed) is a miss on read and the one bad entry ``verify`` reports.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from metrics.cache import EmbeddingCache

N = int(os.environ.get("CACHE_BENCH_N", "1000"))
SHAPE = (10, 128)
CODE = "vggish-bench|bench.Embedder=1|pre=1:000000000000"


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    cache = EmbeddingCache(root / "verified")
    rng = np.random.default_rng(0)
    keys, arrays, legacy = [], {}, []
    for i in range(N):
        key = cache.key(f"{i:064x}", "vggish-bench", "sr=16000")
        arr = rng.standard_normal(SHAPE, dtype=np.float32)
        cache.put(key, arr, CODE)
        path = root / "unchecked" / key[:2] / f"{key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, arr)
        keys.append(key)
        arrays[key] = arr
        legacy.append(path)
    return cache, keys, arrays, legacy


def test_verified_reads(benchmark, warm):
    cache, keys, arrays, _ = warm

    def read_all():
        return [cache.get(k, CODE) for k in keys]

    got = benchmark.pedantic(read_all, rounds=5, iterations=1)
    assert all(np.array_equal(g, arrays[k]) for g, k in zip(got, keys))
    benchmark.extra_info.update({"n_entries": N, "shape": list(SHAPE),
                                 "us_per_entry": 1e6 * benchmark.stats.stats.min / N})


def test_unchecked_reads(benchmark, warm):
    _, keys, arrays, legacy = warm
    got = benchmark.pedantic(lambda: [np.load(p) for p in legacy], rounds=5, iterations=1)
    assert all(np.array_equal(g, arrays[k]) for g, k in zip(got, keys))
    benchmark.extra_info.update({"n_entries": N, "us_per_entry": 1e6 * benchmark.stats.stats.min / N})


def test_verify_all_and_the_gate(benchmark, warm, tmp_path):
    cache, keys, arrays, _ = warm
    report = benchmark.pedantic(cache.verify, rounds=3, iterations=1)
    assert report["checked"] == N and report["bad"] == []
    benchmark.extra_info.update({"n_entries": N, "us_per_entry": 1e6 * benchmark.stats.stats.min / N})

    # the gate: one float changed in a still-valid file is caught on read and by verify
    tampered = EmbeddingCache(tmp_path)
    path = tampered.put(keys[0], arrays[keys[0]], CODE)
    with np.load(path) as z:
        arr, meta = z["array"].copy(), json.loads(str(z["meta"][()]))
    arr[3, 7] *= 1.17
    with open(path, "wb") as f:
        np.savez(f, array=arr, meta=np.array(json.dumps(meta)))
    assert [b["path"] for b in tampered.verify()["bad"]] == [str(path)]
    with pytest.warns(UserWarning, match="checksum mismatch"):
        assert tampered.get(keys[0], CODE) is None

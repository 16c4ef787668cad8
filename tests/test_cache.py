"""Embedding cache: keyed by content (not name), atomic under a real kill, counters, extract through it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from metrics.audio import AudioError, SilentAudioWarning, load_audio, save_audio
from metrics.cache import EmbeddingCache
from metrics.embedders import get_embedder
from metrics.extract import embed_clips, preprocessing_key

SR = 16000


def write_clip(path, seconds=2.0, seed=0, sr=SR):
    rng = np.random.default_rng(seed)
    return save_audio(path, (rng.standard_normal(int(seconds * sr)) * 0.1).astype(np.float32), sr)


@pytest.fixture(scope="module")
def mel():
    return get_embedder("mel")


def test_key_depends_on_content_embedder_and_preprocessing():
    k = EmbeddingCache.key("a" * 64, "mel-1", "sr=16000")
    assert k == EmbeddingCache.key("a" * 64, "mel-1", "sr=16000")
    assert len({k, EmbeddingCache.key("b" * 64, "mel-1", "sr=16000"), EmbeddingCache.key("a" * 64, "mel-2", "sr=16000"),
                EmbeddingCache.key("a" * 64, "mel-1", "sr=24000")}) == 4
    with pytest.raises(ValueError, match="needs the content sha256 and the embedder id"):
        EmbeddingCache.key("", "mel-1", "x")


def test_put_get_counters_info_clear(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    assert cache.info() == {"root": str(tmp_path / "c"), "entries": 0, "bytes": 0}
    key = cache.key("f" * 64, "e", "p")
    assert cache.get(key) is None and (cache.hits, cache.misses) == (0, 1)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put(key, arr)
    np.testing.assert_array_equal(cache.get(key), arr)
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.info()["entries"] == 1 and cache.info()["bytes"] > arr.nbytes
    assert cache.clear() == 1 and cache.info()["entries"] == 0 and cache.get(key) is None


def test_default_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICLM_EVAL_CACHE", str(tmp_path / "envcache"))
    assert EmbeddingCache().root == tmp_path / "envcache"


def test_kill_mid_write_leaves_no_entry_that_is_read_back(tmp_path):
    """A process SIGKILLed after writing the temp file but before the rename."""
    root = tmp_path / "c"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from metrics.cache import EmbeddingCache
        os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        c = EmbeddingCache({str(root)!r})
        c.put(c.key("a" * 64, "mel", "p"), np.ones((1000, 128), np.float32))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    leftovers = list(root.glob("*/.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 1000 * 128 * 4  # the write itself happened
    cache = EmbeddingCache(root)
    assert cache.get(cache.key("a" * 64, "mel", "p")) is None
    assert cache.info()["entries"] == 0
    cache.clear()
    assert not list(root.glob("*/.*.tmp"))


def test_unreadable_entry_is_a_miss_and_is_removed(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = cache.key("a" * 64, "e", "p")
    path = cache.put(key, np.ones((4, 4), np.float32))
    path.write_bytes(path.read_bytes()[:20])  # damaged by something outside the cache
    assert cache.get(key) is None and not path.exists()


def test_rename_hits_one_byte_change_misses(tmp_path, mel):
    audio = tmp_path / "audio"
    write_clip(audio / "a.wav", seed=1)
    write_clip(audio / "b.wav", seed=2)
    cache = EmbeddingCache(tmp_path / "cache")
    first = embed_clips(sorted(audio.iterdir()), mel, cache)
    assert (cache.hits, cache.misses) == (0, 2) and cache.info()["entries"] == 2

    shutil.move(audio / "a.wav", audio / "renamed.wav")
    cache2 = EmbeddingCache(tmp_path / "cache")
    second = embed_clips(sorted(audio.iterdir()), mel, cache2)
    assert (cache2.hits, cache2.misses) == (2, 0)
    np.testing.assert_array_equal(second["renamed"], first["a"])

    data = bytearray((audio / "b.wav").read_bytes())
    data[len(data) // 2 | 1] ^= 0x01  # the high byte of one PCM-16 sample mid-file
    (audio / "b.wav").write_bytes(bytes(data))
    cache3 = EmbeddingCache(tmp_path / "cache")
    third = embed_clips(sorted(audio.iterdir()), mel, cache3)
    assert (cache3.hits, cache3.misses) == (1, 1) and cache3.info()["entries"] == 3
    assert not np.array_equal(third["b"], first["b"])


def test_clip_inputs_and_path_inputs_share_entries_at_the_embedder_rate(tmp_path, mel):
    write_clip(tmp_path / "x.wav", sr=24000)
    cache = EmbeddingCache(tmp_path / "cache")
    by_path = embed_clips([tmp_path / "x.wav"], mel, cache)
    by_clip = embed_clips([load_audio(tmp_path / "x.wav", sr=SR)], mel, cache)
    assert cache.hits == 1
    np.testing.assert_array_equal(by_clip["x"], by_path["x"])
    # a clip at 24 kHz is resampled here, once more than the file route: its own key
    native = embed_clips([load_audio(tmp_path / "x.wav")], mel, cache)
    assert cache.misses == 2 and native["x"].shape == by_path["x"].shape
    assert preprocessing_key(mel, 24000).endswith(";via_sr=24000")


def test_no_cache_means_no_files(tmp_path, mel):
    write_clip(tmp_path / "a.wav")
    out = embed_clips([tmp_path / "a.wav"], mel, cache=None)
    assert out["a"].shape == (3, 128)


def test_bad_files_raise_or_are_reported_skips(tmp_path, mel):
    write_clip(tmp_path / "good.wav", seed=3)
    write_clip(tmp_path / "short.wav", seconds=0.5)  # < one 1 s mel window
    save_audio(tmp_path / "silent.wav", np.zeros(2 * SR, np.float32), SR)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    save_audio(tmp_path / "nan.wav", np.full(SR * 2, np.nan, np.float32), SR, subtype="FLOAT")
    paths = sorted(tmp_path.glob("*.wav"))
    with pytest.raises(AudioError, match=r"corrupt.wav: unreadable or corrupt audio"):
        embed_clips(paths, mel)
    with pytest.raises(AudioError, match=r"short.wav: too short for mel: 0.500 s < 1.000 s \(one embedding frame\)"):
        embed_clips([tmp_path / "short.wav"], mel)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = embed_clips(paths, mel, on_error="skip")
    assert sorted(out) == ["good", "silent"]  # silent audio is valid (with a warning), not an error
    assert any(issubclass(w.category, SilentAudioWarning) for w in caught)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in out.skipped}
    assert set(reasons) == {"corrupt.wav", "short.wav", "nan.wav"}
    assert reasons["nan.wav"] == f"contains {2 * SR} NaN/Inf samples"


def test_worker_processes_give_identical_embeddings(tmp_path, mel):
    for i in range(4):
        write_clip(tmp_path / f"c{i}.wav", sr=22050, seed=i)
    (tmp_path / "broken.wav").write_bytes(b"nope")
    paths = sorted(tmp_path.glob("*.wav"))
    serial = embed_clips(paths, mel, on_error="skip", batch_size=3)
    parallel = embed_clips(paths, mel, on_error="skip", workers=2, batch_size=3)
    assert list(serial) == list(parallel) == ["c0", "c1", "c2", "c3"]
    for k in serial:
        np.testing.assert_array_equal(serial[k], parallel[k])
    assert [s.path for s in parallel.skipped] == [str(tmp_path / "broken.wav")]


def _rewrite_entry(path, array=None, **meta_changes):
    """Re-save an entry as a *valid* .npz (zip CRCs recomputed) with a changed array or meta: what a synced,
    copied or edited cache can hold. Only the entry's own checks can catch it."""
    import json

    with np.load(path) as z:
        arr, meta = z["array"], json.loads(str(z["meta"][()]))
    meta.update(meta_changes)
    with open(path, "wb") as f:
        np.savez(f, array=arr if array is None else array, meta=np.array(json.dumps(meta)))


def test_changed_bytes_that_still_parse_are_a_miss_with_one_warning(tmp_path):
    from metrics.cache import CacheEntryWarning

    cache = EmbeddingCache(tmp_path)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    keys = [cache.key(c * 64, "e", "p") for c in "ab"]
    paths = [cache.put(k, arr, "e|code=1") for k in keys]
    for p in paths:
        changed = arr.copy()
        changed[1, 2] *= 1.17  # one float
        _rewrite_entry(p, changed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [cache.get(k, "e|code=1") for k in keys] == [None, None]
    msgs = [str(w.message) for w in caught if issubclass(w.category, CacheEntryWarning)]
    assert len(msgs) == 1 and "array checksum mismatch" in msgs[0] and "cache verify" in msgs[0]  # once per run
    assert (cache.hits, cache.misses, cache.rejected) == (0, 2, 2)
    assert not any(p.exists() for p in paths)  # damaged entries go; the recomputed value replaces them
    cache.put(keys[0], arr, "e|code=1")
    np.testing.assert_array_equal(cache.get(keys[0], "e|code=1"), arr)


def test_entry_copied_under_another_key_is_a_miss(tmp_path):
    cache = EmbeddingCache(tmp_path)
    a, b = cache.key("a" * 64, "e", "p"), cache.key("b" * 64, "e", "p")
    pa = cache.put(a, np.ones((2, 2), np.float32))
    pb = cache.put(b, np.zeros((2, 2), np.float32))
    shutil.copy(pa, pb)
    with pytest.warns(UserWarning, match="holds the entry of another key"):
        assert cache.get(b) is None
    assert cache.get(a) is not None


def test_new_code_under_the_same_name_and_weights_is_a_miss(tmp_path, mel, monkeypatch):
    """fadtk's stale-embedding failure: pre-processing or model code changes, the embedder id does not."""
    import metrics.extract as extract
    from metrics.cache import CacheEntryWarning

    for i in range(2):
        write_clip(tmp_path / "audio" / f"c{i}.wav", seed=i)
    paths = sorted((tmp_path / "audio").iterdir())
    root = tmp_path / "cache"
    first = embed_clips(paths, mel, EmbeddingCache(root))
    old_code = extract.code_version(mel)
    for attr, obj, value in (("code_version", type(mel), "2"), ("PREPROCESSING_VERSION", extract, 99)):
        with monkeypatch.context() as m:
            m.setattr(obj, attr, value)
            assert extract.code_version(mel) != old_code and extract.code_version(mel).startswith(mel.id + "|")
            cache = EmbeddingCache(root)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                again = embed_clips(paths, mel, cache)
            assert (cache.hits, cache.misses, cache.rejected) == (0, 2, 2)
            assert sum(issubclass(w.category, CacheEntryWarning) for w in caught) == 1
            assert "written by code version" in str(next(w for w in caught if issubclass(w.category, CacheEntryWarning)).message)
            for k in first:
                np.testing.assert_array_equal(again[k], first[k])
        back = EmbeddingCache(root)  # the old code again: the entries were rewritten by the new one
        embed_clips(paths, mel, back)
        assert back.rejected == 2


def test_verify_reports_each_kind_of_bad_entry_and_removes_them(tmp_path, mel):
    from click.testing import CliRunner

    from benchmarks.cli import main
    from metrics.extract import code_version

    cache = EmbeddingCache(tmp_path)
    arr = np.ones((3, 4), np.float32)
    code = code_version(mel)
    good, edited, truncated, copied, stale = (cache.key(c * 64, mel.id, "p") for c in "abcde")
    paths = {k: cache.put(k, arr, code) for k in (good, edited, truncated, copied)}
    paths[stale] = cache.put(stale, arr, code.replace("|pre=", "|pre=0"))
    _rewrite_entry(paths[edited], arr * 2)
    paths[truncated].write_bytes(paths[truncated].read_bytes()[:40])
    shutil.copy(paths[good], paths[copied])
    legacy = tmp_path / "ff" / ("f" * 64 + ".npy")
    legacy.parent.mkdir()
    np.save(legacy, arr)

    report = cache.verify()
    problems = {b["path"]: b["problem"] for b in report["bad"]}
    assert (report["checked"], report["ok"]) == (6, 2)  # without the current code, the stale entry passes
    assert problems == {str(paths[edited]): "array checksum mismatch (its bytes changed after it was written)",
                        str(paths[truncated]): problems[str(paths[truncated])],
                        str(paths[copied]): problems[str(paths[copied])],
                        str(legacy): "earlier unchecked format (no checksum, no code version): never read"}
    assert problems[str(paths[truncated])].startswith("unreadable (BadZipFile")
    assert "another key" in problems[str(paths[copied])]

    r = CliRunner().invoke(main, ["cache", "verify", "--cache-dir", str(tmp_path), "--embedder", "mel"])
    assert r.exit_code == 1, r.output
    assert f"{paths[stale]}: written by code version" in r.output
    assert r.output.strip().endswith("6 entries checked, 1 ok, 5 bad")
    r = CliRunner().invoke(main, ["cache", "verify", "--cache-dir", str(tmp_path), "--embedder", "mel", "--remove"])
    assert r.exit_code == 1 and r.output.count("(removed)") == 5
    r = CliRunner().invoke(main, ["cache", "verify", "--cache-dir", str(tmp_path), "--json", "-"])
    assert r.exit_code == 0, r.output
    assert '"bad": []' in r.output and sorted(cache._entries()) == [paths[good]]

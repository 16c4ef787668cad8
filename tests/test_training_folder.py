"""The streaming loader over a folder tree of audio (``musiclm_ref.data.folder`` / ``.stream``).

The tree is FMA-shaped (``000/000002.mp3``, mixed formats and rates, stereo). Each file's samples
encode its own time (a slow ramp plus a per-file tone) so a crop can be checked against the slice of
the fully decoded file at the reported start. Properties: only the crop is decoded yet it equals that
slice; rank × worker shards partition an epoch; the crop of a file does not depend on ranks or
workers, so two ranks' first B/2 crops are one process's first B; an interrupted stream resumed from
its state continues with exactly the crops the uninterrupted one gives (across an epoch end, with
DataLoader workers); unreadable and too-short files raise naming the file, or are skipped with a
report — never silently.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from musiclm_ref.data.folder import AudioFolder, FolderError, read_crop, scan_tree
from musiclm_ref.data.stream import StreamingBatches

SR = 24000


def _signal(seconds: float, sr: int, k: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * t / seconds + 0.3 * np.sin(2 * np.pi * (110 + 20 * k) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def fma(tmp_path_factory):
    root = tmp_path_factory.mktemp("fma_small")
    for k in range(10):
        fmt, sr = [("wav", SR), ("flac", 44100), ("ogg", 22050), ("wav", 16000), ("mp3", 44100)][k % 5]
        path = root / f"{k // 4:03d}" / f"{k:06d}.{fmt}"
        path.parent.mkdir(exist_ok=True)
        w = _signal(3.0 + 0.5 * k, sr, k)
        sf.write(path, np.stack([w, w], axis=1) if k % 2 else w, sr)
    return root


def test_scan_finds_the_tree_and_ids_are_relative_paths(fma, tmp_path):
    files = scan_tree(fma)
    assert len(files) == 10 and files[0].relative_to(fma).as_posix() == "000/000000.wav"
    folder = AudioFolder(fma, 1.0, SR)
    assert folder.item(5, 0, 0).id == "001/000005"
    with pytest.raises(FolderError, match="no audio files"):
        scan_tree(tmp_path)
    with pytest.raises(FolderError, match="10 audio files for 16 processes"):
        AudioFolder(fma, 1.0, SR, world=16)


def test_only_the_crop_is_decoded_and_it_equals_the_slice_of_the_whole_file(fma, monkeypatch):
    path = fma / "000" / "000000.wav"  # 24 kHz mono: no resampling, so the comparison is exact
    whole, sr = sf.read(path, dtype="float32")
    frames = []
    real = sf.read
    monkeypatch.setattr(sf, "read", lambda *a, **k: frames.append(k.get("frames")) or real(*a, **k))
    wave, start = read_crop(path, 1.0, SR, np.random.default_rng(3))
    assert frames == [SR] and 0 < start < 2.0  # one read of exactly the crop's frames
    i = int(round(start * SR))
    np.testing.assert_array_equal(wave, whole[i : i + SR])
    monkeypatch.undo()
    for k, file in enumerate(scan_tree(fma)):  # every format and rate comes out mono at 24 kHz, crop-long
        w, _ = read_crop(file, 2.0, SR, np.random.default_rng(k))
        assert w.shape == (2 * SR,) and w.dtype == np.float32 and np.isfinite(w).all() and np.abs(w).max() > 0.1


def test_rank_and_worker_shards_partition_an_epoch_and_crops_do_not_depend_on_them(fma):
    one = {c.id: c.start_seconds for c in AudioFolder(fma, 1.0, SR, seed=5)}
    assert len(one) == 10
    from torch.utils.data import DataLoader

    seen = []
    for rank in range(3):
        folder = AudioFolder(fma, 1.0, SR, seed=5, rank=rank, world=3)
        got = list(DataLoader(folder, batch_size=None, num_workers=2, collate_fn=lambda x: x))
        assert [c.position for c in got] == list(range(3))  # in order across the 2 workers
        seen += [(c.id, c.start_seconds) for c in got]
    assert len(seen) == 9 == len({i for i, _ in seen})  # disjoint, 10 // 3 each
    assert all(one[i] == s for i, s in seen)  # same crop whatever the sharding
    epoch1 = AudioFolder(fma, 1.0, SR, seed=5)
    epoch1.epoch = 1
    assert [c.id for c in epoch1] != list(one)  # a new order every epoch


def test_two_ranks_first_half_batches_are_the_one_process_batch(fma):
    def first(rank, world, n):
        src = StreamingBatches(AudioFolder(fma, 1.0, SR, seed=2, rank=rank, world=world), None, n)
        return {(c.id, c.start_seconds) for c in src.crops(n)}

    assert first(0, 2, 2) | first(1, 2, 2) == first(0, 1, 4)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_stream_continues_with_the_uninterrupted_crops(fma, workers):
    def stream():
        return StreamingBatches(AudioFolder(fma, 1.0, SR, seed=1), None, 3, num_workers=workers)

    full = [(c.id, c.epoch, c.wave) for c in stream().crops(14)]  # past the end of the first 10-file epoch
    a = stream()
    a.crops(7)
    state = a.state_dict()
    b = stream()
    b.load_state_dict(state)
    rest = [(c.id, c.epoch, c.wave) for c in b.crops(7)]
    assert [x[:2] for x in rest] == [x[:2] for x in full[7:]] and {x[1] for x in full} == {0, 1}
    assert all(np.array_equal(x[2], y[2]) for x, y in zip(rest, full[7:]))


def test_bad_files_raise_naming_the_file_or_are_skipped_with_a_report(fma, tmp_path):
    import shutil

    root = tmp_path / "tree"
    shutil.copytree(fma, root)
    (root / "001" / "broken.mp3").write_bytes(b"not audio at all")
    sf.write(root / "001" / "short.wav", _signal(0.5, SR, 0), SR)
    with pytest.raises(FolderError, match=r"broken\.mp3: unreadable or corrupt audio|short\.wav: too short"):
        StreamingBatches(AudioFolder(root, 2.0, SR), None, 12).crops(12)
    log = tmp_path / "skipped.jsonl"
    src = StreamingBatches(AudioFolder(root, 2.0, SR), None, 12, on_error="skip", skip_log=log)
    crops = src.crops(10)
    assert len({c.id for c in crops}) == 10 and src.position == 12  # every position used or reported
    reasons = {s["path"].rsplit("/", 1)[1]: s["reason"] for s in src.skipped}
    assert set(reasons) == {"broken.mp3", "short.wav"} and reasons["short.wav"].startswith("too short: 0.50 s < crop 2 s")
    assert [json.loads(line)["path"] for line in log.read_text().splitlines()] == [s["path"] for s in src.skipped]
    sf.write(root / "000" / "000000.wav", _signal(1.5, SR, 0), SR)  # 0.5 s short of a 2 s crop: zero-padded
    w, start = read_crop(root / "000" / "000000.wav", 2.0, SR, np.random.default_rng(0))
    assert start == 0 and w.shape == (2 * SR,) and not w[int(1.5 * SR) :].any()


def test_a_share_with_no_readable_file_is_an_error_not_a_hang(tmp_path):
    for i in range(2):
        (tmp_path / f"{i}.wav").write_bytes(b"junk")
    src = StreamingBatches(AudioFolder(tmp_path, 1.0, SR), None, 1, on_error="skip")
    with pytest.raises(FolderError, match="no readable file in rank 0's share"):
        src.crops(1)

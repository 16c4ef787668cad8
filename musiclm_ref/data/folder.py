"""Random fixed-length crops streamed from a folder tree of real audio (FMA-style ``fma_small/000/000002.mp3``).

What the paper's stage training reads: random crops of 30 s (semantic stage), 10 s (coarse) and 3 s
(fine) from the training audio (MusicLM §3.3; ``presets.PRESETS['paper'].crops``). ``AudioFolder`` is an
``IterableDataset`` that never holds the collection in memory:

* **Lazy decoding.** A file is opened only when its turn comes, and only the crop is decoded
  (``soundfile`` seeks to the crop's first frame: a 3 s crop of a 30 s mp3 decodes 3 s, not 30),
  then mixed to mono and resampled to the model rate.
* **Sharding by rank and worker.** Epoch ``e`` visits the files in a permutation seeded by
  (seed, e); rank ``r`` of ``W`` takes positions ``r, r+W, …`` (``n // W`` files each, so all ranks take
  the same number of steps), and DataLoader worker ``w`` of ``K`` takes every K-th position of its rank.
  The crop inside a file is seeded by (seed, epoch, file), so it does not depend on the number of
  ranks or workers, and the union of the ranks' first B/W crops is the one-process run's first B.
* **A data position to resume from.** Items carry their position in the rank's stream; the consumer
  (``StreamingBatches``) counts what it *used* and restarts the stream there after a resume, skipping
  the earlier files without opening them. Workers are assigned positions counted from the start
  position, so the DataLoader's round-robin delivers them in order.
* **Bad files are reported, never silently dropped.** A file that cannot be read (or is shorter than
  the crop by more than ``pad_seconds``) comes through as an item with ``error`` set; the consumer
  raises (``on_error='raise'``) or logs it and records it in the run's skip report (``'skip'``).
  Files up to ``pad_seconds`` shorter than the crop (FMA's "30 s" clips are often 29.9 s) are
  zero-padded at the end.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from metrics.artifacts import ids_sha256
from metrics.audio import AUDIO_EXTENSIONS, AudioError, resample
from metrics.errors import InputError


class FolderError(InputError):
    """A folder that cannot be streamed (missing, empty, too few files for the ranks); names the folder."""


@dataclass
class Crop:
    """One streamed item: a crop of ``path`` (``wave`` float32 at the model rate) or the reason it failed."""

    id: str
    path: str
    position: int  # in this rank's stream for this epoch
    epoch: int
    wave: np.ndarray | None = None
    start_seconds: float = 0.0
    error: str | None = None


def scan_tree(root: str | Path, extensions=AUDIO_EXTENSIONS) -> list[Path]:
    """Every audio file under ``root`` (any depth), sorted by relative path; ids are the relative paths
    without suffix (``000/000002``), unique even where two folders share a file name."""
    root = Path(root)
    if not root.is_dir():
        raise FolderError(f"{root}: audio folder not found" if not root.exists() else f"{root}: not a directory")
    exts = {e.lower() for e in extensions}
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise FolderError(f"{root}: no audio files ({', '.join(sorted(exts))}) anywhere under it")
    return files


def file_id(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def read_crop(path: str | Path, seconds: float, sr: int, rng: np.random.Generator, pad_seconds: float = 1.0) -> tuple[np.ndarray, float]:
    """A uniformly random ``seconds``-long crop of ``path``, mono at ``sr``; only the crop is decoded.

    Returns (wave [round(seconds × sr)], start in seconds). Raises AudioError naming the file."""
    import soundfile as sf

    path = Path(path)
    try:
        info = sf.info(str(path))
        file_sr, total = int(info.samplerate), int(info.frames)
        n = int(round(seconds * file_sr))
        if total <= 0:
            raise AudioError(path, "zero samples")
        if total < n - pad_seconds * file_sr:
            raise AudioError(path, f"too short: {total / file_sr:.2f} s < crop {seconds:g} s (− {pad_seconds:g} s padding allowed)")
        start = int(rng.integers(0, total - n + 1)) if total > n else 0
        wave, _ = sf.read(str(path), start=start, frames=min(n, total - start), dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(path, f"unreadable or corrupt audio ({type(e).__name__}: {e})") from None
    mono = wave.mean(axis=1)
    if not np.isfinite(mono).all():
        raise AudioError(path, f"contains {int((~np.isfinite(mono)).sum())} NaN/Inf samples")
    mono = resample(mono, file_sr, sr)
    want = int(round(seconds * sr))
    return np.pad(mono[:want], (0, max(0, want - len(mono)))).astype(np.float32), start / file_sr


class AudioFolder(IterableDataset):
    """One epoch of random crops of ``files`` (this rank's share), decoded lazily; see the module docstring."""

    def __init__(self, root: str | Path, crop_seconds: float, sample_rate: int, files: list[Path] | None = None, seed: int = 0,
                 rank: int = 0, world: int = 1, pad_seconds: float = 1.0):
        self.root = Path(root)
        self.files = list(files) if files is not None else scan_tree(self.root)
        if len(self.files) < world:
            raise FolderError(f"{self.root}: {len(self.files)} audio files for {world} processes; each needs at least one")
        self.crop_seconds, self.sample_rate, self.seed = float(crop_seconds), int(sample_rate), int(seed)
        self.rank, self.world, self.pad_seconds = rank, world, pad_seconds
        self.epoch, self.start = 0, 0  # set by the consumer before each pass (resume = a later start)

    def order(self, epoch: int) -> list[int]:
        """This rank's file indices for ``epoch``: positions rank, rank+W, … of the epoch's permutation."""
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.files))
        per_rank = len(self.files) // self.world
        return [int(i) for i in perm[self.rank :: self.world][:per_rank]]

    def __len__(self) -> int:
        return len(self.files) // self.world

    def ids_hash(self) -> str:
        """``metrics.artifacts.ids_sha256`` of the file ids: what a manifest records for the training split."""
        return ids_sha256(file_id(p, self.root) for p in self.files)

    def item(self, index: int, position: int, epoch: int) -> Crop:
        path = self.files[index]
        crop = Crop(id=file_id(path, self.root), path=str(path), position=position, epoch=epoch)
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        try:
            crop.wave, crop.start_seconds = read_crop(path, self.crop_seconds, self.sample_rate, rng, self.pad_seconds)
        except AudioError as e:
            crop.error = e.problem
        return crop

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        order = self.order(self.epoch)
        for pos in range(self.start + worker, len(order), workers):
            yield self.item(order[pos], pos, self.epoch)


def crop_report(root: str | Path, seconds: float, sample_rate: int, max_files: int | None = None, seed: int = 0,
                on_error: str = "raise"):
    """One random ``seconds`` crop from each of up to ``max_files`` files of the tree (a seeded random
    subset), as a ``LoadReport`` — what fitting a tokenizer on a collection too large to load needs.
    A crop's ``sha256`` hashes its samples, so ``clips_hash`` pins the exact fitting data."""
    from metrics.audio import Clip, LoadReport, Skipped

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    folder = AudioFolder(root, seconds, sample_rate, seed=seed)
    order = folder.order(0)[: max_files or None]
    report = LoadReport()
    for pos, index in enumerate(order):
        crop = folder.item(index, pos, 0)
        if crop.error is not None:
            if on_error == "raise":
                raise FolderError(f"{crop.path}: {crop.error} (use --on-error skip to skip such files with a report)")
            report.skipped.append(Skipped(crop.path, crop.error))
            continue
        report.clips.append(Clip(crop.id, crop.wave, sample_rate, crop.path, hashlib.sha256(crop.wave.tobytes()).hexdigest()))
    if not report.clips:
        raise FolderError(f"{root}: no readable file among {len(order)} ({len(report.skipped)} skipped)")
    return report

"""Audio I/O for the whole project: decode, mono, resample, validate, scan, pair by id.

Every metric and tool reads audio through this module so that a clip is decoded one way
everywhere. soundfile does the decoding (torchaudio's own I/O needs torchcodec + FFmpeg);
torchaudio does the resampling with the filter recorded in ``RESAMPLE_FILTER``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from metrics.errors import InputError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
OnError = Literal["raise", "skip"]

# torchaudio's Kaiser-windowed sinc; the same settings fadtk uses. The filter moves FAD
# noticeably, so it is part of every cache key (see ``preprocessing_id``).
RESAMPLE_FILTER = {
    "resampling_method": "sinc_interp_kaiser",
    "lowpass_filter_width": 16,
    "rolloff": 0.85,
    "beta": 8.555822455451159,
}


class AudioError(InputError):
    """A file that cannot be used; the message always names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class PairingError(InputError):
    """Two collections of clips whose ids do not match one to one."""


class SilentAudioWarning(UserWarning):
    """An all-zero clip: valid audio, but almost surely a generation bug."""


@dataclass
class Clip:
    """A decoded, validated, mono float32 clip. ``id`` is the file stem (MusicCaps ``ytid``)."""

    id: str
    wave: np.ndarray
    sr: int
    path: str = ""
    sha256: str = ""

    @property
    def seconds(self) -> float:
        return len(self.wave) / self.sr


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class LoadReport:
    """What ``load_dir`` read and, under ``on_error='skip'``, what it left out and why."""

    clips: list[Clip] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"loaded {len(self.clips)} clips, skipped {len(self.skipped)}"]
        lines += [f"  skipped {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono float32 array with torchaudio's Kaiser sinc (``RESAMPLE_FILTER``)."""
    if sr_in == sr_out:
        return wave.astype(np.float32, copy=False)
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), sr_in, sr_out, **RESAMPLE_FILTER)
    return out.numpy()


def preprocessing_id(sr: int | None) -> str:
    """A string naming the decode/resample settings, for cache keys and result metadata."""
    f = RESAMPLE_FILTER
    return (
        f"mono=mean;sr={sr};{f['resampling_method']};w={f['lowpass_filter_width']};"
        f"rolloff={f['rolloff']};beta={f['beta']:.6f}"
    )


def decode(path: str | Path, data: bytes | None = None) -> tuple[np.ndarray, int]:
    """Decode a file to (float32 [samples, channels], sr). Raises AudioError on any failure."""
    import soundfile as sf

    path = Path(path)
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise AudioError(path, f"unsupported format {path.suffix or '(no extension)'!r}; expected one of {', '.join(AUDIO_EXTENSIONS)}")
    try:
        src = io.BytesIO(data) if data is not None else str(path)
        wave, sr = sf.read(src, dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        detail = re.sub(r"Error opening <_io\.BytesIO object at 0x[0-9a-f]+>: ", "", str(e))
        raise AudioError(path, f"unreadable or corrupt audio ({detail})") from None
    return wave, int(sr)


def validate(wave: np.ndarray, path: str | Path, sr: int, min_seconds: float | None = None) -> None:
    """Raise AudioError for audio no metric should score; warn on all-silent audio."""
    if wave.size == 0:
        raise AudioError(path, "zero samples")
    if not np.isfinite(wave).all():
        bad = int((~np.isfinite(wave)).sum())
        raise AudioError(path, f"contains {bad} NaN/Inf samples")
    if min_seconds is not None and len(wave) / sr < min_seconds:
        raise AudioError(path, f"too short: {len(wave) / sr:.3f} s < minimum {min_seconds:.3f} s")
    if not np.any(wave):
        warnings.warn(f"{path}: all-silent audio", SilentAudioWarning, stacklevel=3)


def read_audio_bytes(path: str | Path) -> bytes:
    """A file's bytes, or an AudioError saying why not: missing, a broken link or a symlink loop, a
    directory, unreadable (permissions, I/O error), or empty (a zero-length file is a failed write,
    not a clip; soundfile would only say "format not recognised")."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AudioError(path, "broken symbolic link" if path.is_symlink() else "file not found") from None
    except IsADirectoryError:
        raise AudioError(path, "is a directory, not an audio file") from None
    except OSError as e:  # ELOOP (a symlink loop), EACCES, EIO, …
        why = "symbolic link loop" if e.errno == errno.ELOOP else f"cannot read file ({e.strerror or e})"
        raise AudioError(path, why) from None
    if not data:
        raise AudioError(path, "empty file (0 bytes)")
    return data


def load_audio(path: str | Path, sr: int | None = None, min_seconds: float | None = None) -> Clip:
    """Load one file as a validated mono float32 Clip, resampled to ``sr`` when given.

    Mono is the channel mean. Samples outside [-1, 1] (float files) are kept as decoded:
    clipping them would hide a generation bug, and every embedder sees the same values.
    """
    path = Path(path)
    data = read_audio_bytes(path)
    wave, file_sr = decode(path, data)
    mono = wave.mean(axis=1).astype(np.float32)
    validate(mono, path, file_sr, min_seconds)
    if sr is not None and sr != file_sr:
        mono = resample(mono, file_sr, sr)
    return Clip(path.stem, mono, sr or file_sr, str(path), hashlib.sha256(data).hexdigest())


def save_audio(path: str | Path, wave: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    """Write mono (or [samples, channels]) audio; WAV PCM-16 by default, which is byte-deterministic."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0), sr, subtype=subtype)
    return path


def scan_dir(directory: str | Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> dict[str, Path]:
    """Map id (file stem) → path for the entries with an audio extension directly in ``directory``, sorted by id.

    Two files with the same stem (``a.wav`` and ``a.flac``) would make pairing ambiguous, so they
    are an error rather than a silent pick.
    """
    directory = Path(directory)
    if not directory.exists():
        raise AudioError(directory, "directory not found")
    if not directory.is_dir():
        raise AudioError(directory, "not a directory")
    exts = {e.lower() for e in extensions}
    found: dict[str, Path] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError as e:
        raise AudioError(directory, f"cannot list directory ({e.strerror or e})") from None
    for p in entries:
        # every entry named like audio, not only regular files: a symlink loop, a broken link or a
        # directory called x.wav is then an error naming it (or a reported skip), never a silent gap
        if p.suffix.lower() in exts:
            if p.stem in found:
                raise AudioError(p, f"duplicate id {p.stem!r} (also {found[p.stem].name})")
            found[p.stem] = p
    if not found:
        raise AudioError(directory, f"no audio files ({', '.join(sorted(exts))}) in directory")
    return dict(sorted(found.items()))


def load_dir(
    directory: str | Path,
    sr: int | None = None,
    on_error: OnError = "raise",
    min_seconds: float | None = None,
    ids: Iterable[str] | None = None,
) -> LoadReport:
    """Load every clip of a directory (or the given ids), sorted by id, under an error policy."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    files = scan_dir(directory)
    if ids is not None:
        files = {i: files[i] for i in ids if i in files}
    report = LoadReport()
    for _id, path in files.items():
        try:
            report.clips.append(load_audio(path, sr=sr, min_seconds=min_seconds))
        except AudioError as e:
            if on_error == "raise":
                raise
            log.warning("skipping %s", e)
            report.skipped.append(Skipped(e.path, e.problem))
    if not report.clips:
        raise AudioError(directory, "no usable clips" + (f" ({len(report.skipped)} skipped)" if report.skipped else ""))
    return report


def pair_ids(named: dict[str, Iterable[str]], allow_missing: bool = False) -> list[str]:
    """Ids shared by every collection in ``named`` (name → ids), sorted.

    Pairing is by id, never by listing order. Unless ``allow_missing``, any id not present in
    all collections is an error that lists, per collection, the ids it lacks.
    """
    sets = {name: set(ids) for name, ids in named.items()}
    union = set().union(*sets.values())
    common = set.intersection(*sets.values()) if sets else set()
    missing = {name: sorted(union - s) for name, s in sets.items() if union - s}
    if missing and not allow_missing:
        parts = [f"{name} lacks {len(m)} id(s): {', '.join(m[:20])}{' …' if len(m) > 20 else ''}" for name, m in missing.items()]
        raise PairingError("clip ids do not match: " + "; ".join(parts))
    if not common:
        raise PairingError("no clip id is shared by " + ", ".join(named))
    return sorted(common)

"""Prepare MusicCaps clips for the harness: trim, resample, check 10 s, report what is unusable.

Users download MusicCaps audio themselves (YouTube); files arrive either as the 10 s segment or as
the full video's audio. A file noticeably longer than ``end_s - start_s`` is taken to be the full
audio and trimmed to ``start_s..end_s``; otherwise it is taken to be the segment already.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from metrics.audio import AudioError, decode, resample, save_audio, scan_dir, validate
from metrics.errors import UnavailableError
from metrics.musiccaps import load_captions, write_captions

MANIFEST = "manifest.json"
# A clip shorter than this fraction of its caption's 10 s is unusable (the paper scores 10 s clips).
MIN_FRACTION = 0.95


@dataclass
class PrepareReport:
    out_dir: str
    subset: str
    sample_rate: int
    n_captions: int
    prepared: list[str] = field(default_factory=list)
    trimmed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unusable: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"MusicCaps ({self.subset}): {len(self.prepared)}/{self.n_captions} clips prepared at {self.sample_rate} Hz "
            f"in {self.out_dir} ({len(self.trimmed)} trimmed from full-length audio)",
            f"  missing audio: {len(self.missing)}" + (f" (e.g. {', '.join(self.missing[:5])})" if self.missing else ""),
            f"  unusable: {len(self.unusable)}",
        ]
        lines += [f"    {k}: {v}" for k, v in list(self.unusable.items())[:20]]
        return "\n".join(lines)


def prepare(
    csv: str | Path,
    audio_dir: str | Path,
    out_dir: str | Path,
    subset: Literal["all", "balanced", "eval"] = "eval",
    sample_rate: int = 16000,
) -> PrepareReport:
    """Write ``out_dir/audio/<ytid>.wav`` (mono, ``sample_rate``, exactly 10 s), ``captions.csv`` and a manifest."""
    captions = load_captions(csv, subset=subset)
    out_dir = Path(out_dir)
    audio_out = out_dir / "audio"
    audio_out.mkdir(parents=True, exist_ok=True)
    try:
        files = scan_dir(audio_dir)
    except AudioError:
        files = {}
    report = PrepareReport(str(out_dir), subset, sample_rate, len(captions))
    for ytid, row in captions.iterrows():
        path = files.get(ytid)
        if path is None:
            report.missing.append(ytid)
            continue
        try:
            wave, sr = decode(path)
            mono = wave.mean(axis=1).astype(np.float32)
            validate(mono, path, sr)
            want = float(row["end_s"] - row["start_s"])
            if len(mono) / sr > want + 1.0:  # full-length audio: cut the captioned segment
                a, b = int(row["start_s"] * sr), int(row["end_s"] * sr)
                if b > len(mono):
                    raise AudioError(path, f"audio is {len(mono) / sr:.1f} s, shorter than end_s={row['end_s']}")
                mono = mono[a:b]
                report.trimmed.append(ytid)
            if len(mono) / sr < MIN_FRACTION * want:
                raise AudioError(path, f"too short: {len(mono) / sr:.2f} s of {want:.0f} s")
            mono = resample(mono, sr, sample_rate)
            n = int(round(want * sample_rate))
            mono = np.pad(mono[:n], (0, max(0, n - len(mono))))
            save_audio(audio_out / f"{ytid}.wav", mono, sample_rate)
            report.prepared.append(ytid)
        except AudioError as e:
            report.unusable[ytid] = e.problem
    write_captions(captions.loc[report.prepared], out_dir / "captions.csv")
    (out_dir / MANIFEST).write_text(json.dumps(asdict(report), indent=2))
    return report


def download(
    csv: str | Path,
    audio_dir: str | Path,
    subset: Literal["all", "balanced", "eval"] = "eval",
    delay_s: float = 2.0,
    limit: int | None = None,
) -> dict[str, str]:
    """Fetch the captioned segments with a user-installed ``yt-dlp`` (resumable, rate-limited).

    Already-present ids are skipped, so re-running resumes. Returns {ytid: error} for videos that
    could not be fetched (unavailable, private, removed) — MusicCaps loses a few percent this way.
    """
    exe = shutil.which("yt-dlp")
    if exe is None:
        raise UnavailableError("--download needs yt-dlp on PATH (pip install yt-dlp); the suite never needs it otherwise")
    captions = load_captions(csv, subset=subset)
    audio_dir = Path(audio_dir)
    audio_dir.mkdir(parents=True, exist_ok=True)
    have = {p.stem for p in audio_dir.iterdir()}
    failed: dict[str, str] = {}
    todo = [r for _, r in captions.iterrows() if r["ytid"] not in have][:limit]
    for row in todo:
        cmd = [
            exe, "-q", "-x", "--audio-format", "wav",
            "--download-sections", f"*{row['start_s']}-{row['end_s']}",
            "-o", str(audio_dir / f"{row['ytid']}.%(ext)s"),
            f"https://www.youtube.com/watch?v={row['ytid']}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            failed[row["ytid"]] = (proc.stderr.strip().splitlines() or ["yt-dlp failed"])[-1]
        time.sleep(delay_s)
    return failed

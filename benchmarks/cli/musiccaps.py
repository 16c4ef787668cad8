"""``musiclm-eval musiccaps prepare``: MusicCaps clips you downloaded, trimmed, resampled and checked."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def musiccaps() -> None:
    """Prepare MusicCaps clips (downloaded by you) for evaluation."""


@musiccaps.command("prepare")
@click.option("--captions", "csv_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="MusicCaps captions CSV (musiccaps-public.csv).")
@click.option("--audio", "audio_dir", type=click.Path(path_type=Path), required=True, help="Folder of <ytid>.<ext> files.")
@click.option("--clips", "clips_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder to write the prepared clips, their captions and manifest into.")
@click.option("--subset", type=click.Choice(["balanced", "eval", "all"]), default="eval", show_default=True)
@click.option("--sample-rate", type=int, default=16000, show_default=True)
@click.option("--download", is_flag=True, help="First fetch missing clips with yt-dlp (must be installed).")
def musiccaps_prepare(csv_path: Path, audio_dir: Path, clips_dir: Path, subset: str, sample_rate: int,
                      download: bool) -> None:
    """Trim, resample and check clips; report missing/unusable ids; write a manifest the harness reads."""
    from benchmarks.musiccaps_prep import download as fetch
    from benchmarks.musiccaps_prep import prepare

    if download:
        failed = fetch(csv_path, audio_dir, subset=subset)
        click.echo(f"download: {len(failed)} videos unavailable")
    report = prepare(csv_path, audio_dir, clips_dir, subset=subset, sample_rate=sample_rate)
    click.echo(report.summary())
    if not report.prepared:
        sys.exit(1)

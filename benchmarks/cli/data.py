"""``musiclm-eval synth`` and ``musiclm-eval degrade``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click


@click.command()
@click.option("--corpus", "corpus_dir", type=click.Path(file_okay=False, path_type=Path), required=True, metavar="DIR",
              help="Folder to write the corpus into (WAVs, captions.csv, labels.csv).")
@click.option("--n", type=click.IntRange(min=1), default=200, show_default=True, help="Number of clips.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sample-rate", type=int, default=24000, show_default=True)
@click.option("--styles", default=None, help="Comma-separated styles to cycle through (default: drawn per clip).")
@click.option("--workers", type=int, default=min(2, os.cpu_count() or 1), show_default=True)
def synth(corpus_dir: Path, n: int, seconds: float, seed: int, sample_rate: int, styles: str | None, workers: int) -> None:
    """Generate the procedural captioned corpus: WAVs, captions.csv (MusicCaps columns), labels.csv."""
    from musiclm_ref.data.synth import generate_corpus

    info = generate_corpus(corpus_dir, n, seconds, seed, sample_rate, styles.split(",") if styles else None, workers)
    click.echo(info.summary())


@click.command()
@click.option("--input", "in_dir", type=click.Path(path_type=Path), required=True)
@click.option("--clips", "clips_dir", type=click.Path(file_okay=False, path_type=Path), required=True, metavar="DIR",
              help="Folder to write the degraded clips into (not the input folder).")
@click.option("--kind", required=True, help="noise, lowpass, clip, pitch, stretch or reverb.")
@click.option("--severity", type=click.FloatRange(0, 1), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
def degrade(in_dir: Path, clips_dir: Path, kind: str, severity: float, seed: int, on_error: str) -> None:
    """Degrade every clip of a folder (ids kept; captions.csv/labels.csv copied)."""
    from metrics.audio import load_dir, save_audio
    from musiclm_ref.data.degrade import DEGRADATIONS
    from musiclm_ref.data.degrade import degrade as apply

    if kind not in DEGRADATIONS:
        raise click.BadParameter(f"unknown degradation {kind!r}; expected one of {', '.join(DEGRADATIONS)}",
                                 param_hint="--kind")
    if clips_dir.resolve() == in_dir.resolve():
        raise click.BadParameter(f"{clips_dir} is the input folder; degraded clips must not overwrite the originals",
                                 param_hint="--clips")
    report = load_dir(in_dir, on_error=on_error)
    for c in report.clips:
        save_audio(clips_dir / f"{c.id}.wav", apply(c.wave, c.sr, kind, severity, seed), c.sr)
    for name in ("captions.csv", "labels.csv"):
        if (in_dir / name).is_file():
            shutil.copy(in_dir / name, clips_dir / name)
    d = DEGRADATIONS[kind]
    click.echo(f"{len(report.clips)} clips → {clips_dir} ({kind}: {d.parameter} = {d.value(severity):g})")
    if report.skipped:
        click.echo(report.summary())

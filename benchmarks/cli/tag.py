"""``musiclm-eval tag AUDIO... --model musicnn-mtt``: what a real music tagger hears in each file.

A thin click layer over ``metrics.embedders.musicnn.tag_files``: prints each file's top tags and,
with ``--json PATH``, writes every file's mean tag probabilities as ``{file: {tag: p}}``.
"""

from __future__ import annotations

from pathlib import Path

import click

from benchmarks.cli.options import emit_json, json_option
from metrics.audio import scan_dir
from metrics.embedders.musicnn import MODELS, tag_files


def expand(audio: tuple[str, ...]) -> list[str]:
    """Files as given; a directory contributes its audio files (sorted by id)."""
    out: list[str] = []
    for a in audio:
        out.extend(str(p) for p in scan_dir(a).values()) if Path(a).is_dir() else out.append(a)
    return out


@click.command("tag")
@click.argument("audio", nargs=-1, required=True, type=click.Path())
@click.option("--model", type=click.Choice(sorted(MODELS)), default="musicnn-mtt", show_default=True,
              help="musicnn-mtt: MagnaTagATune's 50 tags (instruments, genres, moods); musicnn-msd: Million Song Dataset's 50.")
@json_option("Write {file: {tag: p}} as JSON to PATH ('-': standard output).")
@click.option("--top", default=5, show_default=True, help="Tags printed per file.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
def tag(audio, model, json_out, top, device, on_error):
    """Tag audio files with a pretrained musicnn tagger (mean tag probability over 3 s patches)."""
    tags, skipped = tag_files(expand(audio), model, device, on_error)
    for f, problem in skipped:
        click.echo(f"skipped {f}: {problem}", err=True)
    if emit_json(json_out, tags):
        return
    for f, probs in tags.items():
        best = sorted(probs.items(), key=lambda kv: -kv[1])[:top]
        click.echo(f"{f}: " + ", ".join(f"{t} {p:.2f}" for t, p in best))
    if json_out:
        click.echo(f"wrote {json_out} ({len(tags)} files, model {model})")


"""``musiclm-eval generate``: one WAV per caption from a reference MusicLM checkpoint.

A thin layer over ``musiclm_ref.generate``; tests call that directly. The trainers are ``musiclm-eval
train …`` (``benchmarks/cli/train.py``).
"""

from __future__ import annotations

import click

from benchmarks.cli.options import emit_json, json_option


@click.command("generate")
@click.option("--checkpoint", type=click.Path(file_okay=False), default=None,
              help="Checkpoint directory (default: the shipped tiny set).")
@click.option("--captions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV with `ytid` (or `id`) and `caption` columns; one WAV per row, named <ytid>.wav.")
@click.option("--text", "texts", multiple=True, help="A caption (repeatable); files are named text-000.wav, …")
@click.option("--seconds", type=float, default=10.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--melody", type=click.Path(exists=True, dir_okay=False), default=None, help="Audio file whose melody conditions every caption.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--limit", type=int, default=None, help="Only the first N captions.")
@click.option("--unconditional", is_flag=True, help="Drop the MuLan conditioning tokens (the unconditional baseline).")
@click.option("--skip-semantic", is_flag=True, help="The paper's ablation: MuLan tokens → coarse stage directly.")
@click.option("--cfg-scale", type=click.FloatRange(min=0), default=None,
              help="Classifier-free guidance scale for the semantic and coarse stages (beyond the paper; off by default; 1 = unguided).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads (1 is fastest for the tiny model on a shared CPU).")
@click.option("--clips", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder to write the generated WAVs into.")
@json_option()
def generate(checkpoint, captions, texts, seconds, seed, melody, batch_size, limit, unconditional, skip_semantic, cfg_scale,
             device, threads, clips, json_out):
    """Generate one WAV per caption with a reference MusicLM.

    A clip depends only on its caption (its CSV id), the seed and the settings — not on --limit,
    --batch-size or the other captions."""
    from musiclm_ref.generate import generate_files

    if (captions is None) == (not texts):
        raise click.UsageError("give exactly one of --captions CSV or --text \"…\"")
    summary = generate_files(checkpoint, clips, captions=captions, texts=list(texts), seconds=seconds, seed=seed,
                             melody=melody, batch=batch_size, limit=limit, drop_conditioning=unconditional,
                             skip_semantic=skip_semantic, device=device, threads=threads, progress=json_out != "-",
                             cfg_scale=cfg_scale)
    if not emit_json(json_out, summary):
        click.echo(f"wrote {summary['n']} clips × {seconds:g} s to {clips} in {summary['wall_seconds']:.1f} s "
                   f"(real-time factor {summary['real_time_factor']:.2f})")

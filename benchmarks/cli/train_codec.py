"""``musiclm-eval train codec`` and ``musiclm-eval train semantic``: thin layers over
``musiclm_ref.codec.train_codec`` and ``musiclm_ref.semantic.train_semantic``.

Both write into ``--out DIR`` (a checkpoint directory such as ``musiclm_ref/checkpoints/tiny``):
the checkpoint file and an entry in ``DIR/manifest.json`` (command, seed, data hash, metrics).
``train codec`` resumes from ``DIR/codec_last.pt`` when it exists.
"""

from __future__ import annotations

import shlex
import sys

import click

from benchmarks.cli.options import emit_json, json_option


def _command(name: str) -> str:
    return f"musiclm-eval train {name} " + shlex.join(sys.argv[3:] if len(sys.argv) > 3 else [])


@click.command("codec")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Directory of training clips.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Checkpoint directory (codec.pt, manifest.json).")
@click.option("--preset", type=click.Choice(["tiny", "paper"]), default="tiny", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=int, default=2000, show_default=True, help="Total optimizer steps (resuming counts earlier ones).")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--crop-seconds", type=float, default=0.32, show_default=True, help="Length of each training crop.")
@click.option("--init", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from this codec.pt's weights (fine-tuning; no warm-up, no k-means init).")
@click.option("--decoder-only", is_flag=True, help="Freeze the encoder and the codebooks; train the decoder only.")
@click.option("--cosine", is_flag=True, help="Cosine learning-rate decay to 0 over --steps.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
@json_option()
def train_codec(data, out, preset, seed, steps, batch_size, lr, crop_seconds, init, decoder_only, cosine, threads, device,
                on_error, json_out):
    """Train the SoundStream-style codec (12-level RVQ, 50 Hz) on a folder of clips."""
    from musiclm_ref.codec import CodecError, CodecTrainConfig
    from musiclm_ref.codec import train_codec as run

    try:
        entry = run(data, out, preset, CodecTrainConfig(
            steps=steps, batch_size=batch_size, lr=lr, seed=seed, threads=threads, crop_seconds=crop_seconds, init=init,
            decoder_only=decoder_only, cosine=cosine),
                    device=device, on_error=on_error, command=_command("codec"))
    except (CodecError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if not emit_json(json_out, entry):
        lv = entry["metrics"].get("log_mel_distance_by_levels", {})
        click.echo(f"wrote {out}/codec.pt after {entry['steps']} steps; held-out log-mel distance by levels: {lv}")


@click.command("semantic")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Directory of training clips.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Checkpoint directory (semantic_tokenizer.pt, manifest.json).")
@click.option("--preset", type=click.Choice(["tiny", "paper"]), default="tiny", show_default=True, help="tiny: k=256, paper: k=1024.")
@click.option("--k", type=int, default=None, help="Number of clusters (overrides the preset).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", "iters", type=int, default=20, show_default=True, help="k-means iterations.")
@click.option("--hf-model", type=click.Path(exists=True, file_okay=False), default=None,
              help="Local transformers model directory (e.g. w2v-BERT) instead of the offline log-mel features.")
@click.option("--layer", type=int, default=7, show_default=True, help="Hidden state of --hf-model to cluster.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
@click.option("--stream", is_flag=True, help="--data is a folder tree of audio (e.g. fma_small/): fit on one random crop per file, "
              "decoding only the crop.")
@click.option("--crop-seconds", type=float, default=30.0, show_default=True, help="--stream: crop length (the semantic stage's).")
@click.option("--max-files", type=int, default=2000, show_default=True, help="--stream: files sampled (seeded).")
@json_option()
def train_semantic(data, out, preset, k, seed, iters, hf_model, layer, device, on_error, stream, crop_seconds, max_files, json_out):
    """Fit the semantic tokenizer (25 Hz features + k-means) on a folder of clips."""
    from musiclm_ref.semantic import SemanticError
    from musiclm_ref.semantic import train_semantic as run

    try:
        entry = run(data, out, preset, k=k, seed=seed, iters=iters, hf_path=hf_model, layer=layer, device=device,
                    on_error=on_error, command=_command("semantic"), stream=stream, crop_seconds=crop_seconds,
                    max_files=max_files)
    except (SemanticError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if not emit_json(json_out, entry):
        m = entry["metrics"]
        click.echo(f"wrote {out}/semantic_tokenizer.pt: k={m['k']}, {m['used_clusters']} used, "
                   f"perplexity {m['perplexity']} on {entry['data_clips']} clips")

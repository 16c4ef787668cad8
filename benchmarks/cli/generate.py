"""``musiclm-eval generate``, ``musiclm-eval train stage`` and ``musiclm-eval train melody``.

Thin layers over ``musiclm_ref.pipeline`` / ``musiclm_ref.training``; tests call those directly.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from benchmarks.cli.options import emit_json, json_option


def _command(prefix: str) -> str:
    return prefix + " " + shlex.join(sys.argv[3:] if len(sys.argv) > 3 else [])


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
@click.option("--out", required=True, type=click.Path(file_okay=False))
@json_option()
def generate(checkpoint, captions, texts, seconds, seed, melody, batch_size, limit, unconditional, skip_semantic, cfg_scale,
             device, threads, out, json_out):
    """Generate one WAV per caption with a reference MusicLM.

    A clip depends only on its caption (its CSV id), the seed and the settings — not on --limit,
    --batch-size or the other captions."""
    from musiclm_ref.pipeline import PipelineError
    from musiclm_ref.training import generate_files

    if (captions is None) == (not texts):
        raise click.UsageError("give exactly one of --captions CSV or --text \"…\"")
    try:
        summary = generate_files(checkpoint, out, captions=captions, texts=list(texts), seconds=seconds, seed=seed,
                                 melody=melody, batch=batch_size, limit=limit, drop_conditioning=unconditional,
                                 skip_semantic=skip_semantic, device=device, threads=threads, progress=json_out != "-",
                                 cfg_scale=cfg_scale)
    except (PipelineError, ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    if not emit_json(json_out, summary):
        click.echo(f"wrote {summary['n']} clips × {seconds:g} s to {out} in {summary['wall_seconds']:.1f} s "
                   f"(real-time factor {summary['real_time_factor']:.2f})")


@click.command("stage")
@click.option("--stage", "stages", required=True, type=click.Choice(["semantic", "coarse", "fine", "all"]), multiple=True)
@click.option("--preset", type=click.Choice(["tiny", "paper"]), default="tiny", show_default=True)
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Corpus directory (clips + captions.csv); with --stream, a folder tree of audio (e.g. fma_small/).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Checkpoint directory (<stage>_stage.pt, manifest.json).")
@click.option("--components", type=click.Path(file_okay=False), default=None,
              help="Where codec.pt / semantic_tokenizer.pt live (default: --out if it has them, else the shipped set).")
@click.option("--mulan", type=click.Path(dir_okay=False), default=None, help="MuLan checkpoint (default: the shipped one).")
@click.option("--steps", type=int, default=None, help="Optimizer steps (default per stage for the preset).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True,
              help="skip: leave out unreadable files, listed in the manifest (and skipped-*.jsonl with --stream).")
@click.option("--stream", is_flag=True, help="Train on random crops of each stage's length (paper: 30/10/3 s) streamed from "
              "the audio files under --data (any depth, any soundfile format), tokenized on the fly; no token cache.")
@click.option("--num-workers", type=int, default=0, show_default=True, help="--stream: DataLoader processes decoding ahead.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: autocast forward and loss (Ampere+ GPUs; runs on CPU too, slowly); weights and AdamW stay fp32.")
@click.option("--grad-checkpoint", is_flag=True, help="Recompute each Transformer block in backward (less activation memory).")
@click.option("--hf-model", type=click.Path(exists=True, file_okay=False), default=None,
              help="Local transformers model (w2v-BERT) of a semantic tokenizer fitted with `train semantic --hf-model`.")
@click.option("--checkpoint-every", type=int, default=250, show_default=True, help="Steps between resumable checkpoints.")
@click.option("--stop-at", type=int, default=None, help="Save a resumable checkpoint and exit after this step (a job's time slice).")
@click.option("--cond-dropout", type=click.FloatRange(0, 1), default=None,
              help="P(MuLan tokens → NULL) per training crop (default 0.1): unconditional sampling and --cfg-scale need it > 0.")
@json_option()
def train_stage(stages, preset, data, out, components, mulan, steps, batch_size, lr, seed, threads, device, on_error, stream,
                num_workers, precision, grad_checkpoint, hf_model, checkpoint_every, stop_at, cond_dropout, json_out):
    """Train one (or all) of the three Transformer stages; resumes from --out's checkpoint.

    Under torchrun (torchrun --nproc_per_node=8 --no-python musiclm-eval train stage …) the processes
    form one data-parallel run; --batch-size is the global batch."""
    from musiclm_ref.distributed import DistributedError
    from musiclm_ref.training import train_stages

    names = ["semantic", "coarse", "fine"] if "all" in stages else list(dict.fromkeys(stages))
    try:
        entries = train_stages(names, data, out, preset=preset, components=components, mulan_path=mulan, steps=steps,
                               batch=batch_size, lr=lr, seed=seed, threads=threads, device=device, on_error=on_error,
                               command=_command("musiclm-eval train stage"), precision=precision,
                               grad_checkpoint=grad_checkpoint, stream=stream, num_workers=num_workers, hf_model=hf_model,
                               checkpoint_every=checkpoint_every, stop_at=stop_at, progress=json_out != "-",
                               cond_dropout=cond_dropout)
    except (ValueError, FileNotFoundError, DistributedError) as e:
        raise click.ClickException(str(e)) from None
    if not entries:  # a rank other than 0 of a torchrun job: rank 0 reports
        return
    if not emit_json(json_out, entries):
        for name, e in entries.items():
            click.echo(f"{name}: {Path(out) / name} {e['metrics']}")


@click.command("melody")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Checkpoint directory (melody.pt, manifest.json).")
@click.option("--data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Corpus whose clips fit the melody RVQ (default: the rendered training pairs).")
@click.option("--pairs", type=int, default=260, show_default=True, help="Melodies rendered in two timbres each.")
@click.option("--steps", type=int, default=600, show_default=True)
@click.option("--codebook", type=int, default=64, show_default=True, help="RVQ codebook size (paper: 512).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@json_option()
def train_melody(out, data, pairs, steps, codebook, seed, threads, json_out):
    """Train the melody embedding (triplet loss on timbre pairs) and fit its 24-level RVQ."""
    from musiclm_ref.training import train_melody_model

    try:
        entry = train_melody_model(out, data=data, pairs=pairs, steps=steps, codebook=codebook, seed=seed, threads=threads,
                                   command=_command("musiclm-eval train melody"))
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    if not emit_json(json_out, entry):
        click.echo(f"wrote {out}/melody.pt {entry['metrics']}")

"""``musiclm-eval train …``: every trainer of the project, one command each.

``classifier`` (KLD) and ``mulan`` (MCC, conditioning) write one checkpoint file (``--checkpoint PATH``,
a .json manifest beside it); ``codec``, ``semantic``, ``melody`` and ``stage`` write into a checkpoint
directory (``--checkpoint DIR``, e.g. ``musiclm_ref/checkpoints/tiny``: the checkpoint file and an entry
in ``DIR/manifest.json`` with command, seed, data hash and metrics). ``train codec`` resumes from
``DIR/codec_last.pt``, ``train stage`` from its stage checkpoint, ``train melody`` from ``DIR/melody_last.pt``,
and ``train classifier`` / ``train mulan`` from ``PATH.resume`` (their state after the last finished epoch) when
they exist. The commands only
parse flags and print a summary; tests call the library trainers behind them.
"""

from __future__ import annotations

from pathlib import Path

import click

from benchmarks.cli.options import emit_json, json_option, manifest_command


@click.group()
def train() -> None:
    """Train one of the project's models on a corpus directory."""


def corpus_training_options(corpus_help: str, epochs: int):
    """The flags of the two metric-model trainers (MuLan, the LEAF classifier): same names, their own defaults."""
    def wrap(f):
        for opt in reversed([
            click.option("--data", required=True, type=click.Path(file_okay=False), help=corpus_help),
            click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), metavar="PATH",
                         help="Checkpoint to write (.pt); a .json manifest goes beside it."),
            click.option("--epochs", default=epochs, show_default=True),
            click.option("--seed", default=0, show_default=True),
            click.option("--device", default="cpu", show_default=True),
            click.option("--threads", default=1, show_default=True, help="torch CPU threads (1 is fastest on a shared CPU)."),
        ]):
            f = opt(f)
        return f
    return wrap


@click.command("mulan")
@corpus_training_options("Corpus directory (clips, captions.csv, labels.csv).", epochs=40)
def train_mulan(data, checkpoint, epochs, seed, device, threads):
    """Train the MuLan-style joint embedding; report held-out retrieval and the MCC gap."""
    import torch

    from musiclm_ref.train.mulan import MulanTrainConfig
    from musiclm_ref.train.mulan import train_mulan as train

    torch.set_num_threads(threads)
    entry = train(data, checkpoint, MulanTrainConfig(epochs=epochs, seed=seed, device=device, progress=click.echo,
                                                     command=manifest_command("musiclm-eval train mulan")))
    click.echo(f"wrote {checkpoint}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry["metrics"].items() if isinstance(v, float)))


@click.command("classifier")
@corpus_training_options("Corpus directory (clips, labels.csv).", epochs=12)
def train_classifier(data, checkpoint, epochs, seed, device, threads):
    """Train the LEAF multi-label classifier on the corpus tags; report held-out mAP."""
    import torch

    from metrics.classifier_training import ClassifierTrainConfig
    from metrics.classifier_training import train_classifier as train

    torch.set_num_threads(threads)
    entry = train(data, checkpoint, ClassifierTrainConfig(epochs=epochs, seed=seed, device=device, progress=click.echo,
                                                          command=manifest_command("musiclm-eval train classifier")))
    eval_map = entry["metrics"]["eval_map"]
    click.echo(f"wrote {checkpoint}: eval mAP {eval_map:.4f}" if eval_map is not None else f"wrote {checkpoint}")


@click.command("codec")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Directory of training clips.")
@click.option("--checkpoint", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Checkpoint directory (codec.pt, manifest.json).")
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
def train_codec(data, checkpoint, preset, seed, steps, batch_size, lr, crop_seconds, init, decoder_only, cosine, threads, device,
                on_error, json_out):
    """Train the SoundStream-style codec (12-level RVQ, 50 Hz) on a folder of clips."""
    from musiclm_ref.train.codec import CodecTrainConfig
    from musiclm_ref.train.codec import train_codec as run

    entry = run(data, checkpoint, CodecTrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, threads=threads, crop_seconds=crop_seconds, init=init,
        decoder_only=decoder_only, cosine=cosine, preset=preset, device=device, on_error=on_error,
        command=manifest_command("musiclm-eval train codec")))
    if not emit_json(json_out, entry):
        lv = entry["metrics"].get("log_mel_distance_by_levels", {})
        click.echo(f"wrote {checkpoint}/codec.pt after {entry['steps']} steps; held-out log-mel distance by levels: {lv}")


@click.command("semantic")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Directory of training clips.")
@click.option("--checkpoint", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Checkpoint directory (semantic_tokenizer.pt, manifest.json).")
@click.option("--preset", type=click.Choice(["tiny", "paper"]), default="tiny", show_default=True, help="tiny: k=256, paper: k=1024.")
@click.option("--k", type=int, default=None, help="Number of clusters (overrides the preset).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", "iters", type=int, default=20, show_default=True, help="k-means iterations.")
@click.option("--hf-model", type=click.Path(exists=True, file_okay=False), default=None,
              help="Local transformers model directory (e.g. w2v-BERT) instead of the offline log-mel features.")
@click.option("--layer", type=int, default=7, show_default=True, help="Hidden state of --hf-model to cluster.")
@click.option("--features", type=click.Choice(["logmel", "musicnn-msd", "musicnn-mtt"]), default="logmel", show_default=True,
              help="Frame features k-means clusters: the offline log-mel+delta stack, or the frame-level activations of "
              "the shipped musicnn tagger (MSD / MTT weights) pooled to 25 Hz.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
@click.option("--stream", is_flag=True, help="--data is a folder tree of audio (e.g. fma_small/): fit on one random crop per file, "
              "decoding only the crop.")
@click.option("--crop-seconds", type=float, default=30.0, show_default=True, help="--stream: crop length (the semantic stage's).")
@click.option("--max-files", type=int, default=2000, show_default=True, help="--stream: files sampled (seeded).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=50, show_default=True,
              help="Clips between saves of the feature pass's resume state (k-means saves after every iteration).")
@json_option()
def train_semantic(data, checkpoint, preset, k, seed, iters, hf_model, layer, features, device, on_error, stream, crop_seconds,
                   max_files, checkpoint_every, json_out):
    """Fit the semantic tokenizer (25 Hz features + k-means) on a folder of clips.

    A killed run rerun with the same flags continues from DIR/semantic_tokenizer.pt.resume[.features] and ends
    with the centroids an uninterrupted run would have; other flags or data refuse that state."""
    from musiclm_ref.train.semantic import SemanticTrainConfig
    from musiclm_ref.train.semantic import train_semantic as run

    if hf_model and features != "logmel":
        raise click.UsageError(f"--hf-model and --features {features} name two different feature models; give one of them")
    entry = run(data, checkpoint, SemanticTrainConfig(
        preset=preset, k=k, seed=seed, iters=iters, hf_path=hf_model, layer=layer, features=features, device=device,
        on_error=on_error,
        command=manifest_command("musiclm-eval train semantic"), stream=stream, crop_seconds=crop_seconds, max_files=max_files,
        checkpoint_every=checkpoint_every))
    if not emit_json(json_out, entry):
        m = entry["metrics"]
        click.echo(f"wrote {checkpoint}/semantic_tokenizer.pt: k={m['k']}, {m['used_clusters']} used, "
                   f"perplexity {m['perplexity']} on {entry['data_clips']} clips")


@click.command("stage")
@click.option("--stage", "stages", required=True, type=click.Choice(["semantic", "coarse", "fine", "all"]), multiple=True)
@click.option("--preset", type=click.Choice(["tiny", "paper"]), default="tiny", show_default=True)
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Corpus directory (clips + captions.csv); with --stream, a folder tree of audio (e.g. fma_small/).")
@click.option("--checkpoint", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Checkpoint directory (<stage>_stage.pt, manifest.json).")
@click.option("--components", type=click.Path(file_okay=False), default=None,
              help="Where codec.pt / semantic_tokenizer.pt live (default: --checkpoint if it has them, else the shipped set).")
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
@click.option("--semantic-dropout", type=click.FloatRange(0, 1), default=None,
              help="Coarse stage: P(semantic tokens → NULL) per training crop (default: the preset's, tiny 0.05).")
@json_option()
def train_stage(stages, preset, data, checkpoint, components, mulan, steps, batch_size, lr, seed, threads, device, on_error, stream,
                num_workers, precision, grad_checkpoint, hf_model, checkpoint_every, stop_at, cond_dropout, semantic_dropout,
                json_out):
    """Train one (or all) of the three Transformer stages; resumes from --checkpoint's files.

    Under torchrun (torchrun --nproc_per_node=8 --no-python musiclm-eval train stage …) the processes
    form one data-parallel run; --batch-size is the global batch."""
    from musiclm_ref.train.stages import StagesTrainConfig, train_stages

    names = ("semantic", "coarse", "fine") if "all" in stages else tuple(dict.fromkeys(stages))
    entries = train_stages(data, checkpoint, StagesTrainConfig(
        stages=names, preset=preset, components=components, mulan_path=mulan, steps=steps, batch=batch_size, lr=lr, seed=seed,
        threads=threads, device=device, on_error=on_error, command=manifest_command("musiclm-eval train stage"),
        precision=precision, grad_checkpoint=grad_checkpoint, stream=stream, num_workers=num_workers, hf_model=hf_model,
        checkpoint_every=checkpoint_every, stop_at=stop_at, progress=json_out != "-", cond_dropout=cond_dropout,
        semantic_dropout=semantic_dropout))
    if not entries:  # a rank other than 0 of a torchrun job: rank 0 reports
        return
    if not emit_json(json_out, entries):
        for name, e in entries.items():
            click.echo(f"{name}: {Path(checkpoint) / name} {e['metrics']}")


@click.command("melody")
@click.option("--checkpoint", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Checkpoint directory (melody.pt, manifest.json).")
@click.option("--data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Corpus whose clips fit the melody RVQ (default: the rendered training pairs).")
@click.option("--pairs", type=click.IntRange(min=14), default=260, show_default=True,
              help="Melodies rendered in two timbres each (a seventh, at least 2, are held out for the triplet accuracy).")
@click.option("--steps", type=int, default=600, show_default=True)
@click.option("--codebook", type=int, default=64, show_default=True, help="RVQ codebook size (paper: 512).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@json_option()
def train_melody(checkpoint, data, pairs, steps, codebook, seed, threads, json_out):
    """Train the melody embedding (triplet loss on timbre pairs) and fit its 24-level RVQ."""
    from musiclm_ref.train.melody import MelodyTrainConfig
    from musiclm_ref.train.melody import train_melody as run

    entry = run(data, checkpoint, MelodyTrainConfig(pairs=pairs, steps=steps, codebook=codebook, seed=seed, threads=threads,
                                                    command=manifest_command("musiclm-eval train melody")))
    if not emit_json(json_out, entry):
        click.echo(f"wrote {checkpoint}/melody.pt {entry['metrics']}")


for cmd in (train_classifier, train_mulan, train_codec, train_semantic, train_melody, train_stage):
    train.add_command(cmd)

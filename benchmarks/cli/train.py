"""``musiclm-eval train …``: the group, and the two metric models (``classifier`` for KLD, ``mulan`` for MCC)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click
import numpy as np

from benchmarks.cli import LazyGroup


def corpus_training_options(corpus_help: str, epochs: int):
    """The flags of the two metric-model trainers (MuLan, the LEAF classifier): same names, their own defaults."""
    def wrap(f):
        for opt in reversed([
            click.option("--data", required=True, type=click.Path(file_okay=False), help=corpus_help),
            click.option("--out", required=True, type=click.Path(dir_okay=False),
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
def train_mulan(data, out, epochs, seed, device, threads):
    """Train the MuLan-style joint embedding; report held-out retrieval and the MCC gap."""
    import torch

    from metrics.audio import AudioError, PairingError
    from musiclm_ref.mulan import MulanError, save_mulan
    from musiclm_ref.mulan import train_mulan as train

    torch.set_num_threads(threads)
    try:
        res = train(data, epochs=epochs, seed=seed, device=device, progress=click.echo)
    except (AudioError, PairingError, MulanError) as e:
        raise click.ClickException(str(e)) from e
    metrics = {**res.metrics, "n_train": res.n_train, "final_loss": float(np.mean(res.losses[-10:])),
               "n_parameters": sum(p.numel() for p in res.model.parameters())}
    argv = ["--data", data, "--out", out, "--epochs", str(epochs), "--seed", str(seed)]
    manifest = {"command": "musiclm-eval train mulan " + shlex.join(argv), "seed": seed, "epochs": epochs,
                "data_sha256": res.data_sha256, "metrics": metrics}
    path = save_mulan(res.model, out, meta=manifest)
    Path(path).with_suffix(".json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    click.echo(f"wrote {path}: " + ", ".join(f"{k} {v:.4f}" for k, v in res.metrics.items() if isinstance(v, float)))


@click.command("classifier")
@corpus_training_options("Corpus directory (clips, labels.csv).", epochs=12)
def train_classifier(data, out, epochs, seed, device, threads):
    """Train the LEAF multi-label classifier on the corpus tags; report held-out mAP."""
    import torch

    from metrics.audio import AudioError
    from metrics.classifier import ClassifierError, n_parameters, save_classifier, write_manifest
    from metrics.classifier import train_classifier as train

    torch.set_num_threads(threads)
    try:
        res = train(data, epochs=epochs, seed=seed, device=device, progress=click.echo)
    except (AudioError, ClassifierError) as e:
        raise click.ClickException(str(e)) from e
    metrics = {"eval_map": res.eval_map, "n_train": res.n_train, "n_eval": res.n_eval, "final_loss": float(np.mean(res.losses[-10:])),
               "n_parameters": n_parameters(res.model)}
    manifest = {"command": "musiclm-eval train classifier " + shlex.join(["--data", data, "--out", out, "--epochs", str(epochs), "--seed", str(seed)]),
                "seed": seed, "epochs": epochs, "data_sha256": res.data_sha256, "label_space": res.label_space.name,
                "label_space_digest": res.label_space.digest, "metrics": metrics}
    path = save_classifier(res.model, res.label_space, out, meta=manifest)
    write_manifest(path, manifest)
    click.echo(f"wrote {path}: eval mAP {res.eval_map:.4f}" if res.eval_map is not None else f"wrote {path}")


TRAIN_COMMANDS: dict[str, tuple[str, str]] = {
    "classifier": ("benchmarks.cli.train:train_classifier", "LEAF multi-label classifier (for KLD)."),
    "mulan": ("benchmarks.cli.train:train_mulan", "MuLan-style text/audio joint embedding (for MCC and conditioning)."),
    "codec": ("benchmarks.cli.train_codec:train_codec", "SoundStream-style codec with residual VQ."),
    "semantic": ("benchmarks.cli.train_codec:train_semantic", "Semantic tokenizer (features + k-means)."),
    "melody": ("benchmarks.cli.generate:train_melody", "Melody embedding model (triplet loss)."),
    "stage": ("benchmarks.cli.generate:train_stage", "One of the three Transformer stages."),
}


@click.group(cls=LazyGroup, lazy=TRAIN_COMMANDS)
def train() -> None:
    """Train one of the project's models on a corpus directory."""

"""``musiclm-eval train mulan``: a thin click layer over ``musiclm_ref.mulan.train_mulan``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click
import numpy as np


@click.command("mulan")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Corpus directory (clips, captions.csv, labels.csv).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write (.pt); a .json manifest goes beside it.")
@click.option("--epochs", default=40, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", default=1, show_default=True, help="torch CPU threads (1 is fastest on a shared CPU).")
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

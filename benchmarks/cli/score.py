"""``musiclm-eval score`` (FAD + KLD + MCC in one pass) and ``musiclm-eval train classifier``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from benchmarks.cli.options import engine_options
from metrics.audio import AudioError, PairingError
from metrics.cache import EmbeddingCache, atomic_write_bytes
from metrics.commands import SHIPPED_CLASSIFIER, compute_score


def summary_line(doc: dict) -> str:
    parts = [f"{k} = {doc[k]:.4f}" for k in doc if (k.startswith(("fad_", "kld", "mcc")) and isinstance(doc[k], float))]
    return f"{doc['n_pairs']} pairs: " + ", ".join(parts)


@click.command()
@click.option("--generated", required=True, type=click.Path(), help="Directory of generated clips (<ytid>.wav).")
@click.option("--reference", required=True, type=click.Path(), help="Directory of reference clips, paired by id.")
@click.option("--captions", type=click.Path(dir_okay=False), default=None, help="MusicCaps-format CSV (ytid, caption) for MCC.")
@click.option("--embedders", default="mel", show_default=True, help="Comma-separated FAD embedders ('' for no FAD).")
@click.option("--classifier", default=SHIPPED_CLASSIFIER, show_default=True, help=f"{SHIPPED_CLASSIFIER} (shipped) or a checkpoint path; 'none' skips KLD.")
@click.option("--label-space", type=click.Choice(["corpus", "audioset"]), default=None, help="Label space the classifier must have.")
@click.option("--audioset-labels", type=click.Path(dir_okay=False), default=None, help="class_labels_indices.csv for --label-space audioset.")
@click.option("--joint", default="mulan-ref", show_default=True, help="mulan-ref, a MuLan checkpoint, or clap:CKPT; 'none' skips MCC.")
@click.option("--kld-direction", type=click.Choice(["ref||gen", "gen||ref"]), default="ref||gen", show_default=True)
@click.option("--kld-mode", type=click.Choice(["sigmoid", "softmax"]), default="sigmoid", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache.")
@click.option("--bootstrap", default=1000, show_default=True, help="Bootstrap resamples for the KLD/MCC 95% CIs.")
@click.option("--fad-bootstrap", default=200, show_default=True, help="Bootstrap resamples for the FAD 95% CI (each is a full FAD).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON.")
@click.option("--per-clip", type=click.Path(dir_okay=False), default=None, help="Per-clip CSV (default: beside --json).")
@engine_options
def score(generated, reference, captions, embedders, classifier, label_space, audioset_labels, joint, kld_direction, kld_mode,
          device, seed, on_error, no_cache, bootstrap, fad_bootstrap, json_out, per_clip, engine, ray_address):
    """FAD, KLD and MCC in one pass over paired audio."""
    from metrics.classifier import ClassifierError
    from metrics.embedders import EmbedderError
    from metrics.engine import EngineUnavailableError, make_engine
    from metrics.fad import FADError
    from metrics.mcc import JointModelError
    from metrics.musiccaps import CaptionsError

    if per_clip is None and json_out:
        per_clip = str(Path(json_out).with_suffix("")) + "_per_clip.csv"
    try:
        doc = compute_score(
            generated, reference, captions,
            embedders=[e.strip() for e in embedders.split(",") if e.strip()],
            classifier=None if classifier == "none" else classifier,
            joint=None if joint == "none" else joint,
            device=device, seed=seed, on_error=on_error, cache=None if no_cache else EmbeddingCache(),
            per_clip=per_clip, kld_direction=kld_direction, kld_mode=kld_mode, label_space=label_space,
            audioset_csv=audioset_labels, n_boot=bootstrap, fad_n_boot=fad_bootstrap,
            engine=make_engine(engine, ray_address),
        )
    except (AudioError, PairingError, ClassifierError, EmbedderError, FADError, JointModelError, CaptionsError,
            EngineUnavailableError) as e:
        raise click.ClickException(str(e)) from e
    if json_out:
        atomic_write_bytes(Path(json_out), (json.dumps(doc, indent=2) + "\n").encode())
    click.echo(summary_line(doc))

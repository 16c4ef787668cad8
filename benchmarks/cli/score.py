"""``musiclm-eval score``: FAD + KLD + MCC in one pass over paired audio."""

from __future__ import annotations

from pathlib import Path

import click

from benchmarks.cli.options import (
    comma_list,
    control_options,
    emit_json,
    evaluation_options,
    json_option,
    make_cache,
    out_option,
)
from benchmarks.cli.protocols import protocol_option, resolve_protocol
from metrics.commands import SHIPPED_CLASSIFIER, compute_score


def summary_line(doc: dict) -> str:
    parts = [f"{k} = {doc[k]:.4f}" for k in doc if (k.startswith(("fad_", "kld", "mcc")) and isinstance(doc[k], float))]
    return f"{doc['n_pairs']} pairs: " + ", ".join(parts)


@click.command()
@click.option("--generated", required=True, type=click.Path(), help="Directory of generated clips (<ytid>.wav).")
@click.option("--reference", required=True, type=click.Path(), help="Directory of reference clips, paired by id.")
@click.option("--captions", type=click.Path(dir_okay=False), default=None, help="MusicCaps-format CSV (ytid, caption) for MCC.")
@click.option("--embedders", default="mel", show_default=True, help="Comma-separated FAD embedders ('' for no FAD).")
@click.option("--classifier", default=SHIPPED_CLASSIFIER, show_default=True,
              help=f"{SHIPPED_CLASSIFIER} (shipped), musicnn-mtt, musicnn-msd, or a checkpoint path; 'none' skips KLD.")
@click.option("--label-space", type=click.Choice(["corpus", "audioset"]), default=None, help="Label space the classifier must have.")
@click.option("--joint", default="mulan-ref", show_default=True, help="mulan-ref, a MuLan checkpoint, or clap:CKPT; 'none' skips MCC.")
@json_option()
@out_option()
@click.option("--per-clip", type=click.Path(dir_okay=False), default=None,
              help="Per-clip CSV (default: beside a --json file; with --out, the store has per_clip.csv).")
@control_options
@protocol_option
@evaluation_options
def score(generated, reference, captions, embedders, classifier, label_space, joint, json_out, out_dir, per_clip,
          controls, control_metrics, melody_prompts,
          protocol, kld_convention, kad, clip_seconds, bootstrap, seed, device, on_error, embedder_path, no_cache, cache_dir, batch_size,
          workers, progress, engine, ray_address):
    """FAD, KLD and MCC in one pass over paired audio."""
    from metrics.engine import make_engine

    embedders, classifier, joint, kld_convention, clip_seconds, paths, protocol_meta = resolve_protocol(
        protocol, embedders, classifier, joint, kld_convention, clip_seconds, embedder_path)
    if per_clip is None and json_out and json_out != "-":
        per_clip = str(Path(json_out).with_suffix("")) + "_per_clip.csv"
    doc = compute_score(
        generated, reference, captions, embedders=comma_list(embedders),
        classifier=None if classifier == "none" else classifier, joint=None if joint == "none" else joint,
        device=device, seed=seed, on_error=on_error, cache=make_cache(no_cache, cache_dir), per_clip=per_clip,
        kld_convention=kld_convention, label_space=label_space, clip_seconds=clip_seconds, kad=kad, n_boot=bootstrap,
        engine=make_engine(engine, ray_address), progress=progress, embedder_paths=paths,
        out=out_dir, extra_metadata=protocol_meta, controls=controls, control_metrics=control_metrics,
        melody_prompts=melody_prompts,
    )
    doc.update(protocol_meta)
    if not emit_json(json_out, doc):
        click.echo(summary_line(doc))

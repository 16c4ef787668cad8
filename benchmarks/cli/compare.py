"""``musiclm-eval compare``: the Table-1 harness (systems x metrics, bootstrap CIs, paired tests)."""

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


@click.command()
@click.option("--system", "systems", multiple=True, required=True, help="NAME=DIR of generated clips (<ytid>.wav); repeatable.")
@click.option("--reference", type=click.Path(path_type=Path), required=True, help="Folder of reference clips.")
@click.option("--captions", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="MusicCaps-format captions CSV (ytid, caption).")
@out_option(required=True)
@click.option("--embedders", default="trill,vggish", show_default=True, help="Comma-separated FAD embedders ('' for none).")
@click.option("--classifier", default="leaf-corpus", show_default=True, help="leaf-corpus (shipped), musicnn-mtt, a checkpoint, or none; a comma list adds more (KLD keys end in _<name>).")
@click.option("--joint", default="mulan-ref", show_default=True, help="mulan-ref (shipped), a checkpoint, clap:CKPT, or 'none'.")
@click.option("--ratings", default=None, help="Ratings database URL: adds the human-study wins column.")
@click.option("--skip-unavailable", is_flag=True, help="Report and skip embedders whose models cannot be loaded.")
@control_options
@click.option("--mad", is_flag=True, help="Also report MAD (MAUVE audio divergence, -log MAUVE; the 'mad' extra) on every "
              "embedder; the paper's number needs --embedders mert-v1-330m (docs/protocol.md, 'MAD').")
@click.option("--adherence", default="", show_default=False,
              help="Comma list of judges of per-aspect caption adherence from the captions' aspect_list and text: "
              "taggers musicnn-mtt, musicnn-msd (an AUC per aspect: instrument, genre, mood, vocals, tempo) and "
              "estimators madmom-tempo (tempo words, BPM numbers), key-madmom or key-ks (keys, major/minor; the 'controls' extra).")
@json_option("Also write the results document as JSON to PATH ('-': standard output).")
@protocol_option
@evaluation_options
def compare(systems, reference, captions, out_dir, embedders, classifier, joint, ratings, skip_unavailable, melody_prompts, controls, control_metrics, mad, adherence, json_out,
            protocol, kld_convention, kad, clip_seconds, bootstrap, seed, device, on_error, embedder_path, no_cache, cache_dir, batch_size,
            workers, progress, engine, ray_address) -> None:
    """Score systems against a reference set: the paper's Table 1 with bootstrap 95% CIs."""
    from benchmarks.harness import compare as run_compare
    from benchmarks.harness import parse_systems, summarize
    from metrics.engine import make_engine

    embedders, classifier, joint, kld_convention, clip_seconds, paths, protocol_meta = resolve_protocol(
        protocol, embedders, classifier, joint, kld_convention, clip_seconds, embedder_path)
    data = run_compare(
        parse_systems(systems), reference, captions, Path(out_dir), embedders=comma_list(embedders),
        classifier=None if classifier == "none" else classifier, joint=None if joint == "none" else joint,
        ratings=ratings, on_error=on_error, device=device, seed=seed, n_boot=bootstrap,
        cache=make_cache(no_cache, cache_dir), skip_unavailable_embedders=skip_unavailable, progress=progress,
        engine=make_engine(engine, ray_address), kld_convention=kld_convention, kad=kad, mad=mad, clip_seconds=clip_seconds,
        embedder_paths=paths, batch_size=batch_size, workers=workers, melody_prompts=melody_prompts,
        controls=controls, control_metrics=control_metrics,
        adherence=comma_list(adherence),
        extra_metadata=protocol_meta,
    )  # fmt: skip
    for name, reason in data["metadata"].get("unavailable_embedders", {}).items():
        click.echo(f"skipped embedder {name}: {reason}", err=True)
    if not emit_json(json_out, data):
        click.echo(summarize(data))
        click.echo(f"results written to {out_dir}")

"""CLI for the Table-1 harness: ``compare``, ``demo`` and ``musiccaps prepare``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from benchmarks.cli.options import evaluation_options, make_cache, parse_paths
from benchmarks.cli.protocols import protocol_option, resolve_protocol


@click.group()
def musiccaps() -> None:
    """Prepare MusicCaps clips (downloaded by you) for evaluation."""


@musiccaps.command("prepare")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), required=True, help="musiccaps-public.csv")
@click.option("--audio", "audio_dir", type=click.Path(path_type=Path), required=True, help="Folder of <ytid>.<ext> files.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--subset", type=click.Choice(["balanced", "eval", "all"]), default="eval", show_default=True)
@click.option("--sample-rate", type=int, default=16000, show_default=True)
@click.option("--download", is_flag=True, help="First fetch missing clips with yt-dlp (must be installed).")
def musiccaps_prepare(csv_path: Path, audio_dir: Path, out_dir: Path, subset: str, sample_rate: int, download: bool) -> None:
    """Trim, resample and check clips; report missing/unusable ids; write a manifest the harness reads."""
    from benchmarks.musiccaps_prep import download as fetch
    from benchmarks.musiccaps_prep import prepare
    from metrics.musiccaps import CaptionsError

    try:
        if download:
            failed = fetch(csv_path, audio_dir, subset=subset)
            click.echo(f"download: {len(failed)} videos unavailable")
        report = prepare(csv_path, audio_dir, out_dir, subset=subset, sample_rate=sample_rate)
    except (CaptionsError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(report.summary())
    if not report.prepared:
        sys.exit(1)


@click.command()
@click.option("--system", "systems", multiple=True, required=True, help="NAME=DIR of generated clips (<ytid>.wav); repeatable.")
@click.option("--reference", type=click.Path(path_type=Path), required=True, help="Folder of reference clips.")
@click.option("--captions", type=click.Path(path_type=Path), required=True, help="MusicCaps-format captions CSV.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Results directory to write.")
@click.option("--embedders", default="trill,vggish", show_default=True, help="Comma-separated FAD embedders ('' for none).")
@click.option("--classifier", default="leaf-corpus", show_default=True, help="leaf-corpus (shipped), musicnn-mtt, a checkpoint, or none; a comma list adds more (KLD keys end in _<name>).")
@click.option("--joint", default="mulan-ref", show_default=True, help="mulan-ref (shipped), a checkpoint, clap:CKPT, or 'none'.")
@click.option("--ratings", default=None, help="Ratings database URL: adds the human-study wins column.")
@click.option("--skip-unavailable", is_flag=True, help="Report and skip embedders whose models cannot be loaded.")
@click.option("--melody-prompts", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The melody each clip was conditioned on (<ytid>.wav): adds melody adherence (CREPE pitch RCA, "
              "audiocraft chroma cosine; the 'melody' extra).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write results.json here.")
@protocol_option
@evaluation_options
def compare(systems, reference, captions, out_dir, embedders, classifier, joint, ratings, skip_unavailable, melody_prompts, json_out,
            protocol, kld_convention, kad, clip_seconds, bootstrap, seed, device, on_error, embedder_path, no_cache, cache_dir, batch_size,
            workers, progress, engine, ray_address) -> None:
    """Score systems against a reference set: the paper's Table 1 with bootstrap 95% CIs."""
    from benchmarks.harness import compare as run_compare
    from benchmarks.harness import parse_systems, summarize
    from metrics.audio import AudioError, PairingError
    from metrics.engine import make_engine
    from metrics.musiccaps import CaptionsError

    embedders, classifier, joint, kld_convention, clip_seconds, protocol_meta = resolve_protocol(
        protocol, embedders, classifier, joint, kld_convention, clip_seconds, embedder_path)
    try:
        data = run_compare(
            parse_systems(systems), reference, captions, out_dir,
            embedders=[e.strip() for e in embedders.split(",") if e.strip()],
            classifier=None if classifier == "none" else classifier, joint=None if joint == "none" else joint,
            ratings=ratings, on_error=on_error, device=device, seed=seed, n_boot=bootstrap,
            cache=make_cache(no_cache, cache_dir), skip_unavailable_embedders=skip_unavailable, progress=progress,
            engine=make_engine(engine, ray_address), kld_convention=kld_convention, kad=kad, clip_seconds=clip_seconds,
            embedder_paths=parse_paths(embedder_path), batch_size=batch_size, workers=workers,
            melody_prompts=melody_prompts,
            extra_metadata=protocol_meta,
        )  # fmt: skip
    except (ValueError, AudioError, PairingError, CaptionsError, RuntimeError, ImportError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(summarize(data))
    for name, reason in data["metadata"].get("unavailable_embedders", {}).items():
        click.echo(f"skipped embedder {name}: {reason}")
    if json_out:
        from metrics.io import write_json

        write_json(json_out, data)
    click.echo(f"results written to {out_dir}")


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/demo"), show_default=True)
@click.option("--n", type=click.IntRange(min=10), default=100, show_default=True, help="Corpus size (20% becomes the eval set).")
@click.option("--seconds", type=float, default=10.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--memorization-n", type=int, default=16, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def demo(out_dir: Path, n: int, seconds: float, seed: int, memorization_n: int, device: str) -> None:
    """The whole pipeline on the embedded default: corpus → systems → compare → memorization → study."""
    from benchmarks.demo import run_demo

    run_demo(out_dir, n=n, seconds=seconds, seed=seed, device=device, memorization_n=memorization_n, log=click.echo)

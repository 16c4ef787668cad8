"""``musiclm-eval stats | fad | cache``: thin click layers over ``metrics.evaluate``.

The functions are what tests and other tools call; the commands only parse options, print a one-line
summary and write files. A bad input raises a project error (``metrics.errors.EvalError``), which the
top-level group prints as one line naming the file (exit code 1).
"""

from __future__ import annotations

import click

from benchmarks.cli.options import (
    bootstrap_option,
    embedder_options,
    emit_json,
    engine_options,
    json_option,
    out_option,
    setup_embedder,
)
from metrics.cache import EmbeddingCache
from metrics.commands import compute_fad, compute_stats


def summary_line(doc: dict) -> str:
    line = (f"FAD[{doc['embedder']}] = {doc['fad']:.4f}  (reference {doc['n_reference']} clips / "
            f"{doc['n_reference_frames']} frames, generated {doc['n_generated']} clips / {doc['n_generated_frames']} "
            f"frames, dim {doc['dim']})")
    if "fad_inf" in doc:
        line += f"  FAD∞ = {doc['fad_inf']:.4f} (R² {doc['fad_inf_r2']:.3f})"
    if "ci95" in doc:
        line += f"  95% CI [{doc['ci95'][0]:.4f}, {doc['ci95'][1]:.4f}]"
    skipped = sum(len(v) for v in doc.get("skipped", {}).values())
    return line + (f"  ({skipped} clips skipped)" if skipped else "")


@click.command()
@click.option("--audio", required=True, type=click.Path(), help="Directory of audio files.")
@click.option("--stats", "stats_path", required=True, type=click.Path(dir_okay=False), metavar="PATH",
              help="Statistics file to write (.npz: mu, sigma, n, metadata); `fad --reference` reads it.")
@embedder_options
@engine_options
def stats(audio, stats_path, embedder_name, embedder_path, device, on_error, no_cache, cache_dir, batch_size, workers,
          progress, engine, ray_address):
    """Compute embedding statistics (mu, sigma) of a folder."""
    embedder, kw = setup_embedder(embedder_name, embedder_path, device, no_cache, cache_dir, on_error, batch_size,
                                  workers, progress, engine, ray_address)
    s = compute_stats(audio, embedder, stats_path, **kw)
    click.echo(f"wrote {stats_path}: {s.n_clips} clips, {s.n} frames, dim {s.dim}, embedder {s.embedder}")


@click.command("fad")
@click.option("--reference", required=True, type=click.Path(), help="Reference directory or stats .npz.")
@click.option("--generated", required=True, type=click.Path(), help="Directory of generated audio.")
@click.option("--inf", "inf", is_flag=True, help="Also report FAD∞ (extrapolated to infinite sample size).")
@click.option("--per-clip", type=click.Path(dir_okay=False), default=None, help="Write per-clip FAD to this CSV.")
@bootstrap_option("Bootstrap resamples for the 95% CI (0: the point value only).")
@click.option("--seed", default=0, show_default=True)
@json_option()
@out_option()
@embedder_options
@engine_options
def fad_command(reference, generated, inf, per_clip, bootstrap, seed, json_out, out_dir, embedder_name, embedder_path, device,
                on_error, no_cache, cache_dir, batch_size, workers, progress, engine, ray_address):
    """Fréchet Audio Distance between a reference and a generated set."""
    embedder, kw = setup_embedder(embedder_name, embedder_path, device, no_cache, cache_dir, on_error, batch_size,
                                  workers, progress, engine, ray_address)
    doc = compute_fad(reference, generated, embedder, inf=inf, per_clip=per_clip, bootstrap=bootstrap, seed=seed,
                      out=out_dir, **kw)
    if not emit_json(json_out, doc):
        click.echo(summary_line(doc))


fad = fad_command  # the name COMMANDS points at ("benchmarks.cli.fad:fad")


@click.group()
def cache():
    """Inspect or clear the embedding cache."""


@cache.command("info")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None)
@json_option()
def cache_info(cache_dir, json_out):
    """Where the cache is, how many entries, how many bytes."""
    info = EmbeddingCache(cache_dir).info()
    if not emit_json(json_out, info):
        click.echo(f"{info['root']}: {info['entries']} entries, {info['bytes']} bytes")


@cache.command("clear")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None)
def cache_clear(cache_dir):
    """Remove every cached embedding."""
    c = EmbeddingCache(cache_dir)
    click.echo(f"removed {c.clear()} entries from {c.root}")


@cache.command("verify")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None)
@click.option("--embedder", "embedders", multiple=True, metavar="NAME",
              help="Also flag this embedder's entries written by another code version (builds it). Repeatable.")
@click.option("--remove", is_flag=True, help="Delete the bad entries (they are recomputed on the next run).")
@json_option()
def cache_verify(cache_dir, embedders, remove, json_out):
    """Check every entry's checksum and key (and code version with --embedder); exit 1 when any is bad."""
    from metrics.embedders import get_embedder
    from metrics.extract import code_version

    report = EmbeddingCache(cache_dir).verify([code_version(get_embedder(n)) for n in embedders], remove=remove)
    if not emit_json(json_out, report):
        for b in report["bad"]:
            click.echo(f"{b['path']}: {b['problem']}" + ("  (removed)" if remove else ""))
        click.echo(f"{report['root']}: {report['checked']} entries checked, {report['ok']} ok, {len(report['bad'])} bad")
    if report["bad"]:
        raise SystemExit(1)

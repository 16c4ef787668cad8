"""``musiclm-eval stats | fad | cache``: thin click layers over ``compute_stats`` / ``compute_fad``.

The functions are what tests and other tools call; the commands only parse options, print a one-line
summary and write files. Every failure is a clear error (exit code 1) naming the file and problem —
never a score of −1.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import warnings
from pathlib import Path

import click

from metrics.audio import AudioError, scan_dir
from metrics.cache import EmbeddingCache, atomic_write_bytes
from metrics.embedders import Embedder, EmbedderError, available_embedders, get_embedder
from metrics.engine import LOCAL, EmbedderSpec, Engine, EngineUnavailableError, engine_options, make_engine
from metrics.engine import stats_of as stats_of
from metrics.extract import EmbeddingSet, preprocessing_key
from metrics.fad import EmbeddingStats, FADError, SingularCovarianceWarning, bootstrap_fad_ci, fad_inf, per_clip_fad
from metrics.fad import fad as fad_metric


def embed_dir(directory: str | Path, embedder: Embedder, cache: EmbeddingCache | None = None, on_error: str = "raise",
              workers: int = 0, batch_size: int = 8, progress: bool = False, engine: Engine | None = None,
              spec: EmbedderSpec | None = None) -> EmbeddingSet:
    """Embed every audio file of a directory; empty or all-unusable directories are errors."""
    paths = list(scan_dir(directory).values())
    embs = (engine or LOCAL).embed(paths, embedder, cache, batch_size=batch_size, workers=workers, progress=progress,
                                   on_error=on_error, spec=spec)
    if not embs:
        raise AudioError(directory, f"no usable clips ({len(embs.skipped)} skipped)")
    return embs


def dir_stats(directory: str | Path, embedder: Embedder, cache: EmbeddingCache | None = None, on_error: str = "raise",
              workers: int = 0, batch_size: int = 8, progress: bool = False, engine: Engine | None = None,
              spec: EmbedderSpec | None = None) -> tuple[EmbeddingStats, list]:
    """Statistics of a directory without keeping its embeddings (the Ray engine merges per-batch partials)."""
    paths = list(scan_dir(directory).values())
    s, skipped = (engine or LOCAL).stats(paths, embedder, cache, batch_size=batch_size, workers=workers,
                                         progress=progress, on_error=on_error, spec=spec)
    if not s.n_clips:
        raise AudioError(directory, f"no usable clips ({len(skipped)} skipped)")
    return s, skipped


def compute_stats(audio: str | Path, embedder: Embedder, out: str | Path | None = None, **kw) -> EmbeddingStats:
    """Statistics (mu, sigma, n) of a directory's embeddings, optionally saved as ``.npz``."""
    s, _ = dir_stats(audio, embedder, **kw)
    if out is not None:
        s.save(out)
    return s


def _reference_stats(reference: str | Path, embedder: Embedder, **kw) -> tuple[EmbeddingStats, list]:
    path = Path(reference)
    if path.is_file() and path.suffix == ".npz":
        s = EmbeddingStats.load(path)
        if s.embedder != embedder.id:
            raise FADError(f"{path}: statistics were computed with embedder {s.embedder or '(unknown)'!r}, but this run "
                           f"uses {embedder.id!r}; recompute them with `musiclm-eval stats --embedder {embedder.name}`")
        pre = s.config.get("preprocessing")
        if pre is not None and pre != preprocessing_key(embedder):
            raise FADError(f"{path}: statistics used pre-processing {pre!r}, this run uses {preprocessing_key(embedder)!r}")
        return s, []
    return dir_stats(path, embedder, **kw)


def compute_fad(reference: str | Path, generated: str | Path, embedder: Embedder, *, inf: bool = False,
                per_clip: str | Path | None = None, bootstrap: int = 0, seed: int = 0, **kw) -> dict:
    """FAD of ``generated`` (a directory) against ``reference`` (a directory or a stats ``.npz``).

    Returns the JSON document of ``musiclm-eval fad``; ``kw`` go to ``embed_dir`` (cache, on_error, …).
    """
    ref, ref_skipped = _reference_stats(reference, embedder, **kw)
    if inf or bootstrap or per_clip is not None:  # these need every generated clip's frames
        gen = embed_dir(generated, embedder, **kw)
        gen_stats, gen_skipped = stats_of(gen, embedder), gen.skipped
    else:
        gen_stats, gen_skipped = dir_stats(generated, embedder, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SingularCovarianceWarning)
        result = fad_metric(ref, gen_stats)
    for w in caught:  # re-emit, and keep them in the result so a JSON reader sees them too
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    doc = {"fad": result.value, **result.extra, "embedder_name": embedder.name,
           "preprocessing": preprocessing_key(embedder), "seed": seed,
           "warnings": [str(w.message) for w in caught],
           "skipped": {"reference": [vars(s) for s in ref_skipped], "generated": [vars(s) for s in gen_skipped]}}
    if inf:
        doc["fad_inf"], doc["fad_inf_r2"] = fad_inf(ref, gen, seed=seed)
    if bootstrap:
        doc["ci95"] = list(bootstrap_fad_ci(ref, gen, n_boot=bootstrap, seed=seed))
    if per_clip is not None:
        scores = per_clip_fad(ref, gen)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "fad", "frames"])
        writer.writerows([cid, repr(v), len(gen[cid])] for cid, v in scores.items())
        atomic_write_bytes(Path(per_clip), buf.getvalue().encode())
        doc["per_clip"] = str(per_clip)
    return doc


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


# ----------------------------------------------------------------------------- click layer


def _common(f):
    options = [
        click.option("--embedder", "embedder_name", required=True,
                     help=f"One of {', '.join(available_embedders())}, or torch:CKPT.pt (vggish/trill: the paper's; "
                     "mel: weight-free, not comparable with published FAD)."),
        click.option("--embedder-path", default=None, help="Local SavedModel dir / checkpoint overriding the default."),
        click.option("--device", default="cpu", show_default=True),
        click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Cache root (default $MUSICLM_EVAL_CACHE or ~/.cache/musiclm-eval/embeddings)."),
        click.option("--batch-size", default=8, show_default=True),
        click.option("--workers", default=0, show_default=True, help="Processes for decoding/resampling."),
        click.option("--progress/--no-progress", default=sys.stderr.isatty()),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _setup(embedder_name, embedder_path, device, no_cache, cache_dir, on_error, batch_size, workers, progress,
           engine="local", ray_address=None):
    embedder = get_embedder(embedder_name, embedder_path, device)
    cache = None if no_cache else EmbeddingCache(cache_dir)
    kw = {"cache": cache, "on_error": on_error, "batch_size": batch_size, "workers": workers, "progress": progress}
    if engine != "local" or ray_address:
        kw.update(engine=make_engine(engine, ray_address), spec=EmbedderSpec(embedder_name, embedder_path, device))
    return embedder, kw


def _fail(e: Exception):
    raise click.ClickException(str(e)) from e


@click.command()
@click.option("--audio", required=True, type=click.Path(), help="Directory of audio files.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npz (mu, sigma, n, metadata).")
@_common
@engine_options
def stats(audio, out, embedder_name, embedder_path, device, on_error, no_cache, cache_dir, batch_size, workers,
          progress, engine, ray_address):
    """Compute embedding statistics (mu, sigma) of a folder."""
    try:
        embedder, kw = _setup(embedder_name, embedder_path, device, no_cache, cache_dir, on_error, batch_size,
                              workers, progress, engine, ray_address)
        s = compute_stats(audio, embedder, out, **kw)
    except (AudioError, EmbedderError, FADError, EngineUnavailableError) as e:
        _fail(e)
    click.echo(f"wrote {out}: {s.n_clips} clips, {s.n} frames, dim {s.dim}, embedder {s.embedder}")


@click.command("fad")
@click.option("--reference", required=True, type=click.Path(), help="Reference directory or stats .npz.")
@click.option("--generated", required=True, type=click.Path(), help="Directory of generated audio.")
@click.option("--inf", "inf", is_flag=True, help="Also report FAD∞ (extrapolated to infinite sample size).")
@click.option("--per-clip", type=click.Path(dir_okay=False), default=None, help="Write per-clip FAD to this CSV.")
@click.option("--bootstrap", default=0, show_default=True, help="Bootstrap resamples for a 95% CI (0: none).")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the result as JSON.")
@_common
@engine_options
def fad_command(reference, generated, inf, per_clip, bootstrap, seed, json_out, embedder_name, embedder_path, device,
                on_error, no_cache, cache_dir, batch_size, workers, progress, engine, ray_address):
    """Fréchet Audio Distance between a reference and a generated set."""
    try:
        embedder, kw = _setup(embedder_name, embedder_path, device, no_cache, cache_dir, on_error, batch_size,
                              workers, progress, engine, ray_address)
        doc = compute_fad(reference, generated, embedder, inf=inf, per_clip=per_clip, bootstrap=bootstrap, seed=seed,
                          **kw)
    except (AudioError, EmbedderError, FADError, EngineUnavailableError) as e:
        _fail(e)
    if json_out:
        atomic_write_bytes(Path(json_out), (json.dumps(doc, indent=2) + "\n").encode())
    click.echo(summary_line(doc))


fad = fad_command  # the name COMMANDS points at ("metrics.cli_fad:fad")


@click.group()
def cache():
    """Inspect or clear the embedding cache."""


@cache.command("info")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True)
def cache_info(cache_dir, as_json):
    """Where the cache is, how many entries, how many bytes."""
    info = EmbeddingCache(cache_dir).info()
    click.echo(json.dumps(info) if as_json else f"{info['root']}: {info['entries']} entries, {info['bytes']} bytes")


@cache.command("clear")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None)
def cache_clear(cache_dir):
    """Remove every cached embedding."""
    c = EmbeddingCache(cache_dir)
    click.echo(f"removed {c.clear()} entries from {c.root}")

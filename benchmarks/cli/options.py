"""Flags shared by every command, spelled the same everywhere (scikit-learn style consistency).

Conventions: ``--json PATH`` writes a JSON file; ``--out DIR`` writes a results store;
``--bootstrap N``, ``--seed``, ``--device``, ``--on-error raise|skip``, ``--embedder-path``,
``--cache-dir``, ``--progress/--no-progress`` mean the same on every command that has them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from metrics.cache import EmbeddingCache
from metrics.embedders import available_embedders, get_embedder
from metrics.engine import ENGINES, RAY_EXTRA_HINT, make_engine
from metrics.models import ModelSpec


def engine_options(f: Callable) -> Callable:
    """``--engine local|ray`` and ``--ray-address``, spelled the same on every command that has them."""
    f = click.option("--ray-address", default=None, metavar="ADDR",
                     help="Existing Ray cluster (e.g. ray://head:10001 or auto); default: start a local Ray with "
                     "this machine's cores. Workers must see the same --cache-dir.")(f)
    f = click.option("--engine", type=click.Choice(list(ENGINES)), default="local", show_default=True,
                     help=f"Where extraction/statistics/the audit run (ray needs {RAY_EXTRA_HINT}).")(f)
    return f


def _run_options() -> list[Callable]:
    """Where and how models run over clips: the same spelling, default and help on every command that embeds."""
    return [
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, …"),
        click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True,
                     help="raise: stop at the first bad clip; skip: leave it out and report it."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Cache root (default $MUSICLM_EVAL_CACHE or ~/.cache/musiclm-eval/embeddings)."),
        click.option("--batch-size", default=8, show_default=True),
        click.option("--workers", default=0, show_default=True, help="Processes for decoding/resampling."),
        click.option("--progress/--no-progress", default=sys.stderr.isatty()),
    ]


def embedder_options(f: Callable) -> Callable:
    """The flags of every command that embeds one folder with one embedder."""
    options = [
        click.option("--embedder", "embedder_name", required=True,
                     help=f"One of {', '.join(available_embedders())}, or torch:CKPT.pt (vggish/trill: the paper's; "
                     "mel: weight-free, not comparable with published FAD)."),
        click.option("--embedder-path", default=None, help="Local SavedModel dir / checkpoint overriding the default."),
        *_run_options(),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def setup_embedder(embedder_name, embedder_path, device, no_cache, cache_dir, on_error, batch_size, workers, progress,
           engine="local", ray_address=None):
    embedder = get_embedder(embedder_name, embedder_path, device)
    cache = None if no_cache else EmbeddingCache(cache_dir)
    kw = {"cache": cache, "on_error": on_error, "batch_size": batch_size, "workers": workers, "progress": progress}
    if engine != "local" or ray_address:
        kw.update(engine=make_engine(engine, ray_address), spec=ModelSpec(embedder_name, embedder_path, device))
    return embedder, kw


def fail(e: Exception):
    raise click.ClickException(str(e)) from e


KLD_CONVENTIONS = ("musiclm", "audiocraft", "stable-audio")


def evaluation_options(f: Callable) -> Callable:
    """The flags of every command that runs the evaluation pipeline (``score``, ``compare``)."""
    options = [
        click.option("--kld-convention", type=click.Choice(KLD_CONVENTIONS), default="musiclm", show_default=True,
                     help="Which published KLD formula (docs/protocol.md, 'KLD conventions')."),
        click.option("--kad", is_flag=True, help="Also report Kernel Audio Distance on every FAD embedder."),
        click.option("--clip-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Crop/zero-pad every clip to this length before the models (MusicCaps: 10). "
                     "Default: clips as they are."),
        click.option("--bootstrap", default=1000, show_default=True,
                     help="Bootstrap resamples for every 95% CI and paired test (0: point values only)."),
        click.option("--seed", default=0, show_default=True, help="Seed of every resampling."),
        click.option("--embedder-path", "embedder_path", multiple=True, metavar="NAME=PATH",
                     help="Local weights for an embedder (SavedModel dir / checkpoint); repeatable."),
        *_run_options(),
    ]
    for opt in reversed(options):
        f = opt(f)
    return engine_options(f)


def parse_paths(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("vggish=/models/vggish", …)`` → ``{"vggish": "/models/vggish"}``."""
    out = {}
    for p in pairs:
        name, sep, path = p.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"expected NAME=PATH, got {p!r}", param_hint="--embedder-path")
        out[name] = path
    return out


def make_cache(no_cache: bool, cache_dir: str | None) -> EmbeddingCache | None:
    return None if no_cache else EmbeddingCache(cache_dir)


def comma_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def json_option(help_: str = "Write the result as JSON to PATH ('-': standard output).") -> Callable:
    """``--json PATH``, the one JSON-output convention of every command ('-' prints it instead)."""
    return click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), default=None,
                        help=help_)


def emit_json(json_out: str | None, doc: object) -> bool:
    """Write ``doc`` where ``--json`` says; True when it went to standard output (print nothing else)."""
    from metrics.io import dumps_json, write_json

    if json_out == "-":
        click.echo(dumps_json(doc))
        return True
    if json_out:
        write_json(json_out, doc)
    return False

"""Flags shared by every command, spelled the same everywhere (README, "CLI conventions").

Each convention is one option factory here, built with :class:`ConventionOption` so that
``tests/test_cli_conventions.py`` can walk the click tree and check that every ``--json``, ``--out``,
``--bootstrap`` and ``--embedder-path`` is the shared one:

- ``--json PATH``: write the command's result as JSON to PATH; ``-`` prints it (and nothing else).
- ``--out DIR``: the results store (``metrics.store``); other outputs have their own names
  (``--stats PATH``, ``--checkpoint PATH``, ``--clips DIR``, ``--csv PATH``, …).
- ``--bootstrap N``: resamples for every 95% CI and paired test; one default, :data:`BOOTSTRAP`.
- ``--embedder-path NAME=PATH``: local weights for a model, repeatable; a bare PATH where one embedder is in play.
- ``--seed``, ``--device``, ``--on-error raise|skip``, ``--cache-dir``, ``--progress/--no-progress`` mean the
  same on every command that has them.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable, Sequence

import click

from metrics.cache import EmbeddingCache
from metrics.embedders import available_embedders, get_embedder
from metrics.engine import ENGINES, RAY_EXTRA_HINT, make_engine
from metrics.kld import KLD_CONVENTIONS
from metrics.models import ModelSpec

BOOTSTRAP = 1000  # the one default of --bootstrap: enough resamples for stable 95% percentile bounds


class ConventionOption(click.Option):
    """An option that is one of the CLI conventions; ``convention`` names which (json, out, bootstrap, embedder-path)."""

    def __init__(self, *args, convention: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.convention = convention


def json_option(help_: str = "Write the result as JSON to PATH ('-': standard output).") -> Callable:
    """``--json PATH``, the one JSON-output convention of every command ('-' prints it instead)."""
    return click.option("--json", "json_out", cls=ConventionOption, convention="json", metavar="PATH", default=None,
                        type=click.Path(dir_okay=False, allow_dash=True), help=help_)


def _lock_store(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Hold the store's lock (``metrics.store.lock``) while the command runs: a second run on one --out refuses."""
    if value is not None and not ctx.resilient_parsing:
        from metrics.store.lock import store_lock

        ctx.with_resource(store_lock(value))
    return value


def out_option(help_: str = "Results store to write (results.json, per_clip.csv, …; any reader opens it).",
               required: bool = False) -> Callable:
    """``--out DIR``: always a results store directory (``metrics.store``), whatever the command; the command
    holds the store's lock from parsing until it ends (``metrics.store.lock``)."""
    return click.option("--out", "out_dir", cls=ConventionOption, convention="out", metavar="DIR", default=None,
                        required=required, type=click.Path(file_okay=False), callback=_lock_store, help=help_)


def bootstrap_option(help_: str = "Bootstrap resamples for every 95% CI and paired test (0: point values only).",
                     dest: str = "bootstrap") -> Callable:
    """``--bootstrap N`` with the one default, :data:`BOOTSTRAP`."""
    return click.option("--bootstrap", dest, cls=ConventionOption, convention="bootstrap", metavar="N",
                        type=click.IntRange(min=0), default=BOOTSTRAP, show_default=True, help=help_)


def embedder_path_option(f: Callable) -> Callable:
    """``--embedder-path NAME=PATH`` (repeatable; a bare PATH where one embedder is in play), read by :func:`parse_paths`."""
    return click.option("--embedder-path", "embedder_path", cls=ConventionOption, convention="embedder-path",
                        multiple=True, metavar="NAME=PATH",
                        help="Local weights (SavedModel dir / checkpoint) for a model, e.g. vggish=~/models/vggish_1; "
                        "repeatable. A bare PATH is accepted where one embedder is in play.")(f)


def parse_paths(pairs: Sequence[str], in_play: Sequence[str] = ()) -> dict[str, str]:
    """``("vggish=/models/vggish", …)`` → ``{"vggish": "/models/vggish"}``; a bare PATH belongs to the one
    embedder in ``in_play`` (a NAME has no path separator, so ``/models/a=b`` is a bare path)."""
    out: dict[str, str] = {}
    for p in pairs:
        name, sep, path = p.partition("=")
        if not (sep and name and path and "/" not in name and "\\" not in name):
            if len(in_play) != 1 or not p:
                where = f"{len(in_play)} embedders are in play" if in_play else "no embedder is in play"
                raise click.BadParameter(f"expected NAME=PATH, got {p!r} (a bare PATH only where one embedder is in "
                                         f"play; here {where})", param_hint="--embedder-path")
            name, path = in_play[0], p
        if name in out:
            raise click.BadParameter(f"{name} given twice ({out[name]!r} and {path!r})", param_hint="--embedder-path")
        out[name] = path
    return out


def engine_options(f: Callable) -> Callable:
    """``--engine local|ray`` and ``--ray-address``, spelled the same on every command that has them."""
    f = click.option("--ray-address", default=None, metavar="ADDR",
                     help="Existing Ray cluster (e.g. ray://head:10001 or auto); default: start a local Ray with "
                     "this machine's cores. Workers must see the same --cache-dir.")(f)
    f = click.option("--engine", type=click.Choice(list(ENGINES)), default="local", show_default=True,
                     help=f"Where extraction/statistics/the audit run (ray needs {RAY_EXTRA_HINT}).")(f)
    return f


def _cache_options() -> list[Callable]:
    """``--no-cache`` / ``--cache-dir``: the verified embedding cache a rerun after a kill resumes from."""
    return [
        click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Cache root (default $MUSICLM_EVAL_CACHE or ~/.cache/musiclm-eval/embeddings)."),
    ]


def cache_options(f: Callable) -> Callable:
    """The cache flags alone, for commands that cache per-clip work without the rest of the run options
    (``memorization audit``)."""
    return _apply(f, _cache_options())


def _run_options() -> list[Callable]:
    """Where and how models run over clips: the same spelling, default and help on every command that embeds."""
    return [
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, …"),
        click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True,
                     help="raise: stop at the first bad clip; skip: leave it out and report it."),
        *_cache_options(),
        click.option("--batch-size", default=8, show_default=True),
        click.option("--workers", default=0, show_default=True, help="Processes for decoding/resampling."),
        click.option("--progress/--no-progress", default=sys.stderr.isatty()),
    ]


def _apply(f: Callable, options: list[Callable]) -> Callable:
    for opt in reversed(options):
        f = opt(f)
    return f


def embedder_options(f: Callable) -> Callable:
    """The flags of every command that embeds one folder with one embedder."""
    return _apply(f, [
        click.option("--embedder", "embedder_name", required=True,
                     help=f"One of {', '.join(available_embedders())}, or torch:CKPT.pt (vggish/trill: the paper's; "
                     "mel: weight-free, not comparable with published FAD)."),
        embedder_path_option,
        *_run_options(),
    ])


def setup_embedder(embedder_name, embedder_path, device, no_cache, cache_dir, on_error, batch_size, workers, progress,
                   engine="local", ray_address=None):
    """The embedder and the pipeline keywords of a one-embedder command (``stats``, ``fad``)."""
    paths = parse_paths(embedder_path, [embedder_name])
    if set(paths) - {embedder_name}:
        raise click.BadParameter(f"names {', '.join(sorted(set(paths) - {embedder_name}))}, but this command embeds "
                                 f"with {embedder_name}", param_hint="--embedder-path")
    path = paths.get(embedder_name)
    embedder = get_embedder(embedder_name, path, device)
    kw = {"cache": make_cache(no_cache, cache_dir), "on_error": on_error, "batch_size": batch_size, "workers": workers,
          "progress": progress}
    if engine != "local" or ray_address:
        kw.update(engine=make_engine(engine, ray_address), spec=ModelSpec(embedder_name, path, device))
    return embedder, kw


def evaluation_options(f: Callable) -> Callable:
    """The flags of every command that runs the evaluation pipeline (``score``, ``compare``)."""
    return engine_options(_apply(f, [
        click.option("--kld-convention", type=click.Choice(KLD_CONVENTIONS), default="musiclm", show_default=True,
                     help="Which published KLD formula (docs/protocol.md, 'KLD conventions')."),
        click.option("--kad", is_flag=True, help="Also report Kernel Audio Distance on every FAD embedder."),
        click.option("--clip-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Crop/zero-pad every clip to this length before the models (MusicCaps: 10). "
                     "Default: clips as they are."),
        bootstrap_option(),
        click.option("--seed", default=0, show_default=True, help="Seed of every resampling."),
        embedder_path_option,
        *_run_options(),
    ]))


def make_cache(no_cache: bool, cache_dir: str | None) -> EmbeddingCache | None:
    return None if no_cache else EmbeddingCache(cache_dir)


def comma_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def emit_json(json_out: str | None, doc: object) -> bool:
    """Write ``doc`` where ``--json`` says; True when it went to standard output (print nothing else)."""
    from metrics.io import dumps_json, write_json

    if json_out == "-":
        click.echo(dumps_json(doc))
        return True
    if json_out:
        write_json(json_out, doc)
    return False


def manifest_command(prefix: str) -> str:
    """The command line a trainer records in its manifest entry: ``prefix`` and this process's arguments after it."""
    import shlex

    return prefix + " " + shlex.join(sys.argv[len(prefix.split()):])  # argv[0] is the program, then the words


def control_options(f):
    """The control-adherence options ``compare`` and ``score`` share (metrics/control; docs/protocol.md, "Control
    metrics"): ``--controls DIR``, ``--control-metrics LIST`` and ``--melody-prompts DIR`` (the melody-only form)."""
    from metrics.control import CONTROL_METRICS, MELODY_ADHERENCE

    names = ", ".join([*MELODY_ADHERENCE, *CONTROL_METRICS])
    f = click.option("--control-metrics", default=None, callback=lambda ctx, param, v: comma_list(v) if v else None,
                     help=f"Comma list of control metrics (default: all of them with --controls, the melody ones with "
                     f"--melody-prompts): {names}.")(f)
    f = click.option("--melody-prompts", type=click.Path(path_type=pathlib.Path, file_okay=False), default=None,
                     help="The melody each clip was conditioned on (<ytid>.wav or .mid): adds the melody metrics (CREPE "
                     "pitch RCA, audiocraft chroma cosine, Music ControlNet pitch-class accuracy; the 'melody' extra).")(f)
    f = click.option("--controls", type=click.Path(path_type=pathlib.Path, file_okay=False), default=None,
                     help="The controls each clip was given, one per id: reference clips (<ytid>.wav: every control is "
                     "extracted from them) and/or control files (.mid melody, .lab/.chords.csv chords, .key.txt, "
                     ".beats.txt, .tempo.txt, .jams). Adds the control metrics (the 'controls' and 'melody' extras).")(f)
    return f

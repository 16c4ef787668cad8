"""``musiclm-eval protocols``: the published protocols, what each needs installed, which weights are here;
and ``protocol_option`` / ``resolve_protocol`` — how ``score`` and ``compare`` take ``--protocol``."""

from __future__ import annotations

from collections.abc import Callable

import click

from benchmarks.cli.options import comma_list, emit_json, json_option, parse_paths
from metrics.embedders.tfhub import preload_torch_extensions
from metrics.protocols import PROTOCOLS, apply, metadata, status


def protocol_option(f: Callable) -> Callable:
    """``--protocol musiclm|musicgen|stable-audio``: fills every model flag the user did not give."""
    return click.option("--protocol", type=click.Choice(list(PROTOCOLS)), default=None,
                        help="A published protocol (docs/protocol.md 'Published protocols'): its embedders, "
                        "classifier + KLD convention, joint model and clip length, for the flags not given.")(f)


def resolve_protocol(protocol: str | None, embedders: str, classifier: str, joint: str, kld_convention: str,
                     clip_seconds: float | None, embedder_path: tuple[str, ...] = ()) -> tuple:
    """This run's (embedders, classifier, joint, kld_convention, clip_seconds, embedder paths, metadata): the
    user's value for every flag given on the command line, the protocol's for the others. ``--embedder-path``
    is parsed once here (a bare PATH belongs to the one FAD embedder in play); NAME=PATH for the joint model
    becomes ``NAME:PATH``; ``metadata`` (``protocol_name``, ``protocol_settings``) goes into results.json."""
    ctx = click.get_current_context()

    def user(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return protocol is None or (source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"))

    given = {"embedders": comma_list(embedders) if user("embedders") else None,
             "classifier": classifier if user("classifier") else None, "joint": joint if user("joint") else None,
             "kld_convention": kld_convention if user("kld_convention") else None}
    used = apply(protocol, given)
    if protocol is not None and not user("clip_seconds"):
        clip_seconds = PROTOCOLS[protocol].clip_seconds
    paths = parse_paths(embedder_path, used["embedders"])
    if used["joint"] in paths and ":" not in used["joint"]:
        used["joint"] = f"{used['joint']}:{paths[used['joint']]}"
    meta = metadata(protocol, {**used, "joint": str(used["joint"]).split(":", 1)[0]})
    if meta["protocol_settings"] is not None:
        models = [m for m in (*used["embedders"], used["classifier"], str(used["joint"]).split(":", 1)[0]) if m]
        meta["protocol_settings"]["weights_used"] = {m: paths.get(m, "package default location") for m in models}
        meta["protocol_settings"]["weights_note"] = (
            "weights given with --embedder-path are whatever the user supplied (the loader's tests use tiny "
            "random-weight checkpoints): numbers are comparable with the published table only with the published "
            "checkpoints" if any(m in paths for m in models) else "package default locations (published file names; each model's weights hash is in metadata.models)")
    if any(str(m).startswith(("passt", "muq")) for m in (used["classifier"], used["joint"])):
        preload_torch_extensions()
    return (",".join(used["embedders"]), used["classifier"], used["joint"], used["kld_convention"], clip_seconds,
            paths, meta)


def _mark(ok: bool | None) -> str:
    return {True: "yes", False: "NO", None: "?"}[ok]


@click.command()
@json_option()
def protocols(json_out) -> None:
    """List the published protocols, the packages each needs and which weights are present, and the control metrics' sources."""
    from metrics.control import describe

    docs, controls = [status(name) for name in PROTOCOLS], describe()
    if emit_json(json_out, {"protocols": docs, "control_metrics": controls}):
        return
    for d in docs:
        click.echo(f"{d['name']}: {d['paper']}")
        clip = f"{d['clip_seconds']} s" if d["clip_seconds"] else "as given"
        click.echo(f"  KLD convention {d['kld_convention']}; clip {clip}; "
                   f"level: {d['loudness']}; channels: {d['channels']}")
        for m in d["models"]:
            pkg = f"{m['package']} {'installed' if m['installed'] else 'NOT installed'}" if m["package"] else "no package"
            line = f"  {m['kind']:<10} {m['model']:<12} {pkg}; weights {_mark(m['weights_present'])}: {m['weights']}"
            click.echo(line)
            if m["weights_present"] is False and m["download"]:
                click.echo(f"  {'':<10} {'':<12} download: {m['download']}")
    click.echo("control metrics (compare/score --controls; docs/protocol.md, 'Control metrics'):")
    for c in controls:
        click.echo(f"  {c['metric']:<21} {c['control']:<9} {c['extractor']:<18} {c['source']}")

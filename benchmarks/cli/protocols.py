"""``musiclm-eval protocols``: the published protocols, what each needs installed, which weights are here;
and ``protocol_option`` / ``resolve_protocol`` — how ``score`` and ``compare`` take ``--protocol``."""

from __future__ import annotations

from collections.abc import Callable

import click

from benchmarks.cli.options import emit_json, json_option
from metrics.protocols import PROTOCOLS, apply, status


def protocol_option(f: Callable) -> Callable:
    """``--protocol musiclm|musicgen|stable-audio``: fills every model flag the user did not give."""
    return click.option("--protocol", type=click.Choice(list(PROTOCOLS)), default=None,
                        help="A published protocol (docs/protocol.md 'Published protocols'): its embedders, "
                        "classifier + KLD convention, joint model and clip length, for the flags not given.")(f)


def resolve_protocol(protocol: str | None, **values) -> dict:
    """The flag values of this run: the user's where given on the command line, the protocol's otherwise."""
    ctx = click.get_current_context()
    given = {}
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        user = source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
        if name == "embedders" and isinstance(value, str):
            value = [e.strip() for e in value.split(",") if e.strip()]
        given[name] = value if (user or protocol is None) else None
    out = apply(protocol, given)
    if protocol is not None and "clip_seconds" in values and given.get("clip_seconds") is None:
        out["clip_seconds"] = PROTOCOLS[protocol].clip_seconds
    return out


def _mark(ok: bool | None) -> str:
    return {True: "yes", False: "NO", None: "?"}[ok]


@click.command()
@json_option()
def protocols(json_out) -> None:
    """List the published protocols, the packages each needs and which weights are present."""
    docs = [status(name) for name in PROTOCOLS]
    if emit_json(json_out, {"protocols": docs}):
        return
    for d in docs:
        click.echo(f"{d['name']}: {d['paper']}")
        click.echo(f"  KLD convention {d['kld_convention']}; clip {d['clip_seconds'] or 'as given'} s; "
                   f"level: {d['loudness']}; channels: {d['channels']}")
        for m in d["models"]:
            pkg = f"{m['package']} {'installed' if m['installed'] else 'NOT installed'}" if m["package"] else "no package"
            line = f"  {m['kind']:<10} {m['model']:<12} {pkg}; weights {_mark(m['weights_present'])}: {m['weights']}"
            click.echo(line)
            if m["weights_present"] is False and m["download"]:
                click.echo(f"  {'':<10} {'':<12} download: {m['download']}")

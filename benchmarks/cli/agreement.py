"""``musiclm-eval agreement``: which metric agrees with the listeners? A thin layer over ``human_eval.agreement``."""

from __future__ import annotations

from pathlib import Path

import click

from benchmarks.cli.options import bootstrap_option, emit_json, json_option, out_option


def parse_renames(specs: tuple[str, ...]) -> dict[str, str]:
    """``("reference=ground truth", …)`` → ``{"reference": "ground truth"}``."""
    out: dict[str, str] = {}
    for spec in specs:
        study, sep, store = spec.partition("=")
        if not (sep and study and store):
            raise click.BadParameter(f"expected STUDY=STORE, got {spec!r}", param_hint="--rename")
        out[study] = store
    return out


@click.command()
@click.option("--results", "store", required=True, type=click.Path(path_type=Path),
              help="Results store with per-clip metric values (written by compare, score, fad or demo).")
@click.option("--db", "url", required=True, help="The study's ratings database (URL or SQLite path).")
@click.option("--rename", multiple=True, metavar="STUDY=STORE",
              help="A study system's name in the store (e.g. reference='ground truth'). Repeatable.")
@click.option("--metric", "metrics", multiple=True, help="Only this metric key (repeatable; default: every metric).")
@click.option("--max-failures", type=int, default=0, show_default=True,
              help="Exclude raters with more failed attention checks than this (as rate analyze).")
@click.option("--screening", type=click.Choice(["exclude", "report"]), default="exclude", show_default=True,
              help="Raters who failed the headphone check: excluded, or only reported (as rate analyze).")
@bootstrap_option("Two-way (raters x captions) bootstrap resamples for the 95% intervals.")
@click.option("--seed", type=int, default=0, show_default=True)
@out_option("Results store to write (kind 'agreement': the table, the plot data, one plot per metric).")
@json_option("Write the agreement table as JSON to PATH ('-': print it).")
def agreement(store, url, rename, metrics, max_failures, screening, bootstrap, seed, out_dir, json_out) -> None:
    """Pair-level agreement and system-level rank correlation of every metric with a listening study."""
    from human_eval.agreement import agreement as run_agreement
    from human_eval.agreement_report import table_text, write_outputs

    r = run_agreement(store, url, rename=parse_renames(rename), metrics=list(metrics) or None,
                      max_failures=max_failures, screening=screening, n_boot=bootstrap, seed=seed)
    if out_dir:
        write_outputs(r, out_dir)
    if emit_json(json_out, r.to_json()):
        return
    click.echo(table_text(r))
    if out_dir:
        click.echo(f"agreement store written to {out_dir}")

"""The control-adherence options ``compare`` and ``score`` share (metrics/control; docs/protocol.md, "Control metrics")."""

from __future__ import annotations

from pathlib import Path

import click

from benchmarks.cli.options import comma_list


def control_options(f):
    """``--controls DIR``, ``--control-metrics LIST`` and ``--melody-prompts DIR`` (the melody-only form)."""
    from metrics.control import CONTROL_METRICS, MELODY_ADHERENCE

    names = ", ".join([*MELODY_ADHERENCE, *CONTROL_METRICS])
    f = click.option("--control-metrics", default=None, callback=lambda ctx, param, v: comma_list(v) if v else None,
                     help=f"Comma list of control metrics (default: all of them with --controls, the melody ones with "
                     f"--melody-prompts): {names}.")(f)
    f = click.option("--melody-prompts", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="The melody each clip was conditioned on (<ytid>.wav or .mid): adds the melody metrics (CREPE "
                     "pitch RCA, audiocraft chroma cosine, Music ControlNet pitch-class accuracy; the 'melody' extra).")(f)
    f = click.option("--controls", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="The controls each clip was given, one per id: reference clips (<ytid>.wav: every control is "
                     "extracted from them) and/or control files (.mid melody, .lab/.chords.csv chords, .key.txt, "
                     ".beats.txt, .tempo.txt, .jams). Adds the control metrics (the 'controls' and 'melody' extras).")(f)
    return f

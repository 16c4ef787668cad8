"""``musiclm-eval dashboard``: start the Streamlit results explorer over results dirs and a ratings DB.

The command only checks its inputs and hands them to ``streamlit run dashboards/app.py`` through
environment variables (the app reads nothing else), so tests can build the exact command and
environment with ``dashboard_invocation`` and drive the app with AppTest without a server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from benchmarks.cli.options import BOOTSTRAP, bootstrap_option
from dashboards.runs import ENV_RESULTS
from dashboards.study import ENV_DB, ENV_HUMAN_N_BOOT

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboards" / "app.py"


def dashboard_invocation(
    results: list[Path], db: str | None = None, port: int = 8501, address: str = "127.0.0.1",
    base_env: dict[str, str] | None = None, n_boot: int = BOOTSTRAP,
) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` argv and environment for a dashboard over ``results`` and ``db``.

    Raises click.BadParameter naming the path when a results directory does not exist: a typo should
    fail here, not as an empty page. Partial or older directories are accepted; the app lists their gaps.
    """
    for r in results:
        if not Path(r).is_dir():
            raise click.BadParameter(f"{r}: results directory not found", param_hint="--results")
    env = dict(os.environ if base_env is None else base_env)
    env[ENV_RESULTS] = os.pathsep.join(str(Path(r).resolve()) for r in results)
    if db:
        env[ENV_DB] = db
    else:
        env.pop(ENV_DB, None)
    env[ENV_HUMAN_N_BOOT] = str(n_boot)
    # The package root on PYTHONPATH lets `streamlit run` import `dashboards` from a plain checkout.
    root = str(ROOT)
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    argv = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port), "--server.address", address, "--server.headless", "true",
        "--server.runOnSave", "false", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
    ]
    return argv, env


@click.command()
@click.option("--results", "results", multiple=True, type=click.Path(path_type=Path),
              help="A results directory written by compare/demo (or a memorization output dir). Repeatable.")
@click.option("--db", default=None, help="Ratings database URL (SQLAlchemy), e.g. sqlite:///study.db.")
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@bootstrap_option("Bootstrap resamples (raters) for the Bradley–Terry CIs on the human-study page.", dest="n_boot")
def dashboard(results: tuple[Path, ...], db: str | None, port: int, address: str, n_boot: int) -> None:
    """Open the results dashboard (leaderboard, plots, clips, memorization, human study)."""
    argv, env = dashboard_invocation(list(results), db=db, port=port, address=address, n_boot=n_boot)
    click.echo(f"dashboard: http://{address}:{port}  ({len(results)} results dir(s){', DB' if db else ''})", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child process: Ctrl-C and a supervisor's SIGTERM reach Streamlit itself.
    os.execve(sys.executable, argv, env)

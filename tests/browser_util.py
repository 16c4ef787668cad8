"""What the real-browser tests share: Debian chromium, a free port, a server that is up, the CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# The flags this closed-network machine needs (see DEVELOPERS.md); `playwright install` cannot run here.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian chromium not installed at {CHROMIUM}"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_command() -> list[str]:
    """``musiclm-eval`` from this venv (or the module, when the script is not installed)."""
    cli = shutil.which("musiclm-eval", path=str(Path(sys.executable).parent))
    return [cli] if cli else [sys.executable, "-m", "benchmarks.cli"]


def wait_until_up(url: str, proc: subprocess.Popen, what: str, deadline_s: float = 60.0) -> None:
    """Poll Streamlit's health endpoint; a crashed server fails at once with its output."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{what} did not answer at {url} within {deadline_s} s")


@contextlib.contextmanager
def running_server(args: list[str], port: int, home: Path, what: str, cwd: Path | None = None):
    """``musiclm-eval ARGS`` (a Streamlit server on ``port``) in its own process group; yields its URL.

    ``HOME`` points at ``home`` so Streamlit writes no state into the real one; the group is stopped
    (SIGTERM, then SIGKILL) on exit.
    """
    proc = subprocess.Popen([*cli_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=cwd, env={**os.environ, "HOME": str(home)}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, what)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

"""Kill a real process part-way: the helper of the resume tests (``test_cache_resume``, ``test_resume``)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Sequence


def kill_when(cmd: Sequence[str], ready: Callable[[], bool], timeout: float = 300) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds (polled every 20 ms); asserts it was killed
    rather than finished, so a test that passes did resume from a part-way state."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed part-way"


def run_ok(cmd: Sequence[str]) -> subprocess.CompletedProcess:
    """Run ``cmd`` to the end; its stderr is the failure message."""
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p


def numbers(out) -> tuple[dict, dict]:
    """Every metric and every per-clip number of a results store (paths differ between output folders, numbers
    must not)."""
    import pandas as pd

    doc = json.loads((out / "results.json").read_text())
    per_clip = pd.read_csv(out / "per_clip.csv").set_index(["system", "ytid"]).select_dtypes("number")
    return {s: e["metrics"] for s, e in doc["systems"].items()}, per_clip.to_dict()

"""One output folder, two runs: while a run holds a results store (``STORE/.run.lock``), a second run on the same
``--out`` refuses with one ``Error:`` line naming the folder and the other process; a SIGKILLed run's lock is
taken over with a warning; two runs racing for one folder cannot both get it. Real processes hold the locks."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.cli import main
from metrics.audio import save_audio
from metrics.store import LOCK_FILE, StaleLockWarning, StoreBusyError, read_store, write_store

HOLDER = textwrap.dedent("""
    import sys, time
    from metrics.store.lock import store_lock
    try:
        with store_lock(sys.argv[1]):
            print("locked", flush=True)
            time.sleep(float(sys.argv[2]))
    except Exception as e:
        print(f"refused: {e}", flush=True)
""")


def hold(store, seconds: float = 60) -> subprocess.Popen:
    """A real process that takes ``store``'s lock through the helper every command uses, then sleeps."""
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(store), str(seconds)], stdout=subprocess.PIPE, text=True)


def wait_locked(proc: subprocess.Popen) -> None:
    assert proc.stdout.readline().strip() == "locked"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("lockclips")
    rng = np.random.default_rng(0)
    for side in ("ref", "gen"):
        for i in range(3):
            save_audio(root / side / f"{i}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    return root


def fad(clips, out):
    return CliRunner().invoke(main, ["fad", "--reference", str(clips / "ref"), "--generated", str(clips / "gen"),
                                     "--embedder", "mel", "--no-cache", "--bootstrap", "0", "--out", str(out)])


def test_a_second_run_on_a_held_store_refuses_naming_the_folder_and_the_process(clips, tmp_path):
    out = tmp_path / "store"
    holder = hold(out)
    try:
        wait_locked(holder)
        r = fad(clips, out)
        assert r.exit_code == 1, r.output
        line = r.output.strip().splitlines()[-1]
        assert line.startswith("Error: ") and str(out) in line and f"pid {holder.pid}" in line, line
        assert not (out / "results.json").exists()
        with pytest.raises(StoreBusyError, match=f"pid {holder.pid}"):  # a library writer is refused too
            write_store(out, "fad", {"a": {"fad": 1.0}})
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_runs_lock_is_taken_over_with_a_warning_and_released_at_the_end(clips, tmp_path):
    out = tmp_path / "store"
    holder = hold(out)
    wait_locked(holder)
    holder.send_signal(signal.SIGKILL)
    assert holder.wait() == -signal.SIGKILL
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid  # the dead run's lock is still there
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = fad(clips, out)
    assert r.exit_code == 0, r.output
    assert any(issubclass(w.category, StaleLockWarning) and f"pid {holder.pid}" in str(w.message) for w in caught)
    assert read_store(out).kind == "fad" and not (out / LOCK_FILE).exists()
    assert fad(clips, out).exit_code == 0  # and the next run finds a free store


def test_two_runs_racing_for_a_dead_runs_lock_one_wins(tmp_path):
    """Both find a dead run's lock at once: exactly one of them may take it over, the other refuses."""
    out = tmp_path / "store"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                             "started": "x", "started_unix": time.time() - 10}))
    procs = [hold(out, 3) for _ in range(2)]
    said = sorted(p.stdout.readline().strip() for p in procs)
    for p in procs:
        p.wait()
    assert said[0] == "locked" and said[1].startswith("refused:") and f"{out}: another run" in said[1], said
    assert not (out / LOCK_FILE).exists()


def test_a_folder_the_run_created_and_left_empty_is_removed_with_its_lock(tmp_path):
    """A command that fails after taking the lock (a bad flag, an unreadable input) leaves no empty --out; a folder
    that existed before, or that the run wrote into, stays."""
    from metrics.store.lock import store_lock

    fresh = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), store_lock(fresh):
        raise RuntimeError("bad flag")
    assert not fresh.exists() and fresh.parent.exists()
    with store_lock(fresh):
        (fresh / "results.json").write_text("{}")
    assert (fresh / "results.json").exists() and not (fresh / ".run.lock").exists()
    kept = tmp_path / "existing"
    kept.mkdir()
    with store_lock(kept):
        pass
    assert kept.is_dir() and not any(kept.iterdir())

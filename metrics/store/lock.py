"""One run per results store at a time: ``store_lock(out_dir)``, held by every command that writes a store.

Why: two runs writing one ``--out`` folder would each replace the store atomically, so the folder would hold
whichever finished last — with no sign that the other run's numbers were lost. The first run holds a lock
file (``STORE/.run.lock``: pid, host, start time, command line) from before its work starts until it ends;
a second run refuses at once with an ``Error:`` line naming the folder and the other process.

A lock whose process is gone (killed by SIGKILL, the machine's OOM killer, a pre-empted job) is stale: on
the same host a pid that no longer runs — or now runs a process started after the lock was taken — is
taken over with a warning. A lock from another host cannot be checked from here; the message says which
host and that removing the file is safe once that run is gone. The lock is taken with ``O_EXCL`` and a
stale one is removed by renaming it away first, so two runs racing for one folder cannot both win.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from metrics.store.schema import ResultsError

LOCK_FILE = ".run.lock"


class StoreBusyError(ResultsError):
    """Another live run holds the results store's lock; the message names the folder and that process."""


class StaleLockWarning(UserWarning):
    """A killed run's lock was taken over."""


_held: set[Path] = set()  # locks this process holds, released at exit even when a command never got to run
_created: set[Path] = set()  # store folders this process created when it took their lock (removed again if left empty)


def _release_all() -> None:
    for path in list(_held):
        _release(path)


atexit.register(_release_all)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return False
    return True


def _process_start(pid: int) -> float | None:
    """When ``pid`` started (Unix time), where /proc tells it; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
            + (f": {info['command']}" if info.get("command") else ""))


def _read(path: Path) -> dict | None:
    """The lock's content; None when it vanished. A half-written lock (its writer killed between create and
    write) reads as {} and is stale once it is older than a few seconds."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        info = {}
    return info if isinstance(info, dict) else {}


def is_stale(info: dict, path: Path) -> bool:
    """Whether the lock described by ``info`` belongs to no running process (only checkable on this host)."""
    pid = info.get("pid")
    if not isinstance(pid, int):  # half-written: its writer died between creating and writing it
        try:
            return time.time() - path.stat().st_mtime > 5
        except FileNotFoundError:
            return True
    if info.get("host") != socket.gethostname():
        return False
    if not _pid_alive(pid):
        return True
    start = _process_start(pid)  # a reused pid: the process now holding it started after the lock was taken
    return start is not None and isinstance(info.get("started_unix"), (int, float)) and start > info["started_unix"] + 1


def _create(path: Path, info: dict) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(info))
    return True


def acquire(out_dir: str | Path) -> Path:
    """Take ``out_dir``'s lock (creating the folder) or raise :class:`StoreBusyError`; returns the lock file."""
    store = Path(out_dir)
    created = not store.exists()
    store.mkdir(parents=True, exist_ok=True)
    path = store / LOCK_FILE
    now = time.time()
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "started_unix": now, "command": " ".join(sys.argv)}
    for _ in range(20):
        if _create(path, info):
            _held.add(path.resolve())
            if created:
                _created.add(path.resolve())
            return path
        other = _read(path)
        if other is None:  # released between our two looks
            continue
        mine = other.get("pid") == os.getpid() and other.get("host") == info["host"]
        if mine and path.resolve() in _held:
            raise StoreBusyError(f"{store}: this process already holds the results store's lock ({path})")
        if not mine and not is_stale(other, path):  # ours but not held: an earlier process with this pid
            where = "" if other.get("host") in (None, info["host"]) else \
                " (another host: if that run is gone, remove the lock file)"
            raise StoreBusyError(f"{store}: another run is writing this results store ({_describe(other)}){where}; "
                                 f"wait for it to finish or choose another --out (lock file {path})")
        # stale: move it aside under a name of our own; only one racer's rename finds it
        aside = path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            continue
        taken = _read(aside)
        if taken != other:  # a live run's fresh lock got there first: put it back and look again
            with contextlib.suppress(OSError):
                os.link(aside, path)
            aside.unlink(missing_ok=True)
            continue
        aside.unlink(missing_ok=True)
        warnings.warn(f"{store}: took over the lock of a run that is gone ({_describe(other)}); "
                      "its store may be incomplete, this run rewrites it", StaleLockWarning, stacklevel=2)
    raise StoreBusyError(f"{store}: could not take the results store's lock ({path}): other runs keep taking it")


def _release(path: Path) -> None:
    """Remove the lock if it is still ours; a folder this run created and left empty (it failed before writing
    anything, e.g. on a bad flag) goes too, so a failed command leaves no empty ``--out`` behind."""
    _held.discard(path)
    info = _read(path)
    if info is not None and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)
    if path in _created:
        _created.discard(path)
        with contextlib.suppress(OSError):  # not empty (the run wrote its store): kept
            path.parent.rmdir()


@contextlib.contextmanager
def store_lock(out_dir: str | Path) -> Iterator[Path]:
    """Hold ``out_dir``'s lock for the block (module docstring); re-entering in the same process is an error."""
    path = acquire(out_dir).resolve()
    try:
        yield path
    finally:
        _release(path)


def check_not_locked_by_other(out_dir: str | Path) -> None:
    """Refuse to write a store another live run holds (a library caller that took no lock of its own)."""
    path = Path(out_dir) / LOCK_FILE
    other = _read(path)
    if other is None or (other.get("pid") == os.getpid() and other.get("host") == socket.gethostname()):
        return
    if not is_stale(other, path):
        raise StoreBusyError(f"{out_dir}: another run is writing this results store ({_describe(other)}); "
                             f"lock file {path}")

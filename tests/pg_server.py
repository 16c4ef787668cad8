"""A throwaway PostgreSQL server for the tests, started by the tests themselves (``make test`` on a fresh machine).

``MUSICLM_EVAL_PG_URL`` (set by ``source .ci/postgres.sh start``) wins when given. Otherwise the newest Debian
server binaries (``/usr/lib/postgresql/*/bin``, or ``initdb``/``pg_ctl`` on PATH) start a private cluster on
127.0.0.1 and a free port, in a fresh temporary directory, with trust auth; it is stopped and deleted when the
session ends. As root the cluster runs as the ``postgres`` user (initdb refuses root). The tests skip only when
no server binaries exist; a server that is present but fails to start is an error, with its log.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ENV_URL = "MUSICLM_EVAL_PG_URL"


def server_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (the newest Debian version first), or None."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in Path(d).parent.name.split(".")
                                                                         if x.isdigit()])
    for d in [*reversed(dirs), *([str(Path(shutil.which("pg_ctl")).parent)] if shutil.which("pg_ctl") else [])]:
        if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv] if shutil.which("runuser") else \
        ["su", "postgres", "-c", " ".join(f"'{a}'" for a in argv)]


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    r = subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        tail = log.read_text()[-2000:] if log is not None and log.is_file() else ""
        raise RuntimeError(f"PostgreSQL {what} failed ({' '.join(argv)}): {r.stdout}{r.stderr}{tail}")


def start(bin_dir: Path) -> tuple[str, Path]:
    """Start a cluster; returns (SQLAlchemy URL, its directory)."""
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root but there is no 'postgres' user to run the server as") from None
    root = Path(tempfile.mkdtemp(prefix="musiclm-eval-pg."))
    if os.geteuid() == 0:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    data, log = root / "data", root / "server.log"
    _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"],
         "initdb")
    _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
          f"-c listen_addresses=127.0.0.1 -p {port} -k {root}", "start"], "start", log)
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", root


def stop(bin_dir: Path, root: Path) -> None:
    try:
        _run([str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "stop"], "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def session_server(skip) -> Iterator[str]:
    """The URL of a server for this test session (the environment's, or one started here); ``skip(reason)`` else."""
    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL]
        return
    bin_dir = server_bin()
    if bin_dir is None:
        skip(f"no PostgreSQL server binaries (/usr/lib/postgresql/*/bin or pg_ctl on PATH) and {ENV_URL} is not set")
        return
    url, root = start(bin_dir)
    try:
        yield url
    finally:
        stop(bin_dir, root)

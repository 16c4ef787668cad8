"""A results store is replaced as a whole or not at all: real processes SIGKILLed at every file operation.

A run writes a complete store (run 1), then a second run rewrites the same folder and is killed with
SIGKILL at the k-th rename (each staged file's own atomic write, each move into place, results.json).
Whatever k, the folder holds run 1's complete store, or no results.json (the reader says the run did not
finish), or — once the last rename happened — run 2's: never results.json beside another run's per-clip
table, pairwise table or extra file. The next run after a kill writes a complete store.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from metrics.store import ResultsError, read_store, write_store

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import pandas as pd
    from metrics.store import write_store

    store, kill_at, runs = sys.argv[1], int(sys.argv[2]), [int(r) for r in sys.argv[3].split(",")]

    def write(run):
        n = 2 + run  # each run has its own number of clips and its own values
        per_clip = pd.DataFrame({"system": ["a"] * n, "ytid": [f"y{i}" for i in range(n)], "fad": [float(run)] * n})
        write_store(store, "compare", {"a": {"metrics": {"fad": {"value": float(run), "ci95": None}}}},
                    per_clip=per_clip, pairwise=pd.DataFrame({"run": [run]}), extra_files={"table.md": f"run {run}"})

    write(runs[0])
    calls, real = [0], os.replace

    def replace(*a, **k):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)

    os.replace = replace
    for run in runs[1:]:
        write(run)
    print(calls[0])
""")
RENAMES = 9  # 4 staged files (each written atomically), 4 moves into place, results.json


def run_writer(store, kill_at: int, runs: str = "1,2") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(store), str(kill_at), runs], capture_output=True, text=True)


def store_run(store) -> int | None:
    """Which run the store holds, checking every file agrees; None when there is no store."""
    try:
        res = read_store(store)
    except ResultsError as e:
        assert "did not finish" in str(e), e
        return None
    run = int(res.data["systems"]["a"]["metrics"]["fad"]["value"])
    assert len(res.per_clip) == 2 + run and set(res.per_clip["fad"]) == {float(run)}
    assert (store / "pairwise.csv").read_text().split() == ["run", str(run)]
    assert (store / "table.md").read_text() == f"run {run}"
    return run


def test_uninterrupted_run_counts_the_renames(tmp_path):
    p = run_writer(tmp_path / "s", 10**6)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) == RENAMES and store_run(tmp_path / "s") == 2


@pytest.mark.parametrize("kill_at", range(1, RENAMES + 1))
def test_killed_rewrite_leaves_the_previous_store_or_none(tmp_path, kill_at):
    store = tmp_path / "s"
    p = run_writer(store, kill_at)
    assert p.returncode == -9, p.stderr
    held = store_run(store)
    if kill_at <= 4:  # still staging: nothing in place changed
        assert held == 1
    else:  # results.json is dropped before the first move and written last
        assert held is None
    p = run_writer(store, 10**6, "3")  # the next run over the leftovers
    assert p.returncode == 0, p.stderr
    assert store_run(store) == 3
    assert leftovers(store) == []  # a staged file or its temp file the kill left is gone


def leftovers(store) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob(".*") if ".staged" in p.name)


def test_staged_files_of_names_the_next_run_does_not_write_are_removed(tmp_path):
    """A killed run staged files under names (an extra file, one in a sub-folder) the next run does not write."""
    store = tmp_path / "s"
    (store / "memorization").mkdir(parents=True)
    for name in (".gone.md.staged", "memorization/.matches.csv.staged", "..per_clip.csv.staged.x1y2.tmp"):
        (store / name).write_text("half")
    (store / ".notes.txt").write_text("not ours")  # a hidden file of the user's stays
    write_store(store, "compare", {"a": {"fad": 1.0}})
    assert leftovers(store) == [] and (store / ".notes.txt").read_text() == "not ours"
    assert read_store(store).kind == "compare"

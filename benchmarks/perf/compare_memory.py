"""Peak RSS and clips/s of ``compare`` on the memory benchmark's data, for any source tree (before/after).

    python -m benchmarks.perf.compare_memory --clips 400 --label pipeline
    python -m benchmarks.perf.compare_memory --clips 400 --label before --tree /tmp/old   # a `git worktree` of an old commit
    python -m benchmarks.perf.compare_memory --from-benchmark bench.json --label "MusicCaps scale"  # record a
        # `pytest benchmarks/perf/test_bench_memory.py --benchmark-json bench.json` run instead of running one

Each run writes N clips × 10 s × 3 sets (reference + 2 systems; ``test_bench_memory``'s seeded data),
runs that tree's ``python -m benchmarks.cli compare`` with mel + classifier + joint model and no
cache in a child process, and appends one record (peak RSS = the child's ``ru_maxrss``, clips/s, load
average at start and end) to ``--out`` (default ``docs/figures/memory.json``, which ``make figures``
renders). Run the two trees at the same time so they see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.perf.test_bench_memory import _captions, _write_set

ROOT = Path(__file__).resolve().parents[2]


def measure(clips: int, tree: Path, label: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ref, a, b = (_write_set(root, name, clips, seed) for name, seed in (("reference", 0), ("a", 1), ("b", 2)))
        caps = _captions(root / "captions.csv", clips)
        cmd = [sys.executable, "-m", "benchmarks.cli", "compare", "--system", f"a={a}", "--system", f"b={b}",
               "--reference", str(ref), "--captions", str(caps), "--out", str(root / "out"), "--embedders", "mel",
               "--no-cache", *extra]
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "POT_BACKEND_DISABLE_TENSORFLOW": "1"}
        load = os.getloadavg()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=tree, capture_output=True)
        wall = time.perf_counter() - t0
        load_end = os.getloadavg()
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"label": label, "commit": commit, "clips": clips, "sets": 3, "seconds_per_clip": 10.0,
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 3),
            "clips_per_s": round(3 * clips / wall, 2), "wall_s": round(wall, 1),
            "loadavg_start": [round(x, 1) for x in load], "loadavg_end": [round(x, 1) for x in load_end],
            "extra_args": extra}


def from_benchmark(path: Path, label: str, extra: list[str]) -> list[dict]:
    """One record per case of a ``test_bench_memory`` pytest-benchmark JSON (its ``extra_info``).

    ``extra`` names the run's compare arguments where the JSON predates its ``bootstrap`` field.
    """
    doc = json.loads(path.read_text())
    cases = [b for b in doc.get("benchmarks", []) if "test_bench_compare_memory" in b.get("fullname", "")]
    needed = ("commit", "clips", "peak_rss_gb", "clips_per_s", "wall_s", "loadavg_start", "loadavg_end")
    if not cases or any(k not in b.get("extra_info", {}) for b in cases for k in needed):
        raise ValueError(f"{path}: not a test_bench_memory benchmark JSON with its records "
                         f"(needs test_bench_compare_memory cases whose extra_info has {', '.join(needed)})")
    records = []
    for b in cases:
        info = b["extra_info"]
        records.append({"label": label, "commit": info["commit"], "clips": info["clips"], "sets": info["sets"],
                        "seconds_per_clip": info["seconds_per_clip"], "peak_rss_gb": info["peak_rss_gb"],
                        "clips_per_s": info["clips_per_s"], "wall_s": info["wall_s"],
                        "loadavg_start": info["loadavg_start"], "loadavg_end": info["loadavg_end"],
                        "extra_args": ["--bootstrap", str(info["bootstrap"])] if "bootstrap" in info else extra,
                        "source": b["fullname"]})
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, help="clips per set (required unless --from-benchmark)")
    p.add_argument("--from-benchmark", type=Path, help="record a test_bench_memory --benchmark-json file instead")
    p.add_argument("--commit", help="with --from-benchmark: the commit the run started from, for a JSON that "
                                    "recorded HEAD at its end")
    p.add_argument("--label", required=True)
    p.add_argument("--tree", type=Path, default=ROOT)
    p.add_argument("--out", type=Path, default=ROOT / "docs/figures/memory.json")
    p.add_argument("extra", nargs="*", help="extra compare arguments (after --)")
    args = p.parse_args(argv)
    if args.from_benchmark is not None:
        try:
            records = from_benchmark(args.from_benchmark, args.label, args.extra)
        except ValueError as e:
            p.error(str(e))
        for r in records:
            r["commit"] = args.commit or r["commit"]
    elif args.clips is None:
        p.error("--clips is required (or --from-benchmark)")
    else:
        records = [measure(args.clips, args.tree.resolve(), args.label, args.extra)]
    doc = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    doc["runs"].extend(records)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    for record in records:
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

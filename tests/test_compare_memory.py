"""The memory benchmark's records: a pytest-benchmark run recorded by ``compare_memory`` reaches the figures."""

from __future__ import annotations

import json

import pytest

from benchmarks.figures_perf import MEMORY, memory_summary, memory_table
from benchmarks.perf.compare_memory import main


def _bench_json(path, clips, **extra):
    info = {"clips": clips, "sets": 3, "seconds_per_clip": 10.0, "peak_rss_gb": 1.234, "clips_per_s": 5.67,
            "wall_s": 3000.0, "loadavg_start": [6.8, 6.0, 5.0], "loadavg_end": [4.2, 5.0, 5.0], "commit": "end0000",
            **extra}
    path.write_text(json.dumps({"benchmarks": [{"fullname": f"test_bench_compare_memory[{clips}]", "extra_info": info}]}))
    return path


def test_a_benchmark_run_is_recorded_and_rendered(tmp_path):
    out = tmp_path / MEMORY
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps({"runs": [{"label": "before (load everything)", "commit": "7f1410c", "clips": 400, "sets": 3,
                                         "seconds_per_clip": 10.0, "peak_rss_gb": 1.58, "clips_per_s": 3.95,
                                         "wall_s": 304.1, "loadavg_start": [7.3, 6.2, 6.0], "extra_args": []}]}))
    bench = _bench_json(tmp_path / "bench.json", 5521)
    assert main(["--from-benchmark", str(bench), "--label", "MusicCaps scale", "--out", str(out), "--commit", "start00",
                 "--", "--bootstrap", "1000"]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 2 and runs[0]["label"].startswith("before")  # appended, the old record kept
    new = runs[1]
    assert new["commit"] == "start00" and new["extra_args"] == ["--bootstrap", "1000"] and new["clips"] == 5521
    table = memory_table(tmp_path)
    assert "| MusicCaps scale | `start00` | 5521 × 3 | 1.23 GB | 5.67 | 50.0 min | 6.8 → 4.2 |" in table
    assert "| 400 × 3 | 1.58 GB | 3.95 | 5.1 min | 7.3 |" in table  # a record without loadavg_end
    summary = memory_summary(tmp_path)
    assert summary.startswith("at 5,521 clips × 3 sets") and "1.23 GB and 5.67 clips/s" in summary
    assert "1.58 GB already at 400 clips × 3, 3.95 clips/s" in summary


def test_the_bootstrap_field_wins_and_clips_are_required(tmp_path, capsys):
    out = tmp_path / "m.json"
    bench = _bench_json(tmp_path / "bench.json", 100, bootstrap=100)
    assert main(["--from-benchmark", str(bench), "--label", "x", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())["runs"][0]
    assert rec["extra_args"] == ["--bootstrap", "100"] and rec["commit"] == "end0000"
    with pytest.raises(SystemExit):
        main(["--label", "x", "--out", str(out)])
    assert "--clips is required" in capsys.readouterr().err


def test_a_json_that_is_not_the_memory_benchmark_is_a_clear_error(tmp_path, capsys):
    other = tmp_path / "bench_stats.json"
    other.write_text(json.dumps({"benchmarks": [{"fullname": "test_bench_stats.py::test_stats_throughput[128]",
                                                 "extra_info": {"d": 128}}]}))
    with pytest.raises(SystemExit):
        main(["--from-benchmark", str(other), "--label", "x", "--out", str(tmp_path / "m.json")])
    assert "bench_stats.json: not a test_bench_memory benchmark JSON" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()

"""Rating-submission latency with 50 concurrent simulated raters on SQLite (WAL, BEGIN IMMEDIATE).

One round = 50 rater threads that each fetch their current trial and submit it, three trials each, all at
once against a fresh study. Every submission's wall time is recorded; p50/p95/max go to
``benchmark.extra_info`` (milliseconds). Correctness under this load is tested in tests/test_human_assign.py.
"""

from __future__ import annotations

import itertools
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from human_fixtures import make_sources  # noqa: E402

from human_eval import assign, db  # noqa: E402
from human_eval.design import create_study  # noqa: E402

N_RATERS, PER_RATER = 50, 3


def fresh_study(root: Path, counter=itertools.count()) -> tuple:
    d = root / f"round{next(counter)}"
    dirs, ref, captions = make_sources(d, n_items=4, seconds=0.2)
    url = f"sqlite:///{d / 'study.db'}"
    c = create_study(url, dirs, captions, reference=ref, ratings_per_pair=N_RATERS, raters=N_RATERS,
                     trials_per_rater=PER_RATER, attention_checks=0, sample_rate=16000)
    Session_ = db.sessions(db.open_db(url))
    with Session_() as s:
        ids = [assign.rater_by_token(s, t).id for t in c.tokens]
    return (Session_, ids), {}


def run_round(Session_, ids: list[int], latencies: list[float]) -> None:
    def rater(rid: int) -> None:
        while (view := assign.view_for(Session_, rid)) is not None:
            t0 = time.perf_counter()
            assign.submit_rating(Session_, rid, view.assignment_id, 1)
            latencies.append(time.perf_counter() - t0)

    with ThreadPoolExecutor(N_RATERS) as pool:
        list(pool.map(rater, ids))


def test_submit_latency_50_concurrent_raters_sqlite(benchmark, tmp_path):
    latencies: list[float] = []
    benchmark.pedantic(lambda Session_, ids: run_round(Session_, ids, latencies),
                       setup=lambda: fresh_study(tmp_path), rounds=3, iterations=1)
    ms = np.array(latencies) * 1000
    assert len(ms) == 3 * N_RATERS * PER_RATER
    benchmark.extra_info.update({"raters": N_RATERS, "submissions": len(ms), "p50_ms": float(np.percentile(ms, 50)),
                                 "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max())})

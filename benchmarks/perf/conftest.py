"""Shared set-up of the performance suite (``make bench``): one BLAS/torch thread, machine facts in the JSON.

Why one thread: the reference machine has 2 cores shared with other jobs; with two OpenBLAS threads the
same eigvalsh took 0.9–17 s from run to run (threads spin-waiting on a busy core), so ratios meant
nothing. One thread for us *and* the peers keeps ratios stable and comparable. Override with e.g.
``OPENBLAS_NUM_THREADS=2 BENCH_TORCH_THREADS=2 make bench``. The variables must be set before numpy
loads OpenBLAS, which is why they live here (pytest imports this before any benchmark module).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

import pytest  # noqa: E402

TORCH_THREADS = int(os.environ.get("BENCH_TORCH_THREADS", "1"))


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device of the benchmarks that take one (test_bench_training: cuda).")


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what the figures depend on: cores, load while the suite started, thread settings."""
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["loadavg_at_start"] = os.getloadavg()
    machine_info["threads"] = {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    machine_info["torch_threads"] = TORCH_THREADS


@pytest.fixture(autouse=True)
def _torch_threads():
    """Every benchmark runs torch on ``BENCH_TORCH_THREADS`` threads (default 1), restored afterwards."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    yield
    torch.set_num_threads(before)

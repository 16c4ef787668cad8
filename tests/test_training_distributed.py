"""Data-parallel training: 2 gloo processes with B/2 rows each = 1 process with B rows.

The two workers are started the way torchrun starts them (RANK / WORLD_SIZE / MASTER_* in the
environment, read by ``distributed.from_env``) and run the project's own ``fit_stage``. The
property: the same per-step loss (averaged over the ranks) and the same final weights as one process
with the doubled batch, to float tolerance — which holds only if the ranks' rows are a partition of
the one-process batch and DDP averages (not sums) the gradients. A half-batch single process is the
control: its trajectory must differ by far more than the tolerance.
"""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from training_fixtures import max_weight_diff, micro_stage, random_corpus, weights

from musiclm_ref.train.stage import StageTrainConfig, fit_stage

STEPS, BATCH = 4, 8
STAGES = ("semantic", "coarse")  # the two conditioning layouts (MuLan + melody; MuLan + semantic context)
CFG = StageTrainConfig(steps=STEPS, batch=BATCH, warmup=1, lr=3e-3, checkpoint_every=10**6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from musiclm_ref import distributed

    ctx = distributed.from_env("cpu")
    try:
        result = {}
        for name in STAGES:
            stage, losses = micro_stage(name), []
            fit_stage(stage, random_corpus(), CFG, progress=False, ctx=ctx, on_step=lambda s, v, out=losses: out.append(v))
            result[name] = {"losses": losses, "weights": weights(stage)}
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def _single(stage_name: str, batch: int) -> tuple[list[float], dict]:
    stage, losses = micro_stage(stage_name), []
    cfg = StageTrainConfig(**{**CFG.__dict__, "batch": batch})
    fit_stage(stage, random_corpus(), cfg, progress=False, on_step=lambda s, v: losses.append(v))
    return losses, weights(stage)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One spawn of 2 gloo processes training each stage (process start-up dominates the cost)."""
    out = tmp_path_factory.mktemp("ddp") / "rank0.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("stage_name", STAGES)
def test_two_gloo_processes_follow_the_one_process_doubled_batch_trajectory(stage_name, ddp_run, one_torch_thread):
    ddp = ddp_run[stage_name]
    losses, w = _single(stage_name, BATCH)
    assert len(ddp["losses"]) == STEPS
    assert ddp["losses"] == pytest.approx(losses, rel=1e-5, abs=1e-6), json.dumps([ddp["losses"], losses])
    assert max_weight_diff(ddp["weights"], w) < 1e-5
    half, w_half = _single(stage_name, BATCH // 2)  # the control: one rank's share alone is another trajectory
    assert max(abs(a - b) for a, b in zip(half, losses)) > 1e-3
    assert max_weight_diff(w_half, w) > 1e-4


def test_a_batch_that_does_not_divide_by_the_world_is_refused():
    from musiclm_ref.distributed import DistContext, DistributedError

    with pytest.raises(DistributedError, match="global batch 7 does not divide by the world size 2"):
        fit_stage(micro_stage("fine"), random_corpus(), StageTrainConfig(steps=1, batch=7), progress=False,
                    ctx=DistContext(rank=0, world=2))

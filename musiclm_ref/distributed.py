"""Data-parallel training on one or many processes: the run's rank/world, DDP wrapping, precision.

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``MASTER_ADDR``/``MASTER_PORT``; ``from_env()`` reads them (a plain ``python`` run is rank 0 of 1, so
the same code path trains on a laptop and on 8 GPUs). Why the batch is sharded the way it is:

* Every rank draws the *global* batch of crops from the same seeded generator and keeps rows
  ``rank::world`` (``shard``). The union of the ranks' rows is then exactly the one-process batch,
  with the same crops and the same conditioning-dropout masks, and a one-process run draws its random
  numbers exactly as before. Drawing a batch of token crops is index arithmetic, so the redundant
  draws cost nothing next to the forward pass.
* Every row of a stage batch has the same number of target tokens (fixed-length crops), so the mean
  of the ranks' per-token mean losses is the global per-token mean. DDP *averages* gradients over
  ranks, hence a world of W processes with B/W rows each takes the same optimizer step as one
  process with B rows (up to float summation order). The batch must divide by the world size.
* Gradient clipping and AdamW run on the averaged gradients, identically on every rank, so the
  replicas stay equal; only rank 0 writes checkpoints and manifests.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from metrics.errors import UnavailableError

PRECISIONS = ("fp32", "bf16")


class DistributedError(UnavailableError):
    """A distributed or precision setting this machine cannot run; the message says what to change."""


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run. ``world == 1`` is a plain single-process run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, *tensors: Tensor | None) -> tuple[Tensor | None, ...]:
        """Rows ``rank::world`` of each global-batch tensor (None stays None)."""
        if not self.active:
            return tensors
        return tuple(t[self.rank :: self.world] if t is not None else None for t in tensors)

    def check_batch(self, batch: int) -> None:
        if batch % self.world:
            raise DistributedError(f"global batch {batch} does not divide by the world size {self.world}; "
                                   f"choose a multiple of {self.world} (each process takes batch / world rows)")

    def mean(self, value: Tensor) -> Tensor:
        """The mean of a scalar over the ranks (what the one-process run would log)."""
        if not self.active:
            return value.detach()
        v = value.detach().clone().float()
        dist.all_reduce(v, op=dist.ReduceOp.SUM)
        return v / self.world

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, obj):
        """Every rank's ``obj`` as a list indexed by rank (a one-element list in a single process)."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def from_env(device: str = "cpu", backend: str | None = None, timeout_s: int = 1800) -> DistContext:
    """The context torchrun describes in the environment; initializes the process group if world > 1.

    ``device='cuda'`` puts each process on ``cuda:LOCAL_RANK`` with NCCL; CPU runs use gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DistributedError("--device cuda was given but torch sees no CUDA device on this machine")
        if world > 1 and torch.cuda.device_count() <= local:
            raise DistributedError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices are visible")
        device = f"cuda:{local}" if world > 1 or device == "cuda" else device
        torch.cuda.set_device(torch.device(device))
    if world > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if device.startswith("cuda") else "gloo")
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank=rank, world=world, local_rank=local, device=device)


@contextlib.contextmanager
def session(device: str = "cpu"):
    """``from_env`` for the length of a ``with`` block; a process group it started is destroyed at the end."""
    owner = not dist.is_initialized()
    ctx = from_env(device)
    try:
        yield ctx
    finally:
        if owner and dist.is_initialized():
            dist.destroy_process_group()


def wrap(module: nn.Module, ctx: DistContext) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel when the run has more than one process."""
    if not ctx.active:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [torch.device(ctx.device).index] if ctx.device.startswith("cuda") else None
    return DDP(module, device_ids=ids)


def check_precision(precision: str, device: str) -> None:
    """bf16 needs a device that computes in it: any CPU (slowly, for tests) or an Ampere+ GPU."""
    if precision not in PRECISIONS:
        raise DistributedError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise DistributedError("--precision bf16: this GPU has no bfloat16 support (needs Ampere or newer); use fp32")


def autocast(precision: str, device: str):
    """bf16 autocast for the forward pass and loss (weights, gradients and AdamW stay fp32; no loss
    scaling is needed for bf16, unlike fp16); a no-op context for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def rng_state(device: str) -> dict:
    """torch's global RNG states (dropout draws from them), for an exact resume."""
    state = {"cpu": torch.get_rng_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def set_rng_state(state: dict, device: str) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], torch.device(device))

"""Exact resume of the metric models' epoch loop (``train classifier``, ``train mulan``).

Why: a training run killed part-way (SIGKILL, an OOM kill, a pre-empted job) should continue where it
stopped and end with the weights an uninterrupted run would have, not start again. After every epoch
the loop saves, atomically, beside the checkpoint it will write (``CKPT.resume``): the weights, the
optimizer and schedule state, the step, the losses so far, torch's RNG state and the caller's numpy
generator (epoch order, crops). A rerun with the same recipe and data restores all of it and continues
with the next epoch; a rerun with another recipe refuses rather than mixing two runs. The file is
removed once the final checkpoint is written. ``read_resume`` / ``restore`` / ``write_resume`` are the same
for a step loop (``train melody``: ``DIR/melody_last.pt``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metrics.artifacts import read_checkpoint, save_checkpoint
from metrics.errors import InputError

RESUME_FORMAT = "musiclm-eval.epoch-resume.v1"
RUN_FIELDS = ("progress", "command", "device", "checkpoint_every")  # how a run is watched, where it runs, how often it saves


def recipe_digest(cfg: object, data_hash: str) -> str:
    """What must match to continue a run: the training config (less :data:`RUN_FIELDS`) and the data."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_FIELDS}  # type: ignore[call-overload]
    blob = json.dumps({"config": fields, "data": data_hash}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def resume_path(checkpoint: str | Path) -> Path:
    """Where the epoch state of a run writing ``checkpoint`` lives."""
    p = Path(checkpoint)
    return p.with_name(p.name + ".resume")


def read_resume(path: Path | None, fmt: str, kind: str, error: type[Exception], digest: str) -> dict | None:
    """A killed run's state at ``path`` (None when there is none); refused when its recipe ``digest`` differs."""
    if path is None or not path.exists():
        return None
    state, _ = read_checkpoint(path, fmt, kind, error)
    if state["digest"] != digest:
        raise error(f"{path}: left by a run with another config or data; rerun that command to finish it, or remove "
                    "the file to start this one")
    return state


def restore(state: dict, model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    """Weights, optimizer and torch's RNG (dropout, crops drawn from it) of a state :func:`write_resume` wrote."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def write_resume(path: Path, fmt: str, digest: str, model: torch.nn.Module, opt: torch.optim.Optimizer, **rest) -> None:
    """Save a run's state atomically (a kill mid-write leaves the previous one): weights, optimizer, RNGs, ``rest``."""
    save_checkpoint({"format": fmt, "digest": digest, "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "torch_rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None, **rest}, path)


@dataclass
class EpochResume:
    """An epoch loop's resume state: ``path``, the ``digest`` of its recipe, the caller's numpy ``rng``."""

    path: Path
    digest: str
    rng: np.random.Generator

    def load(self, model: torch.nn.Module, opt: torch.optim.Optimizer, sched) -> tuple[int, int, list[float]] | None:
        """Restore a killed run's state into ``model``/``opt``/``sched`` and the RNGs; returns (next epoch, step,
        losses), or None when there is nothing to resume."""
        state = read_resume(self.path, RESUME_FORMAT, "an epoch resume state", InputError, self.digest)
        if state is None:
            return None
        restore(state, model, opt)
        sched.load_state_dict(state["schedule"])
        self.rng.bit_generator.state = state["numpy_rng"]
        return int(state["epoch"]), int(state["step"]), list(state["losses"])

    def save(self, epoch: int, step: int, losses: list[float], model: torch.nn.Module, opt: torch.optim.Optimizer,
             sched) -> None:
        """The state after ``epoch`` epochs."""
        write_resume(self.path, RESUME_FORMAT, self.digest, model, opt, epoch=epoch, step=step, losses=losses,
                     schedule=sched.state_dict(), numpy_rng=self.rng.bit_generator.state)

"""MCC: MuLan cycle consistency — mean cosine similarity between each caption's text embedding and the
audio embedding of the music generated from it (MusicLM paper, section 5).

Pairs are matched by id (file stem = MusicCaps ``ytid``), never by order. Backends:

- ``mulan-ref`` (default): the project's MuLan-style model, shipped and trained on the procedural
  corpus; it registers itself as the ``joint`` entry point ``mulan-ref`` (``metrics.registry``), so
  ``metrics`` never imports the reference model. A path to another checkpoint of it works too.
- ``clap`` / ``clap:<folder or checkpoint.pt>``: LAION-CLAP (``metrics.embedders.clap``). CLAP-based
  MCC is a different embedding space than the paper's MuLan and its values are *not comparable* to
  the paper's MCC.

``MCC`` (the ``Metric``) is the only route to an MCC value, so every entry point gets the same value
and the same interval (``metrics.intervals``); ``parse_joint_spec`` reads the ``--joint`` flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metrics.audio import PairingError
from metrics.errors import UnavailableError
from metrics.metric import PerClipOutputs
from metrics.result import MetricResult


class JointModelError(UnavailableError):
    """A joint text/audio model that cannot be built; the message says which and why."""


def _unit(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected [n, dim] embeddings, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN/Inf")
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if (norm == 0).any():
        raise ValueError(f"{name}: zero-length embedding in row(s) {np.flatnonzero(norm[:, 0] == 0)[:10].tolist()}")
    return x / norm


def parse_joint_spec(spec: str | None) -> tuple[str | None, str | None]:
    """``--joint`` value → (registry name, weights path): a registered name (``mulan-ref``), ``NAME:CKPT``
    (``clap:<checkpoint.pt>``) or a MuLan checkpoint path; None stays None (no MCC)."""
    from metrics.models import JOINT

    if spec is None:
        return None, None
    name, sep, path = spec.partition(":")
    if sep and name in JOINT:
        return name, path
    if spec in JOINT:
        return spec, None
    if Path(spec).exists():
        return "mulan-ref", spec
    raise JointModelError(f"unknown joint model {spec!r}: not 'mulan-ref', 'clap:<ckpt>' or an existing checkpoint file")


class MCC(PerClipOutputs):
    """MuLan Cycle Consistency as a ``Metric``: caption embeddings (reference side) vs audio (generated side).

    The reference side holds each caption's text embedding ``[dim]``; the generated side each clip's
    window embeddings ``[windows, dim]`` from the joint model's audio tower. A clip's audio embedding
    is the mean of its windows, L2-normalized (the paper's MuLan protocol); MCC is the mean cosine
    over clips paired by id, with per-clip values.
    """

    name = "mcc"
    output = "joint"
    higher_is_better = True  # a cosine between caption and audio embeddings
    interval_method = "jackknife"  # a mean of per-clip values: the t interval and the paired t-test
    bounds = (-1.0, 1.0)

    def __init__(self, joint_id: str = "", n_boot: int = 1000, seed: int = 0):
        self.joint_id = joint_id
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        return {"joint": self.joint_id}

    def cosines(self) -> dict[str, float]:
        ids = self.paired_ids()
        lacking = sorted(set(self.outputs["generated"]) - set(self.outputs["reference"]))
        if lacking:
            raise PairingError(f"{len(lacking)} generated clip(s) have no caption: {', '.join(lacking[:20])}"
                               f"{' …' if len(lacking) > 20 else ''}")
        if not ids:
            raise PairingError("MCC: no clip has both a caption and audio")
        text = _unit(np.stack([np.asarray(self.outputs["reference"][i], np.float64).reshape(-1) for i in ids]),
                     "text embeddings")
        audio = _unit(np.stack([np.asarray(self.outputs["generated"][i], np.float64).reshape(-1, text.shape[1]).mean(0)
                                for i in ids]), "audio embeddings")
        return dict(zip(ids, map(float, (text * audio).sum(-1))))

    def ids(self, side: str) -> list[str]:
        return sorted(self.outputs["generated"])

    def value_on_counts(self, ref_counts: np.ndarray, gen_counts: np.ndarray) -> np.ndarray:
        cos = self.cosines()
        c = np.array([cos[i] for i in self.ids("generated")])
        w = np.asarray(gen_counts, dtype=np.float64)
        return (w @ c) / w.sum(axis=1)

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float:
        cos = self.cosines()
        return float(np.mean([cos[i] for i in gen_ids]))

    def compute(self) -> MetricResult:
        cos = self.cosines()
        value = float(np.mean(list(cos.values())))
        return self.result(value, cos, {"n_pairs": len(cos), "joint": self.joint_id})

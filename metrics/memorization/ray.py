"""The audit on Ray: the same plan, one Ray task per shard of whole training clips, merged on the driver.

Uses only the public per-shard API (:func:`~metrics.memorization.audit.prepare_audit` →
:func:`~metrics.memorization.audit.run_shard` per shard → :func:`~metrics.memorization.audit.finish_audit`):
τ is calibrated on the driver, each task finds *every* window pair below τ in its shard (the search is
exact, so no pair depends on which shard it is in), and :func:`merge_hits`' total-order tie-breaks
make the result independent of shard order. Batched Sinkhorn costs depend on their batch mates at ~1e-9.
"""

from __future__ import annotations

import dataclasses
import os

from metrics.memorization.audit import AuditResult, finish_audit, prepare_audit, run_shard
from metrics.memorization.search import PairHits, shard_clips


def _shard_task(plan, shard: dict) -> PairHits:
    os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")  # POT would import TensorFlow (~4 s) otherwise
    return run_shard(plan, shard)


def ray_audit(engine, generated, train, centroids=None, *args, shards: int | None = None, **kw) -> AuditResult:
    """``metrics.memorization.audit`` as a distributed join (same arguments; ``shards=`` sets the fan-out)."""
    from metrics.engine import import_ray

    ray = import_ray()
    plan = prepare_audit(generated, train, centroids, *args, **kw)
    whole = {cid: seq for s in plan.shards for cid, seq in s.items()}
    n_shards = shards or 2 * int(ray.cluster_resources().get("CPU", 1))
    task = ray.remote(num_cpus=1, max_retries=getattr(engine, "max_retries", 3))(_shard_task)  # inputs immutable: safe to re-run
    plan_ref = ray.put(dataclasses.replace(plan, shards=[]))  # each task gets its own shard
    refs = [task.remote(plan_ref, part) for part in shard_clips(whole, n_shards)]
    return finish_audit(plan, PairHits.concat(ray.get(refs)))

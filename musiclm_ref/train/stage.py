"""The training loop of one stage: AdamW with warm-up and cosine decay on random crops, exact resume,
data-parallel under ``torchrun`` (``musiclm_ref.distributed``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from metrics.artifacts import save_checkpoint
from musiclm_ref.stages import SEP, Stage, StageError, read_stage_checkpoint
from musiclm_ref.token_corpus import TokenCorpus, sample_batch


@dataclass
class StageTrainConfig:
    steps: int = 2000
    batch: int = 16  # the global batch: with W processes each takes batch / W rows (musiclm_ref.distributed)
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    checkpoint_every: int = 250
    eval_batches: int = 4
    precision: str = "fp32"  # or "bf16": autocast for forward + loss (GPU training at the paper's size)
    grad_checkpoint: bool = False  # recompute each block in backward: keeps only block inputs, costs one more forward


class CorpusBatches:
    """The default batch source: random crops of a token corpus (``sample_batch``). Every rank draws the
    global batch from the shared generator and keeps its rows, so its data position is the generator's
    state and a run resumes with any number of processes."""

    def __init__(self, corpus: TokenCorpus, batch: int):
        self.corpus, self.batch = corpus, batch

    def __call__(self, stage: Stage, g: torch.Generator, ctx) -> tuple[Tensor, Tensor, Tensor | None]:
        return ctx.shard(*sample_batch(stage, self.corpus, self.batch, g))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def evaluate_stage(stage: Stage, corpus: TokenCorpus, batches: int = 4, batch: int = 16, seed: int = 123) -> float:
    """Mean held-out cross-entropy (nats/token) over seeded random crops, conditioning dropout off."""
    g = torch.Generator().manual_seed(seed)
    saved = stage.config
    stage.config = replace(saved, cond_dropout=0.0, melody_dropout=0.0)
    device = next(stage.parameters()).device
    try:
        stage.eval()
        with torch.no_grad():
            losses = [float(stage.loss(*_to(sample_batch(stage, corpus, batch, g), device))) for _ in range(batches)]
    finally:
        stage.config = saved
    return sum(losses) / len(losses)


def _to(batch: tuple, device) -> tuple:
    return tuple(t.to(device, non_blocking=True) if t is not None else None for t in batch)


def fit_stage(stage: Stage, corpus: TokenCorpus | None, cfg: StageTrainConfig, out_path=None, held_out: TokenCorpus | None = None,
                progress: bool = True, metadata: dict | None = None, ctx=None, source=None, stop_at: int | None = None,
                on_step=None) -> dict:
    """AdamW with linear warm-up and cosine decay on random crops; resumes from ``out_path`` if it holds a
    checkpoint of the same stage.

    An interrupted checkpoint (every ``checkpoint_every`` steps, or at ``stop_at``: a preemptible job's
    time slice) restores weights, optimizer, step (the schedule is a function of it), the crop
    generator, torch's RNG (dropout), the batch source's data position and the loss history, so the
    resumed run ends with the weights an uninterrupted one would have. ``ctx`` (``distributed.from_env``)
    makes this one of several data-parallel processes; ``source`` replaces the token corpus as the batch
    source (``musiclm_ref.data.folder.StreamingBatches``); ``on_step(step, loss)`` sees the loss averaged
    over the processes after every step.
    """
    from pathlib import Path

    from tqdm import tqdm

    from musiclm_ref import distributed

    ctx = ctx or distributed.DistContext(device=str(next(stage.parameters()).device))
    ctx.check_batch(cfg.batch)
    distributed.check_precision(cfg.precision, ctx.device)
    source = source or CorpusBatches(corpus, cfg.batch)
    opt = torch.optim.AdamW(stage.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    g = torch.Generator().manual_seed(cfg.seed)
    step, history, running = 0, [], None
    out_path = Path(out_path) if out_path is not None else None
    if out_path is not None and out_path.exists():
        ckpt = read_stage_checkpoint(out_path)
        meta = ckpt.get("metadata", {})
        state = meta.get("train_state")
        stage.net.load_state_dict(ckpt["state_dict"])
        if state is not None:  # an interrupted run: continue exactly where it stopped
            opt.load_state_dict(state["optimizer"])
            g.set_state(state["rng"])
            step, history, running = int(state["step"]), list(state["history"]), state.get("running")
            _restore_rank_state(state, ctx, source, out_path)
        else:  # a finished run: more steps continue from its weights with a fresh optimizer
            step, history = int(meta.get("step", 0)), list(meta.get("loss_history", []))
            g.manual_seed(cfg.seed + step)
    elif ctx.active:
        torch.manual_seed(cfg.seed + 1 + ctx.rank)  # dropout masks differ between ranks
    model = distributed.wrap(stage.net, ctx)
    stage.net.grad_checkpoint = cfg.grad_checkpoint

    def lr_at(s: int) -> float:
        if s < cfg.warmup:
            return cfg.lr * (s + 1) / cfg.warmup
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - cfg.warmup) / max(1, cfg.steps - cfg.warmup))))

    def save(final: bool) -> None:
        if out_path is None:
            return
        meta = {**(metadata or {}), "step": step, "loss_history": history, "train_state": None}
        if not final:  # collective: every rank contributes its data position and RNG state
            ranks = ctx.gather({"data": source.state_dict(), "torch_rng": distributed.rng_state(ctx.device)})
            meta["train_state"] = {"optimizer": opt.state_dict(), "rng": g.get_state(), "step": step, "history": history,
                                   "running": running, "world": ctx.world, "ranks": ranks}
        if ctx.is_main:
            save_checkpoint(stage.to_checkpoint(meta), out_path)
        ctx.barrier()

    stage.train()
    end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"{stage.config.stage} stage", disable=not (progress and ctx.is_main))
    while step < end:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        batch = _to(source(stage, g, ctx), ctx.device)
        with distributed.autocast(cfg.precision, ctx.device):
            loss = stage.loss(*batch, net=model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(stage.net.parameters(), 1.0)
        opt.step()
        step += 1
        value = float(ctx.mean(loss))
        if on_step is not None:
            on_step(step, value)
        running = value if running is None else 0.95 * running + 0.05 * value
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}")
        if step % 50 == 0 or step == cfg.steps:
            history.append([step, round(running, 4)])
        if (step % cfg.checkpoint_every == 0 or step == end) and step < cfg.steps:
            save(final=False)
    bar.close()
    stage.net.grad_checkpoint = False
    stage.eval()
    metrics = {"train_loss": history[-1][1] if history else None, "steps": step}
    if step < cfg.steps:
        return {**metrics, "stopped_at": step}
    if held_out is not None and len(held_out.ids) and ctx.is_main:
        metrics["held_out_loss"] = evaluate_stage(stage, held_out, cfg.eval_batches, cfg.batch)
    save(final=True)
    return metrics


def _restore_rank_state(state: dict, ctx, source, path) -> None:
    """This rank's data position and torch RNG from an interrupted checkpoint."""
    from musiclm_ref import distributed

    ranks = state.get("ranks")
    if not ranks:  # written before per-rank state was recorded
        return
    if len(ranks) != ctx.world:
        if any(r["data"] for r in ranks):
            raise StageError(f"{path}: interrupted with {len(ranks)} processes, resumed with {ctx.world}; the streaming "
                             f"data position is per process, so resume with --nproc_per_node giving {len(ranks)} in all")
        return  # the token corpus position lives in the shared generator: any world size resumes it
    source.load_state_dict(ranks[ctx.rank]["data"])
    distributed.set_rng_state(ranks[ctx.rank]["torch_rng"], ctx.device)


def warm_start(stage: Stage, path, reinit: tuple[str, ...] = ()) -> dict:
    """Initialize ``stage`` from the stage checkpoint at ``path`` where the two agree: every weight of the same
    shape, and the embedding / output rows of each token type both vocabularies have (by name, so a vocabulary
    grown by a block — the coarse stage's chroma tokens — keeps what was learned). Types in ``reinit`` keep
    their fresh rows (e.g. "semantic" when the tokenizer changed: old ids would mean other clusters).
    Returns what was copied, for the manifest. Write the result with ``metadata={"step": 0}`` and ``train
    stage`` continues it as a finished run: fresh optimizer, warm-up and the whole cosine schedule."""
    old = Stage.from_checkpoint(read_stage_checkpoint(path), str(path))
    new_sd, old_sd = stage.net.state_dict(), old.net.state_dict()
    rows = {"embed.weight", "to_logits.weight"}
    copied = [k for k in new_sd if k not in rows and k in old_sd and old_sd[k].shape == new_sd[k].shape]
    with torch.no_grad():
        for k in copied:
            new_sd[k].copy_(old_sd[k])
        types = [t for t in stage.vocab if t in old.vocab and t not in reinit and stage.vocab[t][1] == old.vocab[t][1]]
        for k in rows:
            new_sd[k][:3].copy_(old_sd[k][:3])  # PAD, NULL, SEP
            for t in types:
                (a, n), (b, _) = stage.vocab[t], old.vocab[t]
                new_sd[k][a : a + n].copy_(old_sd[k][b : b + n])
    stage.net.load_state_dict(new_sd)
    if stage.net.config.clock:
        stage.net.set_clock(stage.clock_ticks(), [SEP])
    return {"from": str(path), "weights": len(copied), "token_types": types, "reinitialized": list(reinit)}

"""The stage training loop: exact mid-run resume, gradient checkpointing, bf16 autocast.

- Resume: a run stopped at step k (``stop_at``, a preemptible job's time slice) and resumed from its
  checkpoint ends with the weights and losses of the uninterrupted run. The micro stage has dropout
  on, so this holds only if torch's RNG is restored along with optimizer, schedule step and crop
  generator.
- Gradient checkpointing recomputes every block in backward (counted with a forward hook) and gives
  the gradients of the plain backward (dropout masks replayed from the saved RNG state).
- bf16 autocast on CPU: runs, stays close to fp32, and is not secretly fp32.
"""

from __future__ import annotations

import pytest
import torch
from training_fixtures import max_weight_diff, micro_stage, random_corpus, weights

from musiclm_ref.token_corpus import sample_batch
from musiclm_ref.train.stage import StageTrainConfig, fit_stage

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CFG = StageTrainConfig(steps=6, batch=4, warmup=2, lr=3e-3, checkpoint_every=10**6)


def _run(path, stop_at=None, **cfg):
    stage, losses = micro_stage("coarse", dropout=0.1), []
    metrics = fit_stage(stage, random_corpus(), StageTrainConfig(**{**CFG.__dict__, **cfg}), path, progress=False,
                          stop_at=stop_at, on_step=lambda s, v: losses.append((s, v)))
    return stage, losses, metrics


def test_a_run_stopped_mid_way_and_resumed_ends_with_the_uninterrupted_weights(tmp_path):
    full, full_losses, _ = _run(tmp_path / "full.pt")
    _, first, m = _run(tmp_path / "cut.pt", stop_at=3)
    assert m["stopped_at"] == 3 and "held_out_loss" not in m
    ckpt = torch.load(tmp_path / "cut.pt", weights_only=True)["metadata"]
    assert ckpt["step"] == 3 and ckpt["train_state"]["world"] == 1 and "torch_rng" in ckpt["train_state"]["ranks"][0]
    resumed, rest, m2 = _run(tmp_path / "cut.pt")  # fresh weights: replaced by the checkpoint's
    assert m2["steps"] == 6 and [s for s, _ in first + rest] == list(range(1, 7))
    assert [v for _, v in first + rest] == pytest.approx([v for _, v in full_losses], abs=1e-6)
    assert max_weight_diff(weights(resumed), weights(full)) < 1e-6
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["metadata"]["train_state"] is None  # finished
    # the control: dropout draws from torch's RNG, so a resume that did not restore it would diverge
    torch.manual_seed(99)
    stage = micro_stage("coarse", dropout=0.1)
    stage.net.load_state_dict(weights(full))
    stage.train()
    a = stage.loss(*sample_batch(stage, random_corpus(), 4, torch.Generator().manual_seed(0)))
    b = stage.loss(*sample_batch(stage, random_corpus(), 4, torch.Generator().manual_seed(0)))
    assert abs(float(a.detach()) - float(b.detach())) > 1e-6


def _grads(stage, batch, checkpoint: bool, monkeypatch):
    from musiclm_ref.transformer import Block

    stage.net.zero_grad(set_to_none=True)
    stage.net.grad_checkpoint = checkpoint
    calls, forward = [], Block.forward
    monkeypatch.setattr(Block, "forward", lambda self, *a: calls.append(1) or forward(self, *a))
    torch.manual_seed(7)
    loss = stage.loss(*batch)
    loss.backward()
    monkeypatch.undo()
    return float(loss.detach()), {n: p.grad.clone() for n, p in stage.net.named_parameters() if p.grad is not None}, len(calls)


@pytest.mark.parametrize("name", ["semantic", "fine"])
def test_gradient_checkpointing_recomputes_blocks_and_gives_the_same_gradients(name, monkeypatch):
    stage = micro_stage(name, dropout=0.1).train()
    batch = sample_batch(stage, random_corpus(), 4, torch.Generator().manual_seed(1))
    loss0, g0, calls0 = _grads(stage, batch, False, monkeypatch)
    loss1, g1, calls1 = _grads(stage, batch, True, monkeypatch)
    depth = len(stage.net.blocks)
    assert (calls0, calls1) == (depth, 2 * depth)  # each block ran again in backward
    assert loss1 == pytest.approx(loss0, abs=1e-6)
    assert g0.keys() == g1.keys() and max(float((g0[k] - g1[k]).abs().max()) for k in g0) < 1e-6
    stage.eval()  # sampling (no grad) never checkpoints
    with torch.no_grad():
        stage.net(torch.full((1, 4), 5))


def test_bf16_autocast_on_cpu_trains_close_to_fp32_and_is_really_bf16(tmp_path):
    from musiclm_ref import distributed

    stage = micro_stage("coarse")
    batch = sample_batch(stage, random_corpus(), 4, torch.Generator().manual_seed(1))
    with distributed.autocast("bf16", "cpu"):
        logits = stage.net(batch[0][:, :4])
        lb = stage.loss(*batch)
    assert logits.dtype == torch.bfloat16 and lb.dtype == torch.float32  # the loss itself is computed in fp32
    lb, lf = lb.detach(), stage.loss(*batch).detach()
    assert float(lb) != float(lf) and float(lb) == pytest.approx(float(lf), rel=2e-2)
    _, fp32, _ = _run(None)
    _, bf16, _ = _run(None, precision="bf16", grad_checkpoint=True)
    assert max(abs(a - b) for (_, a), (_, b) in zip(fp32, bf16)) < 0.05


def test_precision_and_device_errors_say_what_to_change():
    from musiclm_ref.distributed import DistributedError, check_precision, from_env

    with pytest.raises(DistributedError, match="unknown precision 'fp16'; choose one of fp32, bf16"):
        check_precision("fp16", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DistributedError, match="--device cuda was given but torch sees no CUDA device"):
            from_env("cuda")

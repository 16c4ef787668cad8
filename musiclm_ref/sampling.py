"""Autoregressive sampling for the three stages: plain temperature sampling, as the paper does it.

MusicLM samples with temperatures 1.0 (semantic), 0.95 (coarse) and 0.4 (fine) and nothing else:
no top-k, no nucleus, no classifier-free guidance. Open reimplementations often add those (and use one
temperature everywhere); here they exist only as options, off by default, so a run that uses them
says so in its settings.

Every generated position has a *token type* (a semantic token, acoustic level 3, …) that owns a
contiguous range of the stage's vocabulary; logits outside that range are masked, so a sample can
never be a token of the wrong kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from musiclm_ref.transformer import KVCache, Transformer

# The paper's temperatures (MusicLM §3.3 / AudioLM).
DEFAULT_TEMPERATURES: dict[str, float] = {"semantic": 1.0, "coarse": 0.95, "fine": 0.4}


@dataclass(frozen=True)
class SamplingConfig:
    """How one stage turns logits into tokens. ``temperature=0`` (or ``greedy``) means argmax."""

    temperature: float = 1.0
    greedy: bool = False
    top_k: int | None = None
    top_p: float | None = None
    cfg_scale: float | None = None  # classifier-free guidance; None = off (the paper's setting)

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be ≥ 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be ≥ 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")

    def as_dict(self) -> dict:
        return asdict(self)


def default_config(stage: str, **overrides) -> SamplingConfig:
    if stage not in DEFAULT_TEMPERATURES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(DEFAULT_TEMPERATURES)}")
    return SamplingConfig(temperature=DEFAULT_TEMPERATURES[stage], **overrides)


def sample_logits(logits: Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None) -> Tensor:
    """logits [B, V] (the allowed range only) → tokens [B] in [0, V)."""
    if cfg.greedy or cfg.temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / cfg.temperature
    if cfg.top_k is not None:
        kth = logits.topk(min(cfg.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p is not None:
        sorted_logits, order = logits.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= cfg.top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    # inverse-CDF draw: one uniform per row from the seeded generator (much faster than
    # torch.multinomial on CPU, and the same draws whatever path computed the logits)
    cdf = logits.softmax(-1).cumsum(-1)
    u = torch.rand(logits.shape[0], 1, generator=generator, device=logits.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=logits.shape[-1] - 1)


@torch.no_grad()
def generate(
    model: Transformer,
    prompt: Tensor,
    ranges: Sequence[tuple[int, int]],
    cfg: SamplingConfig = SamplingConfig(),
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    uncond_prompt: Tensor | None = None,
) -> Tensor:
    """Continue ``prompt`` [B, n] by ``len(ranges)`` tokens; step i samples from vocabulary ``ranges[i]``.

    Returns only the new tokens [B, len(ranges)]. ``uncond_prompt`` (same shape, conditioning replaced
    by null tokens) is needed only for classifier-free guidance (``cfg.cfg_scale``).
    """
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be a non-empty [batch, length] tensor, got shape {tuple(prompt.shape)}")
    guided = cfg.cfg_scale is not None
    if guided and (uncond_prompt is None or uncond_prompt.shape != prompt.shape):
        raise ValueError("classifier-free guidance needs an uncond_prompt of the prompt's shape")
    was_training = model.training
    model.eval()
    batch = prompt.shape[0]
    seq = torch.cat([prompt, uncond_prompt]) if guided else prompt
    cache = KVCache() if use_cache else None
    out = []
    step_input = seq
    for lo, hi in ranges:
        if use_cache:
            logits = model(step_input, cache)[:, -1]
        else:
            logits = model(seq)[:, -1]
        if guided:
            cond, uncond = logits[:batch], logits[batch:]
            logits = uncond + cfg.cfg_scale * (cond - uncond)
        token = sample_logits(logits[:, lo:hi], cfg, generator) + lo
        out.append(token)
        step_input = (torch.cat([token, token]) if guided else token)[:, None]
        if not use_cache:
            seq = torch.cat([seq, step_input], dim=1)
    model.train(was_training)
    return torch.stack(out, dim=1) if out else prompt.new_zeros(batch, 0)

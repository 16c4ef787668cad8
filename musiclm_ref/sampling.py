"""Autoregressive sampling for the three stages: plain temperature sampling, as the paper does it.

MusicLM samples with temperatures 1.0 (semantic), 0.95 (coarse) and 0.4 (fine) and nothing else:
no top-k, no nucleus, no classifier-free guidance. Open reimplementations often add those (and use one
temperature everywhere); here they exist only as options, off by default, so a run that uses them
says so in its settings.

Every generated position has a *token type* (a semantic token, acoustic level 3, …) that owns a
contiguous range of the stage's vocabulary; logits outside that range are masked, so a sample can
never be a token of the wrong kind.

Batch invariance: ``generate`` takes one generator per row (``item_generator(seed, key, stream)``, a
stream derived from the seed and the item's id) and draws each row's uniforms from its own stream,
and it runs the Transformer with ``batch_invariant`` (fixed-shape row tiles, ``row_tile``, or every
item its own matrix products with ``row_tile=0``), so a row's tokens are the same bit for bit whatever
other rows share the batch, in whatever order.

Classifier-free guidance (Ho & Salimans 2022; MusicGen uses it, the MusicLM paper does not): logits
``uncond + s · (cond − uncond)`` from a second, unconditional copy of each prompt in the same batch,
with its own KV cache rows. Computed as ``cond + (s − 1) · (cond − uncond)`` (the same function), so
``s = 1`` returns the conditional logits exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from musiclm_ref.transformer import ROW_TILE, KVCache, Transformer

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
        if self.cfg_scale is not None and not (isinstance(self.cfg_scale, int | float) and self.cfg_scale >= 0):
            raise ValueError(f"cfg_scale must be ≥ 0 (1 = conditional, 0 = unconditional), got {self.cfg_scale}")
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


def item_generator(seed: int, key: str, stream: str = "") -> torch.Generator:
    """A CPU generator seeded from (seed, item key, stream) by SHA-256: the item's own random stream.

    ``stream`` separates the uses of one item (``"semantic"``, ``"coarse"``, ``"fine/3"`` …) so that
    they draw independent numbers; the key is the item's id, never its position in a batch.
    """
    digest = hashlib.sha256(f"{int(seed)}\x00{stream}\x00{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


Generators = torch.Generator | Sequence[torch.Generator] | None


def sample_logits(logits: Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None,
                  uniforms: Tensor | None = None) -> Tensor:
    """logits [B, V] (the allowed range only) → tokens [B] in [0, V).

    The draw is by inverse CDF from one uniform per row: ``uniforms`` [B] if given (per-row streams),
    else ``torch.rand(B)`` from ``generator``. Every operation is row-wise, so a row's token depends
    only on its own logits and uniform.
    """
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
    # inverse-CDF draw (much faster than torch.multinomial on CPU, and the same draws whatever path
    # computed the logits)
    cdf = logits.softmax(-1).cumsum(-1)
    if uniforms is None:
        uniforms = torch.rand(logits.shape[0], generator=generator)
    u = uniforms.to(logits.device, torch.float32)[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=logits.shape[-1] - 1)


@torch.no_grad()
def generate(
    model: Transformer,
    prompt: Tensor,
    ranges: Sequence[tuple[int, int]],
    cfg: SamplingConfig = SamplingConfig(),
    generator: Generators = None,
    use_cache: bool = True,
    uncond_prompt: Tensor | None = None,
    batch_invariant: bool = True,
    row_tile: int = ROW_TILE,
) -> Tensor:
    """Continue ``prompt`` [B, n] by ``len(ranges)`` tokens; step i samples from vocabulary ``ranges[i]``.

    Returns only the new tokens [B, len(ranges)]. ``generator``: one per row (each row draws from its
    own stream: batch-invariant), or one shared by the batch (draws depend on the batch), or None.
    ``uncond_prompt`` (same shape, conditioning replaced by the NULL tokens training drops it to) is
    needed only for classifier-free guidance (``cfg.cfg_scale``). ``batch_invariant`` runs the model
    with batch-independent matrix products (``Transformer.batch_invariant``): fixed-shape tiles of
    ``row_tile`` rows, or one product per item with ``row_tile=0`` (the slower fallback route).
    """
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be a non-empty [batch, length] tensor, got shape {tuple(prompt.shape)}")
    guided = cfg.cfg_scale is not None
    if guided and (uncond_prompt is None or uncond_prompt.shape != prompt.shape):
        raise ValueError("classifier-free guidance needs an uncond_prompt of the prompt's shape")
    batch = prompt.shape[0]
    uniforms = None
    if generator is not None and not isinstance(generator, torch.Generator):
        gens = list(generator)
        if len(gens) != batch:
            raise ValueError(f"got {len(gens)} generators for a batch of {batch} rows (one per row, or one for all)")
        if not (cfg.greedy or cfg.temperature == 0):  # greedy decoding draws nothing
            uniforms = torch.stack([torch.rand(len(ranges), generator=g) for g in gens]).to(prompt.device)
        generator = None
    was_training, was_invariant, was_tile = model.training, model.batch_invariant, model.row_tile
    model.eval()
    model.batch_invariant, model.row_tile = batch_invariant, row_tile
    seq = torch.cat([prompt, uncond_prompt.to(prompt.device)]) if guided else prompt
    cache = KVCache() if use_cache else None
    out = []
    step_input = seq
    try:
        for i, (lo, hi) in enumerate(ranges):
            if use_cache:
                logits = model(step_input, cache)[:, -1]
            else:
                logits = model(seq)[:, -1]
            if guided:
                cond, uncond = logits[:batch].float(), logits[batch:].float()
                logits = cond + (cfg.cfg_scale - 1) * (cond - uncond)  # = uncond + s·(cond − uncond)
            u = uniforms[:, i] if uniforms is not None else None
            token = sample_logits(logits[:, lo:hi], cfg, generator, u) + lo
            out.append(token)
            step_input = (torch.cat([token, token]) if guided else token)[:, None]
            if not use_cache:
                seq = torch.cat([seq, step_input], dim=1)
    finally:
        model.train(was_training)
        model.batch_invariant, model.row_tile = was_invariant, was_tile
    return torch.stack(out, dim=1) if out else prompt.new_zeros(batch, 0)

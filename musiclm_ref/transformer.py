"""Decoder-only Transformer with T5-style relative position bias and a KV cache.

MusicLM (like AudioLM) uses decoder-only Transformers for all three stages. What this file pins down:

- T5 relative position bias (Raffel et al. 2020): one learned scalar per head and per *bucket* of the
  causal distance q−k (exact buckets for short distances, log-spaced up to ``rel_max_distance``),
  computed once and shared by all layers. It has no absolute positions, so a window of the sequence
  is modelled the same wherever it sits — which is what makes windowed long generation sound.
- Pre-norm blocks with RMSNorm and a gated-GELU feed-forward (T5 v1.1). With the paper's sizes
  (24 layers, 16 heads, width 1024, FFN 4096) this gives ≈430M parameters per stage, the figure the
  paper reports, which a plain two-matrix FFN (≈300M) would not.
- A KV cache (``KVCache``) so sampling costs O(n) per new token instead of O(n²); the cached path
  computes the same function as the full forward (tested: same logits, same sampled tokens).
- An optional *clock* (``clock=True``; our addition, used by the tiny coarse stage): a sinusoidal
  embedding of each token's time within its section, added to the token embedding. Token types
  advance the clock (``ticks``: a semantic token 4, the last level of an acoustic frame 2, in units of
  10 ms) and SEP restarts it, so S_k and A_{2k} get the same time. A relative bias cannot align the
  two streams (their distance grows with t, 3.5 positions per frame in the coarse layout), and a
  model the size of ours does not learn content-based alignment in CPU-scale training; with the
  clock, matching times is a dot product of sinusoids. The clock is computed causally from the
  tokens alone, so it needs no extra input and the KV cache carries it (``KVCache.clock``).
- ``batch_invariant`` (sampling sets it): a row's logits are bit-equal to that row computed alone,
  whatever else is in the batch. With ``row_tile`` T > 0 (the default, ``ROW_TILE``) every linear layer
  folds all rows of the batch into fixed-shape T-row tiles (``tiled_matmul``) and attention is explicit
  matmul/softmax/matmul with one product per (item, head): throughput grows with the batch. With
  ``row_tile = 0`` (the fallback, the route before issue #28) every item gets its own matrix product
  and attention is ``scaled_dot_product_attention``; that route reproduces earlier outputs bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import Tensor, nn

from musiclm_ref.presets import get_preset


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int
    dim: int = 1024
    depth: int = 24
    heads: int = 16
    ff_dim: int = 4096
    dropout: float = 0.1
    rel_buckets: int = 32
    rel_max_distance: int = 128
    clock: bool = False

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size must be positive, got {self.vocab_size}")

    @property
    def dim_head(self) -> int:
        return self.dim // self.heads


def preset(name: str, vocab_size: int, **overrides) -> TransformerConfig:
    """A stage Transformer of a named size (``musiclm_ref.presets``), with ``overrides``."""
    return replace(TransformerConfig(vocab_size=vocab_size, **get_preset(name, "transformer").transformer), **overrides)


def count_parameters(cfg: TransformerConfig) -> int:
    """Parameters of a config, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = Transformer(cfg)
    return sum(p.numel() for p in model.parameters())


# -- pieces -------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def relative_bucket(relative: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """T5's causal bucketing of ``relative = key_pos - query_pos`` (≤ 0 for visible keys).

    Distances below ``num_buckets // 2`` get their own bucket; larger ones share log-spaced buckets
    up to ``max_distance``; everything beyond falls in the last bucket.
    """
    n = (-relative).clamp(min=0)
    max_exact = num_buckets // 2
    large = max_exact + (
        torch.log(n.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).long()
    large = large.clamp(max=num_buckets - 1)
    return torch.where(n < max_exact, n, large)


class RelativePositionBias(nn.Module):
    def __init__(self, heads: int, num_buckets: int, max_distance: int):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.bias = nn.Embedding(num_buckets, heads)

    def forward(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """[heads, n_q, n_k] additive bias, −inf where the key lies in the query's future."""
        rel = k_pos[None, :] - q_pos[:, None]
        bias = rearrange(self.bias(relative_bucket(rel, self.num_buckets, self.max_distance)), "q k h -> h q k")
        return bias.masked_fill(rel > 0, float("-inf"))


ROW_TILE = 8  # rows per fixed-shape product in batch-invariant sampling (``tiled_matmul``); 0 = per item


def tiled_matmul(x: Tensor, w: Tensor, tile: int) -> Tensor:
    """x [R, d] @ w [d, k] → [R, k], computed as ⌈R/tile⌉ products of one fixed shape [tile, d] × [d, k].

    Why: a row's result from one [R, d] GEMM depends on R in the last bits (MKL on AVX2: R = 1, R ∈ {2, 3}
    and R ≥ 4 are three different kernels), so a row would differ alone and in a batch. Here every
    product has the same shape whatever R is (the last tile is zero-padded), so the only assumption is
    that within one fixed-shape GEMM a row's result does not depend on its position in the tile or on
    the other rows — true of BLAS kernels (each output is the same chain of multiply-adds over d), and
    checked by tests/test_sampling_invariance.py on the tiny and paper shapes, every tile position,
    with 1 and 2 threads. One batched call over the tiles costs about one GEMM per 8 rows instead of
    one per row (the per-item route, ``tile = 0``).
    """
    rows = x.shape[0]
    pad = -rows % tile
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    tiles = x.reshape(-1, tile, x.shape[1])
    return torch.bmm(tiles, w.expand(tiles.shape[0], *w.shape)).reshape(-1, w.shape[1])[:rows]


class ItemLinear(nn.Linear):
    """``nn.Linear`` whose rows can be computed independently of the batch (``per_item``).

    A [B, n, d] input folded into one [B·n, d] GEMM (what ``nn.Linear`` does) gives each row a result
    whose last bits depend on B: the BLAS kernel's blocking and reduction order change with the row
    count (on MKL, B=1 and B=3 differ in the last bits). With ``per_item`` the rows go through
    fixed-shape tiles of ``tile`` rows (``tiled_matmul``) or, with ``tile = 0``, one [n, d] × [d, k]
    problem per item; either way each row is computed exactly as it would be alone, so sampling with
    ``Transformer.batch_invariant`` gives the same logits — bit for bit — whatever else is in the batch.
    Same parameters and state-dict keys as ``nn.Linear``.
    """

    per_item = False
    tile = ROW_TILE

    def forward(self, x: Tensor) -> Tensor:
        if not self.per_item or x.ndim != 3:
            return super().forward(x)
        w = self.weight.t()
        if self.tile:
            out = tiled_matmul(x.reshape(-1, x.shape[-1]), w, self.tile).reshape(*x.shape[:-1], w.shape[1])
        else:
            out = torch.bmm(x, w.expand(x.shape[0], *w.shape))
        return out if self.bias is None else out + self.bias


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """softmax(q kᵀ/√d + bias) v with one matrix product per (item, head): row-wise like SDPA, but its
    products are identical per-item problems (batch-invariant), and on CPU ≈3× faster than SDPA's
    kernel at 20 items × 500 keys with one query (the sampling step)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5 + bias
    return torch.matmul(scores.softmax(-1), v)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.to_qkv = ItemLinear(cfg.dim, 3 * cfg.dim, bias=False)
        self.to_out = ItemLinear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: Tensor, bias: Tensor, cache: KVCache | None, layer: int) -> Tensor:
        q, k, v = rearrange(self.to_qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        if cache is not None:
            k, v = cache.append(layer, k, v)
        if self.to_qkv.per_item and self.to_qkv.tile and not self.training:
            out = explicit_attention(q, k, v, bias.to(q.dtype))
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.dropout if self.training else 0.0
            )
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class FeedForward(nn.Module):
    """Gated GELU (T5 v1.1): GELU(x W_g) ⊙ (x W_v) then W_o."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.proj_in = ItemLinear(cfg.dim, 2 * cfg.ff_dim, bias=False)
        self.proj_out = ItemLinear(cfg.ff_dim, cfg.dim, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.proj_in(x).chunk(2, dim=-1)
        if self.proj_in.per_item:  # GELU on a strided view takes a batch-size-dependent kernel path on CPU
            gate, value = gate.contiguous(), value.contiguous()
        return self.proj_out(self.drop(F.gelu(gate) * value))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(cfg.dim), Attention(cfg)
        self.ff_norm, self.ff = RMSNorm(cfg.dim), FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, bias, cache, layer):
        x = x + self.drop(self.attn(self.attn_norm(x), bias, cache, layer))
        return x + self.drop(self.ff(self.ff_norm(x)))


class KVCache:
    """Keys and values of every layer for the positions seen so far (``length`` of them).

    Buffers grow by doubling and are written in place, so a sampling step copies only the new
    token's keys and values (not the whole history, as a ``torch.cat`` per step would).
    """

    def __init__(self):
        self.buffers: list[tuple[Tensor, Tensor]] = []
        self.length = 0  # positions committed by completed forward calls
        self._pending = 0
        self.clock: Tensor | None = None  # [B] the time of the next token (Transformer with clock=True)

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        start, n = self.length, k.shape[2]
        if layer == len(self.buffers):
            cap = max(64, 2 * (start + n))
            self.buffers.append((k.new_empty(*k.shape[:2], cap, k.shape[3]), v.new_empty(*v.shape[:2], cap, v.shape[3])))
        kb, vb = self.buffers[layer]
        if start + n > kb.shape[2]:
            cap = 2 * (start + n)
            kb = torch.cat([kb[:, :, :start], k.new_empty(*k.shape[:2], cap - start, k.shape[3])], dim=2)
            vb = torch.cat([vb[:, :, :start], v.new_empty(*v.shape[:2], cap - start, v.shape[3])], dim=2)
            self.buffers[layer] = (kb, vb)
        kb[:, :, start : start + n] = k
        vb[:, :, start : start + n] = v
        self._pending = n
        return kb[:, :, : start + n], vb[:, :, : start + n]

    def commit(self) -> None:
        self.length += self._pending
        self._pending = 0


# -- clock ----------------------------------------------------------------------------------------


def clock_times(ticks: Tensor, resets: Tensor, start: Tensor) -> tuple[Tensor, Tensor]:
    """Time of each token: ``start`` plus the ticks of the earlier tokens since the last reset token.

    ticks [B, n] (≥ 0), resets [B, n] bool, start [B] → (times [B, n], time of the next token [B]).
    The raw running sum is non-decreasing, so "its value just after the last reset" is a cummax.
    """
    after = start[:, None] + ticks.cumsum(1)  # raw clock just after each token
    before = after - ticks
    marks = torch.where(resets, after, torch.zeros_like(after)).cummax(1).values  # raw clock after the last reset ≤ i
    prev = F.pad(marks[:, :-1], (1, 0))
    return before - prev, after[:, -1] - marks[:, -1]


def sinusoid(times: Tensor, dim: int) -> Tensor:
    """[..., ] integer times → [..., dim] sin/cos features (Vaswani et al.), periods 2π … 2π·10⁴ units."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, device=times.device, dtype=torch.float32) / dim)
    angles = times.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


# -- model --------------------------------------------------------------------------------------


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.rel_pos = RelativePositionBias(cfg.heads, cfg.rel_buckets, cfg.rel_max_distance)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = RMSNorm(cfg.dim)
        self.to_logits = ItemLinear(cfg.dim, cfg.vocab_size, bias=False)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.clock:  # which token types advance / restart the clock: set by the owner (``set_clock``)
            self.register_buffer("ticks", torch.zeros(cfg.vocab_size, dtype=torch.long))
            self.register_buffer("resets", torch.zeros(cfg.vocab_size, dtype=torch.bool))
            self.clock_proj = ItemLinear(cfg.dim, cfg.dim, bias=False)
        self.grad_checkpoint = False  # a training-time switch (fit_stage sets it), not part of the config
        if self.embed.weight.device.type != "meta":
            self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def batch_invariant(self) -> bool:
        """Compute each batch item with its own matrix products (``ItemLinear.per_item``), so a row's
        logits do not depend on the other rows; sampling switches it on, training leaves it off."""
        return any(m.per_item for m in self.modules() if isinstance(m, ItemLinear))

    @batch_invariant.setter
    def batch_invariant(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, ItemLinear):
                m.per_item = bool(on)

    @property
    def row_tile(self) -> int:
        """Rows per fixed-shape product of the batch-invariant route (``ItemLinear.tile``); 0 = the
        item-by-item fallback (one product per item, SDPA attention: the outputs before issue #28)."""
        return next(m.tile for m in self.modules() if isinstance(m, ItemLinear))

    @row_tile.setter
    def row_tile(self, tile: int) -> None:
        if int(tile) < 0:
            raise ValueError(f"row_tile must be ≥ 0 (0 = one product per item), got {tile}")
        for m in self.modules():
            if isinstance(m, ItemLinear):
                m.tile = int(tile)

    @torch.no_grad()
    def set_clock(self, ticks: dict[int, int], resets: list[int]) -> None:
        """Token id → clock advance; ids that restart the clock. Only for ``clock=True`` models."""
        if not self.config.clock:
            raise ValueError("this Transformer has no clock (config.clock=False)")
        self.ticks.zero_()
        self.resets.zero_()
        if ticks:
            self.ticks[torch.tensor(list(ticks))] = torch.tensor(list(ticks.values()))
        self.resets[torch.tensor(list(resets), dtype=torch.long)] = True

    def forward(self, tokens: Tensor, cache: KVCache | None = None) -> Tensor:
        """tokens [B, n] → logits [B, n, vocab]. With ``cache``, ``tokens`` continue the cached positions
        and the cache is extended in place."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [batch, length], got shape {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.config.vocab_size}), got [{int(tokens.min())}, {int(tokens.max())}]"
            )
        start = cache.length if cache is not None else 0
        n = tokens.shape[1]
        pos = torch.arange(start + n, device=tokens.device)
        bias = self.rel_pos(pos[start:], pos)
        x = self.embed(tokens)
        if self.config.clock:
            start_t = cache.clock if cache is not None and cache.clock is not None else tokens.new_zeros(tokens.shape[0])
            times, next_t = clock_times(self.ticks[tokens], self.resets[tokens], start_t)
            x = x + self.clock_proj(sinusoid(times, self.config.dim).to(x.dtype))
            if cache is not None:
                cache.clock = next_t
        x = self.drop(x)
        checkpointed = self.grad_checkpoint and self.training and cache is None and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            if checkpointed:  # keep only the block's input; recompute its activations in backward (same RNG)
                x = torch.utils.checkpoint.checkpoint(block, x, bias, None, i, use_reentrant=False)
            else:
                x = block(x, bias, cache, i)
        if cache is not None:
            cache.commit()
        return self.to_logits(self.norm(x))

    # -- checkpoints: plain dicts, loadable with weights_only=True ---------------------------------
    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Transformer:
        model = cls(TransformerConfig(**d["config"]))
        model.load_state_dict(d["state_dict"])
        return model.eval()

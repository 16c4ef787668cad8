"""Residual vector quantization (SoundStream / AudioLM / MusicLM).

One generic module serves three users: the codec (12 levels over the encoder latents), MuLan
conditioning (12 x 1024 over 128-d embeddings) and melody conditioning (24 x 512). The training
recipe is SoundStream's, because it is what keeps a codebook alive without a codebook loss:

* **k-means init** — the first training batch (or ``fit``'s data) initialises each level with
  k-means on that level's residuals, so no code starts far from the data;
* **EMA updates** — codewords are exponential moving averages of the vectors assigned to them
  (no gradient reaches the codebook); the encoder is pulled towards its codes by the
  **commitment loss** and gets gradients through the straight-through estimator;
* **dead-code restarts** — a code whose EMA usage falls below ``dead_threshold`` is replaced by a
  random vector of the current batch, so the codebook capacity is not wasted.

``ResidualVQ.fit(vectors, iters, seed)`` trains it as a standalone quantizer on a fixed set of
vectors (level-by-level k-means on residuals), which is what conditioning quantizers need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RVQConfig", "ResidualVQ", "VectorQuantizer", "kmeans", "nearest"]


@dataclass
class RVQConfig:
    dim: int
    num_quantizers: int = 12
    codebook_size: int = 1024
    decay: float = 0.99
    commitment_weight: float = 1.0
    kmeans_init: bool = True
    kmeans_iters: int = 10
    dead_threshold: float = 2.0  # EMA usage (vectors per batch) under which a code is restarted
    eps: float = 1e-5


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is not None:
        g.manual_seed(int(seed))
    else:
        g.manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
    return g


def _sample(x: Tensor, n: int, g: torch.Generator) -> Tensor:
    """``n`` rows of ``x`` (without replacement when there are enough, else with)."""
    rows = x.shape[0]
    idx = torch.randperm(rows, generator=g)[:n] if rows >= n else torch.randint(rows, (n,), generator=g)
    return x[idx.to(x.device)]


def nearest(x: Tensor, codebook: Tensor, chunk: int = 16384) -> Tensor:
    """Index of the nearest codeword (squared Euclidean) for each row of ``x`` [N, D]."""
    c2 = codebook.pow(2).sum(-1)
    out = []
    for part in x.split(chunk):
        d = part.pow(2).sum(-1, keepdim=True) - 2 * part @ codebook.t() + c2
        out.append(d.argmin(-1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


@torch.no_grad()
def kmeans(x: Tensor, k: int, iters: int, g: torch.Generator, state: tuple[int, Tensor] | None = None,
           on_iter: Callable[[int, Tensor], None] | None = None) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means from a random sample of the data; empty clusters are re-seeded from data.

    Returns (centroids [k, D], counts [k]) — the counts of the final assignment. ``state``: (iterations
    done, centroids) of a run to continue, ``g`` already in that run's state; ``on_iter(done, centroids)``
    after each iteration (``train semantic`` saves its resume state there), so a killed fit continues exactly.
    """
    x = x.detach().float()
    start, c = state if state is not None else (0, _sample(x, k, g).clone())
    for i in range(start, iters):
        a = nearest(x, c)
        counts = torch.bincount(a, minlength=k)
        sums = torch.zeros_like(c).index_add_(0, a, x)
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp(min=1)[:, None].to(x.dtype))
        if empty.any():
            c[empty] = _sample(x, int(empty.sum()), g)
        if on_iter is not None:
            on_iter(i + 1, c)
    counts = torch.bincount(nearest(x, c), minlength=k)
    return c, counts


class VectorQuantizer(nn.Module):
    """One level: an EMA codebook with k-means init and dead-code restarts."""

    def __init__(self, cfg: RVQConfig):
        super().__init__()
        self.cfg = cfg
        k, d = cfg.codebook_size, cfg.dim
        self.register_buffer("codebook", torch.randn(k, d))
        self.register_buffer("cluster_size", torch.zeros(k))
        self.register_buffer("embed_sum", torch.zeros(k, d))
        self.register_buffer("initted", torch.tensor(not cfg.kmeans_init))
        self.generator = _generator(0)

    @torch.no_grad()
    def set_codebook(self, codebook: Tensor, counts: Tensor) -> None:
        self.codebook.copy_(codebook)
        self.cluster_size.copy_(counts.float())
        self.embed_sum.copy_(codebook * counts.float()[:, None])
        self.initted.fill_(True)

    @torch.no_grad()
    def init_from(self, x: Tensor, iters: int) -> None:
        c, counts = kmeans(x, self.cfg.codebook_size, iters, self.generator)
        self.set_codebook(c.to(self.codebook.dtype), counts)

    @torch.no_grad()
    def ema_update(self, x: Tensor, codes: Tensor) -> None:
        cfg = self.cfg
        x = x.detach().to(self.codebook.dtype)
        counts = torch.bincount(codes, minlength=cfg.codebook_size).to(x.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, x)
        self.cluster_size.mul_(cfg.decay).add_(counts, alpha=1 - cfg.decay)
        self.embed_sum.mul_(cfg.decay).add_(sums, alpha=1 - cfg.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + cfg.eps) / (n + cfg.codebook_size * cfg.eps) * n  # Laplace smoothing
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self.restart_dead(x)

    @torch.no_grad()
    def restart_dead(self, x: Tensor) -> int:
        dead = self.cluster_size < self.cfg.dead_threshold
        n = int(dead.sum())
        if n and x.shape[0]:
            fresh = _sample(x, n, self.generator)
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh * self.cfg.dead_threshold
            self.cluster_size[dead] = self.cfg.dead_threshold
        return n

    def forward(self, x: Tensor, update: bool | None = None) -> tuple[Tensor, Tensor]:
        """x [N, D] → (codewords [N, D] (no gradient), codes [N])."""
        update = self.training if update is None else update
        if not bool(self.initted):
            if not update:
                raise RuntimeError("codebook is not initialised: train the quantizer (or call ResidualVQ.fit) first")
            self.init_from(x, self.cfg.kmeans_iters)
        codes = nearest(x.detach().to(self.codebook.dtype), self.codebook)
        if update:
            self.ema_update(x, codes)
        return self.codebook[codes].to(x.dtype), codes


class ResidualVQ(nn.Module):
    """``num_quantizers`` levels, each quantizing what the previous ones left over.

    ``forward(x [..., D], n_q=None) -> (quantized, codes [..., n_q], commit_loss)`` with a
    straight-through gradient; ``encode``/``decode`` are the inference pair. Using the first
    ``n_q`` levels only is SoundStream's bitrate scalability (and the codec's quantizer dropout).
    """

    def __init__(self, dim: int | None = None, num_quantizers: int = 12, codebook_size: int = 1024, *,
                 config: RVQConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            if dim is None:
                raise TypeError("ResidualVQ needs dim (or config=RVQConfig(...))")
            config = RVQConfig(dim=dim, num_quantizers=num_quantizers, codebook_size=codebook_size, **kwargs)
        self.config = config
        self.layers = nn.ModuleList(VectorQuantizer(config) for _ in range(config.num_quantizers))
        for i, layer in enumerate(self.layers):
            layer.generator = _generator(i)

    @property
    def num_quantizers(self) -> int:
        return self.config.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def codebooks(self) -> Tensor:
        """[num_quantizers, codebook_size, dim]."""
        return torch.stack([layer.codebook for layer in self.layers])

    def seed(self, seed: int) -> ResidualVQ:
        """Seed the generators used by k-means init and dead-code restarts (one per level)."""
        for i, layer in enumerate(self.layers):
            layer.generator = _generator(seed * 1000 + i)
        return self

    def _check(self, x: Tensor, n_q: int | None) -> int:
        if x.shape[-1] != self.config.dim:
            raise ValueError(f"expected vectors of dimension {self.config.dim}, got shape {tuple(x.shape)}")
        n_q = self.num_quantizers if n_q is None else int(n_q)
        if not 1 <= n_q <= self.num_quantizers:
            raise ValueError(f"n_q must be in [1, {self.num_quantizers}], got {n_q}")
        return n_q

    def forward(self, x: Tensor, n_q: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        n_q = self._check(x, n_q)
        shape = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        residual = flat
        total = torch.zeros_like(flat)
        commit = flat.new_zeros(())
        codes = []
        for layer in self.layers[:n_q]:
            q, c = layer(residual)
            commit = commit + F.mse_loss(residual, q.detach())
            residual = residual - q.detach()
            total = total + q.detach()
            codes.append(c)
        quantized = flat + (total - flat).detach()  # straight-through
        codes = torch.stack(codes, -1).reshape(*shape, n_q)
        return quantized.reshape(x.shape), codes, commit * self.config.commitment_weight

    @torch.no_grad()
    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """x [..., D] → codes [..., n_q] (long). Never updates the codebooks."""
        n_q = self._check(x, n_q)
        flat = x.reshape(-1, x.shape[-1])
        residual = flat.to(self.layers[0].codebook.dtype)
        codes = []
        for layer in self.layers[:n_q]:
            q, c = layer(residual, update=False)
            residual = residual - q
            codes.append(c)
        return torch.stack(codes, -1).reshape(*x.shape[:-1], n_q)

    def decode(self, codes: Tensor) -> Tensor:
        """codes [..., n_q] → x [..., D]: the sum of the first n_q levels' codewords."""
        n_q = codes.shape[-1]
        if not 1 <= n_q <= self.num_quantizers:
            raise ValueError(f"codes have {n_q} levels; this quantizer has {self.num_quantizers}")
        codes = codes.long()
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")
        out = 0
        for i in range(n_q):
            out = out + F.embedding(codes[..., i], self.layers[i].codebook)
        return out

    @torch.no_grad()
    def fit(self, vectors: Tensor, iters: int = 20, seed: int = 0) -> ResidualVQ:
        """Train as a standalone quantizer on ``vectors`` [N, D]: k-means level by level on residuals.

        Deterministic for a given seed. The EMA statistics are set from the final assignments, so
        EMA training can continue from here.
        """
        vectors = torch.as_tensor(vectors).float()
        self._check(vectors, None)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError(f"fit needs a non-empty [N, D] matrix, got shape {tuple(vectors.shape)}")
        if not torch.isfinite(vectors).all():
            raise ValueError("fit: vectors contain NaN/Inf")
        residual = vectors.to(self.layers[0].codebook.device)
        g = _generator(seed)
        self.fit_mse: list[float] = []
        for layer in self.layers:
            c, counts = kmeans(residual, self.codebook_size, iters, g)
            layer.set_codebook(c, counts)
            residual = residual - c[nearest(residual, c)]
            self.fit_mse.append(float(residual.pow(2).sum(-1).mean()))
        return self

    # -- checkpoints: plain dicts, loadable with weights_only=True ------------------------------
    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

    @classmethod
    def from_dict(cls, d: dict) -> ResidualVQ:
        rvq = cls(config=RVQConfig(**d["config"]))
        rvq.load_state_dict(d["state_dict"])
        return rvq.eval()

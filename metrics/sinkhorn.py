"""Batched entropic optimal transport between sparse token histograms (log-domain Sinkhorn, torch).

Why a custom solver: the memorization audit compares every generated 5 s window against many
training windows. A Python loop of ``ot.sinkhorn2`` calls on 1,024-bin histograms spends almost all
its time on bins with zero mass. Here each histogram is stored by its *support* (the token ids that
occur, at most 125 for a 5 s window at 25 Hz) and a whole batch of pairs is solved at once on a
padded ``[N, S_a, S_b]`` cost tensor, in float64, in the log domain so a small ε cannot underflow.

Restricted support (the paper's definition): the ground cost is only needed between bins that carry
mass. Padding slots get log-mass −∞, so their dual potentials are −∞ and their rows/columns of the
transport plan are exactly 0 — the same problem as the one restricted to the non-zero bins, not an
approximation of it.

The returned cost is the *linear* transport cost ``<P_ε, C>`` of the entropic plan (what
``ot.sinkhorn2`` returns). Because ``P_ε`` is a feasible plan, this is ≥ the exact OT cost
(``ot.emd2``) and converges to it as ε → 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metrics.errors import ComputeError

DEFAULT_EPS = 0.01  # in units of the (normalized) ground cost; see docs/protocol.md "Memorization"
DEFAULT_TOL = 1e-4  # max L1 violation of the source marginal at convergence (cost error ~1e-4)
DEFAULT_MAX_ITER = 1000


class SinkhornError(ComputeError):
    """Histograms or costs that cannot be transported (empty, negative, mismatched sizes)."""


@dataclass
class SparseHist:
    """A batch of histograms by support: ``ids [N, S]`` (token ids, padded) and ``w [N, S]`` (mass, 0 on pads).

    Each row's mass sums to 1. ``S`` is the largest support in the batch.
    """

    ids: np.ndarray
    w: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx) -> SparseHist:
        return SparseHist(self.ids[idx], self.w[idx])


def sparse_from_dense(hists: np.ndarray) -> SparseHist:
    """Dense histograms ``[N, K]`` (any non-negative scale) → normalized :class:`SparseHist`."""
    h = np.asarray(hists, dtype=np.float64)
    if h.ndim == 1:
        h = h[None]
    if h.ndim != 2 or h.shape[1] == 0:
        raise SinkhornError(f"histograms must be [N, K] with K > 0, got shape {h.shape}")
    if not np.isfinite(h).all() or (h < 0).any():
        raise SinkhornError("histograms must be finite and non-negative")
    mass = h.sum(1)
    if (mass <= 0).any():
        raise SinkhornError(f"histogram {int(np.argmin(mass))} is empty (zero total mass)")
    nnz = (h > 0).sum(1)
    s = int(nnz.max())
    order = np.argsort(~(h > 0), axis=1, kind="stable")[:, :s]  # non-zero bins first, in id order
    w = np.take_along_axis(h, order, 1) / mass[:, None]
    return SparseHist(order.astype(np.int64), w)


def sparse_from_tokens(windows: np.ndarray, vocab_size: int) -> SparseHist:
    """Token windows ``[N, W]`` → normalized count histograms by support (count / W)."""
    x = np.asarray(windows)
    if x.ndim != 2 or x.shape[1] == 0:
        raise SinkhornError(f"token windows must be [N, W] with W > 0, got shape {x.shape}")
    if len(x) and (x.min() < 0 or x.max() >= vocab_size):
        raise SinkhornError(f"token id {int(x.max() if x.max() >= vocab_size else x.min())} outside the vocabulary [0, {vocab_size})")
    n, width = x.shape
    srt = np.sort(x, axis=1)
    new = np.ones_like(srt, dtype=bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    s = int(new.sum(1).max()) if n else 1
    ids = np.zeros((n, s), dtype=np.int64)
    w = np.zeros((n, s), dtype=np.float64)
    rows, cols = np.nonzero(new)
    slot = np.cumsum(new, axis=1)[rows, cols] - 1
    ids[rows, slot] = srt[rows, cols]
    # run length of each distinct id = next start - this start
    starts = np.flatnonzero(new.ravel())
    ends = np.append(starts[1:], new.size)
    row_end = (rows + 1) * width
    runs = np.minimum(ends, row_end) - starts
    w[rows, slot] = runs / width
    return SparseHist(ids, w)


def ground_cost(centroids: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float]:
    """Euclidean distances between centroids ``[K, K]`` divided by ``scale`` (default: their mean off-diagonal value).

    Why normalize: raw k-means distances depend on the feature scale of the tokenizer; dividing by
    one tokenizer-wide constant makes ε and τ comparable across tokenizers without changing which
    pairs match (the same constant for every pair).
    """
    c = np.asarray(centroids, dtype=np.float64)
    if c.ndim != 2 or len(c) < 2:
        raise SinkhornError(f"centroids must be [K >= 2, D], got shape {c.shape}")
    sq = (c * c).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * c @ c.T, 0.0))
    np.fill_diagonal(d, 0.0)
    if scale is None:
        k = len(c)
        scale = float(d.sum() / (k * (k - 1)))
    if not scale > 0:
        raise SinkhornError("all centroids coincide: the ground cost is identically zero")
    return d / scale, float(scale)


def sinkhorn_pairs(
    a: SparseHist,
    b: SparseHist,
    cost: np.ndarray | torch.Tensor,
    eps: float = DEFAULT_EPS,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    device: str = "cpu",
    chunk: int | None = None,
    log_domain: bool = False,
    dtype: torch.dtype = torch.float64,
    eps_scaling: bool = True,
) -> np.ndarray:
    """Entropic OT cost ``<P_ε, C>`` for each aligned pair ``(a[i], b[i])``; ``a`` may have one row (broadcast).

    ``cost`` is the full ``[K, K]`` ground cost; only the entries between the supports are gathered.
    The solver iterates on a kernel stabilized by the current dual potentials (fast batched matrix
    products), reaching ε through a short ε-scaling schedule (``eps_scaling``), and redoes any pair
    whose kernel underflows in the log domain; ``log_domain=True`` forces the log-domain solver.
    ``dtype=torch.float32`` roughly halves the time; its costs agree with float64 to ~1e-5 (tested).
    """
    if eps <= 0:
        raise SinkhornError(f"eps must be > 0, got {eps}")
    n = max(len(a), len(b))
    if len(a) not in (1, n) or len(b) not in (1, n):
        raise SinkhornError(f"cannot pair {len(a)} source histograms with {len(b)} targets")
    m = torch.as_tensor(cost, device=device).to(dtype)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise SinkhornError(f"ground cost must be a square [K, K] matrix, got {tuple(m.shape)}")
    k = m.shape[0]
    for name, h in (("source", a), ("target", b)):
        if h.ids.size and (h.ids.max() >= k or h.ids.min() < 0):
            raise SinkhornError(f"{name} histogram has token id {int(h.ids.max())} but the ground cost covers {k} tokens")
    out = np.empty(n, dtype=np.float64)
    if chunk is None:
        chunk = chunk_pairs(a.ids.shape[1], b.ids.shape[1], m.element_size(), device)
    todo = [(np.arange(n), None, None, max_iter)]  # (pair indices, warm-start potentials f, g, iterations left)
    while todo:
        idx = np.concatenate([t[0] for t in todo])
        fg = None if todo[0][1] is None else (torch.cat([t[1] for t in todo]), torch.cat([t[2] for t in todo]))
        budget = min(t[3] for t in todo)
        park = PARK if len(idx) > chunk else 0.0  # a last group smaller than a chunk runs to the end
        todo = []
        for s in range(0, len(idx), chunk):
            sl = idx[s : s + chunk]
            aa = a if len(a) == 1 else a[sl]
            bb = b if len(b) == 1 else b[sl]
            warm = None if fg is None else (fg[0][s : s + chunk], fg[1][s : s + chunk])
            res, parked = _solve(aa, bb, m, eps, tol, budget, device, len(sl), log_domain, eps_scaling, park, warm)
            out[sl] = res
            if parked is not None:
                todo.append((sl[parked[0].cpu().numpy()], parked[1], parked[2], parked[3]))
    return out


CACHE_BYTES = 4 * 2**20  # CPU: the kernel and its transpose of one chunk stay in cache across ~200 iterations
GPU_BYTES = 256 * 2**20


def chunk_pairs(s_a: int, s_b: int, itemsize: int, device: str = "cpu") -> int:
    """Pairs solved together: as many as keep the chunk's two ``[n, S_a, S_b]`` kernels within the cache.

    Why not the whole batch: each Sinkhorn iteration reads the kernel twice, so a batch larger than the
    cache streams it from main memory ~400 times per problem; sized to the cache, one batched product
    still amortizes the per-call overhead that a per-pair loop pays every iteration (measured:
    docs/performance.md, Sinkhorn). On a GPU the budget only bounds memory."""
    budget = CACHE_BYTES if str(device).startswith("cpu") else GPU_BYTES
    return max(1, int(budget // (2 * max(1, s_a) * max(1, s_b) * itemsize)))


def _solve(a: SparseHist, b: SparseHist, m: torch.Tensor, eps: float, tol: float, max_iter: int, device: str, n: int,
           log_domain: bool, eps_scaling: bool, park: float = 0.0, warm=None) -> tuple[np.ndarray, tuple | None]:
    dt = m.dtype
    ia = torch.as_tensor(a.ids, device=device).expand(n, -1)
    ib = torch.as_tensor(b.ids, device=device).expand(n, -1)
    wa = torch.as_tensor(a.w, device=device).to(dt).expand(n, -1)
    wb = torch.as_tensor(b.w, device=device).to(dt).expand(n, -1)
    c = m[ia[:, :, None], ib[:, None, :]]  # [n, Sa, Sb], only the supports
    if log_domain:
        return _solve_log(wa, wb, c, eps, tol, max_iter).double().cpu().numpy(), None
    out, parked = _solve_scaling(wa, wb, c, eps, tol, max_iter, eps_scaling, park, warm)
    bad = ~torch.isfinite(out)
    if parked is not None:
        bad[parked[0]] = False  # not finished: solved later with the other chunks' stragglers
    if bad.any():  # a kernel row underflowed: redo those pairs in the log domain, in float64
        out[bad] = _solve_log(wa[bad].double(), wb[bad].double(), c[bad].double(), eps, tol, max_iter).to(dt)
    return out.double().cpu().numpy(), parked


def eps_schedule(c_max: float, eps: float, factor: float = 4.0) -> list[float]:
    """ε-scaling: ε_0 ≈ the largest cost, divided by ``factor`` per stage down to ``eps`` (always ending at it).

    Why: at a large ε Sinkhorn converges in a few iterations; each stage warm-starts the next from its
    dual potentials, so the final (small-ε) stage starts near its fixed point instead of from zero.
    """
    out = []
    e = max(float(c_max), eps)
    while e > eps * factor:
        out.append(e)
        e /= factor
    return [*out, eps]


STAGE_ITERS = 8  # scaling iterations per intermediate ε stage (the last stage runs to ``tol``)


PARK = 0.25  # a chunk hands its unconverged pairs on once they are this fraction of it (see _solve_scaling)


def _solve_scaling(wa, wb, c, eps, tol, max_iter, eps_scaling, park: float = 0.0, warm=None):
    """Matrix-scaling Sinkhorn on a kernel stabilized by the dual potentials; NaN for pairs that underflow.

    Why it is safe: any row/column rescaling of the kernel is absorbed by the scalings u, v, so
    ``K_ij = exp((f_i + g_j − C_ij)/ε)`` gives the same plan for any potentials f, g. Starting from the
    row/column minima of ``C`` (every row and column keeps an entry equal to 1) and, between ε stages,
    absorbing ``ε·log u``, ``ε·log v`` into f, g keeps the entries near the plan O(1). Pads have K = 0.

    Stragglers (``park`` > 0): a chunk's iterations cost about the same however few of its pairs are still
    running, so once the unconverged pairs are ≤ ``park`` of the chunk they stop, their scalings absorbed
    into their potentials, and come back as ``(indices, f, g, iterations left)``; the caller solves all
    chunks' stragglers together from those potentials (``warm``: the final ε only). Same iterations, same
    stopping rule, so the same costs; only the batching changes. Returns ``(costs, parked or None)``.
    """
    live = (wa > 0)[:, :, None] & (wb > 0)[:, None, :]
    if warm is not None:
        f, g = (x.to(c.dtype) for x in warm)
        stages = [eps]
    else:
        inf = torch.tensor(float("inf"), dtype=c.dtype, device=c.device)
        cm = torch.where(live, c, inf)
        f = cm.amin(2)
        f = torch.where(torch.isfinite(f), f, torch.zeros_like(f))
        g = (cm - f[:, :, None]).amin(1)
        g = torch.where(torch.isfinite(g), g, torch.zeros_like(g))
        c_max = float(torch.where(live, c, torch.zeros_like(c)).amax()) if c.numel() else 0.0
        stages = eps_schedule(c_max, eps) if eps_scaling else [eps]
    n0 = len(c)
    tiny = torch.finfo(c.dtype).tiny
    out = torch.full((len(c),), float("nan"), dtype=c.dtype, device=c.device)
    act = torch.arange(len(c), device=c.device)  # pairs still iterating; converged ones leave the batch
    pending = torch.ones(len(c), dtype=torch.bool, device=c.device)  # cost not yet recorded
    budget = max_iter
    for si, e in enumerate(stages):
        final = si == len(stages) - 1
        k = torch.where(live, torch.exp((f[:, :, None] + g[:, None, :] - c) / e), torch.zeros_like(c))
        kt = k.transpose(1, 2).contiguous()  # row-vector × matrix products are several times faster on CPU
        u = (wa > 0).to(c.dtype)
        v = (wb > 0).to(c.dtype)
        n_it = budget if final else min(STAGE_ITERS, budget)
        for it in range(n_it):
            kv = torch.bmm(v[:, None, :], kt)[:, 0, :]
            u = wa / kv.clamp_min(tiny)
            ktu = torch.bmm(u[:, None, :], k)[:, 0, :]
            v = wb / ktu.clamp_min(tiny)
            budget -= 1
            if not final:
                continue
            last = it == n_it - 1
            if it % 10 == 9 or last:
                row = u * torch.bmm(v[:, None, :], kt)[:, 0, :]
                err = (row - wa).abs().sum(1)
                underflow = ~(((kv > 0) | (wa == 0)).all(1) & ((ktu > 0) | (wb == 0)).all(1))
                done = pending & ((err < tol) | last | ~torch.isfinite(err) | underflow)
                if done.any():  # the cost of the newly converged pairs only
                    cost = ((u[done, :, None] * k[done] * v[done, None, :]) * c[done]).sum((1, 2))
                    ok = torch.isfinite(cost) & ~underflow[done]
                    out[act[done]] = torch.where(ok, cost, torch.full_like(cost, float("nan")))
                    pending = pending & ~done
                    n_left = int(pending.sum())
                    if not n_left:
                        return out, None
                    if n_left <= park * n0 and not last:  # hand the stragglers on, potentials absorbed
                        fp = f[pending] + e * torch.where(wa[pending] > 0, torch.log(u[pending].clamp_min(tiny)), 0.0)
                        gp = g[pending] + e * torch.where(wb[pending] > 0, torch.log(v[pending].clamp_min(tiny)), 0.0)
                        return out, (act[pending], fp, gp, budget)
                    if 4 * (len(pending) - n_left) >= len(pending):  # compact (copies the kernels) once ≥ 1/4 finished;
                        keep = pending  # until then finished pairs ride along, their cost already recorded
                        act, k, kt, c, wa, wb, u, v, f, g, live, pending = (
                            x[keep] for x in (act, k, kt, c, wa, wb, u, v, f, g, live, pending))
        if not final:  # absorb the scalings into the potentials (pads keep potential 0: their K is 0 anyway)
            f = f + e * torch.where(wa > 0, torch.log(u.clamp_min(tiny)), torch.zeros_like(u))
            g = g + e * torch.where(wb > 0, torch.log(v.clamp_min(tiny)), torch.zeros_like(v))
    return out, None


def _solve_log(wa, wb, c, eps, tol, max_iter) -> torch.Tensor:
    """Log-domain Sinkhorn (dual potentials f, g); pads have log-mass −∞ so their plan rows/cols are 0."""
    la, lb = torch.log(wa), torch.log(wb)
    f = torch.zeros_like(wa)
    g = torch.zeros_like(wb)
    neg_c = -c / eps
    for it in range(max_iter):
        f = eps * (la - torch.logsumexp(neg_c + (g / eps)[:, None, :], dim=2))
        g = eps * (lb - torch.logsumexp(neg_c + (f / eps)[:, :, None], dim=1))
        if it % 10 == 9 or it == max_iter - 1:
            row = torch.exp(torch.logsumexp(neg_c + (f / eps)[:, :, None] + (g / eps)[:, None, :], dim=2))
            if float((row - wa).abs().sum(1).max()) < tol:
                break
    p = torch.exp(neg_c + (f / eps)[:, :, None] + (g / eps)[:, None, :])
    return (p * c).sum((1, 2))


def sinkhorn_one_to_many(
    a: np.ndarray, targets: np.ndarray, cost: np.ndarray, eps: float = DEFAULT_EPS, **kw
) -> np.ndarray:
    """Dense convenience API: one histogram ``[K]`` against many ``[N, K]`` (restricted to non-zero bins)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise SinkhornError(f"source histogram must be 1-D [K], got shape {a.shape}")
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim == 1:
        t = t[None]
    if t.shape[1] != a.shape[0] or np.shape(cost) != (a.shape[0], a.shape[0]):
        raise SinkhornError(f"size mismatch: source has {a.shape[0]} bins, targets {t.shape[1]}, cost {np.shape(cost)}")
    return sinkhorn_pairs(sparse_from_dense(a), sparse_from_dense(t), cost, eps, **kw)

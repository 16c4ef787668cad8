"""Kernel Audio Distance (Chung et al., 2025; toolkit ``kadtk``): unbiased MMD² with a Gaussian kernel.

kadtk's choices, exactly (``kadtk/kad.py: calc_kernel_audio_distance``), with x = reference frames
(kadtk's "baseline") and y = generated frames (its "eval" set):

- kernel k(a, b) = exp(−γ‖a − b‖²), γ = 1 / (2σ² + 1e-8), ‖a − b‖² = ‖a‖² + ‖b‖² − 2a·b;
- σ = the median pairwise Euclidean distance of the *generated* frames when no bandwidth is given
  (``torch.pdist`` + ``torch.median``: all pairs i < j, the lower middle value of an even count);
- KAD = 100 · (mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) − 2 mean_{i,j} k(x_i, y_j)), the within-set
  means excluding the diagonal (the unbiased MMD² estimator), ×100 (``SCALE_FACTOR``);
- KAD∞ (``score_inf``): 25 frame counts n from 500 to all generated frames, n frames drawn with
  replacement, σ recomputed on each draw when it comes from the generated set, the intercept of a
  least-squares line in 1/n.

Where this file differs from kadtk, and why: everything runs in float64 (kadtk's default is
float32; a difference of means near 1 loses digits in float32), and blockwise — kadtk materializes
the m×m, n×n and m×n matrices (≈36 GB at 55,000 frames a side); here memory is O(block²). The exact
median uses two blockwise passes (a histogram of the distances, then the values in the bin that
holds the median rank). Per-clip values use the set's σ for every clip (kadtk's ``score_individual``
recomputes it per file, which makes clips incomparable and fails on a one-frame clip), and resamples
for intervals keep the point value's σ (a CI of one metric, not of a moving kernel) and never pair a
resampled clip with its own copies (``KAD._within_set``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from metrics.errors import ComputeError
from metrics.metric import PerClipOutputs
from metrics.result import MetricResult

SCALE = 100.0
EPS = 1e-8  # kadtk's eps in γ = 1 / (2σ² + eps)
BLOCK = 2048
HIST_BINS = 1 << 18
SELECT_LIMIT = 1 << 24  # values gathered for the final exact selection; above this, refine again


class KADError(ComputeError):
    """Inputs KAD cannot be computed from (too few frames, mismatched dims, non-finite values)."""


PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


def _dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise KADError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return PRECISIONS[precision]


def _as_tensor(x: np.ndarray | torch.Tensor, which: str, device: str = "cpu", precision: str = "float64") -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(device=device, dtype=_dtype(precision))
    if t.ndim != 2:
        raise KADError(f"{which}: expected frames [n, dim], got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise KADError(f"{which}: contains NaN or Inf")
    return t


class _Workspace:
    """Per-call buffers every block reuses. Why: a fresh 17–34 MB tensor per block let glibc's heap
    fragment (its mmap threshold adapts upwards after the first free): measured 1.0 GB RSS for the
    median at 30,000 frames with fresh tensors, 79 MB with fixed buffers."""

    def __init__(self, block: int, dtype: torch.dtype, device: torch.device):
        self.size, self.dtype, self.device = block * block, dtype, device
        self.d2 = torch.empty(self.size, dtype=dtype, device=device)
        self._buffers: dict[str, torch.Tensor] = {}
        self._triu: dict[int, torch.Tensor] = {}

    def buffer(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        if name not in self._buffers:
            self._buffers[name] = torch.empty(self.size, dtype=dtype or self.dtype, device=self.device)
        return self._buffers[name]

    def upper(self, d2: torch.Tensor, diagonal: bool) -> torch.Tensor:
        """The strict upper triangle of a diagonal block (pairs i < j), or the whole block, flat."""
        if not diagonal:
            return d2.view(-1)
        r = len(d2)
        if r not in self._triu:
            rows, cols = torch.triu_indices(r, r, offset=1, device=d2.device)
            self._triu[r] = rows * r + cols
        idx = self._triu[r]
        return torch.index_select(d2.view(-1), 0, idx, out=self.buffer("tri")[: len(idx)])

    def bins(self, d: torch.Tensor, lo: float, scale: float) -> torch.Tensor:
        """floor((d − lo)·scale) clamped to the histogram, in reused buffers (the same arithmetic in every pass)."""
        t = self.buffer("tmp")[: len(d)]
        torch.sub(d, lo, out=t)
        t.mul_(scale)
        idx = self.buffer("idx", torch.int64)[: len(d)]
        idx.copy_(t)  # float -> int64 truncates toward zero, as .long() does
        return idx.clamp_(0, HIST_BINS - 1)


def _sq_dist_blocks(a: torch.Tensor, b: torch.Tensor, block: int, symmetric: bool,
                    ws: _Workspace | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(i, j, ‖a_i − b_j‖² block) over all blocks, or over j ≥ i when ``symmetric`` (a is b).

    The block lives in the workspace: it is valid until the next one is yielded."""
    ws = ws or _Workspace(block, a.dtype, a.device)
    a_sq, b_sq = (a * a).sum(1), (b * b).sum(1)
    for i in range(0, len(a), block):
        ai = a[i : i + block]
        for j in range(i if symmetric else 0, len(b), block):
            bj = b[j : j + block]
            d2 = ws.d2[: len(ai) * len(bj)].view(len(ai), len(bj))
            torch.addmm(b_sq[None, j : j + block], ai, bj.T, alpha=-2.0, out=d2)
            d2.add_(a_sq[i : i + block, None])
            yield i, j, d2


def median_pairwise_distance(x: np.ndarray | torch.Tensor, block: int = BLOCK, device: str = "cpu",
                             precision: str = "float64") -> float:
    """Lower median of the N = n(n−1)/2 pairwise distances (``torch.median(torch.pdist(x))``), exactly.

    Memory O(block²): a histogram pass locates the bin holding rank (N−1)//2, a second pass gathers
    that bin's values (refining the bin again while it holds more than ``SELECT_LIMIT`` values).
    A value's bin at every level is computed by the same expression in every pass, so the passes
    agree on membership exactly. The passes work on squared distances (same order, no square root
    per pair); the root is taken of the selected value only.
    """
    x = _as_tensor(x, "frames", device, precision)
    n = len(x)
    if n < 2:
        raise KADError(f"the median pairwise distance needs at least 2 frames, got {n}")
    rank = (n * (n - 1) // 2 - 1) // 2  # 0-based rank of the lower median
    radius = float(torch.linalg.vector_norm(x - x.mean(0), dim=1).max())
    lo, width = 0.0, (2.0 * radius) ** 2 * (1 + 1e-6) + 1e-300  # every distance is below 2·max‖x − mean‖
    levels: list[tuple[float, float, int]] = []  # (lo, bins per unit, chosen bin) of each refinement
    ws = _Workspace(block, x.dtype, x.device)

    def distances() -> Iterator[torch.Tensor]:
        """Each block's squared distances that lie in every chosen bin so far (views into the workspace)."""
        for i, j, d2 in _sq_dist_blocks(x, x, block, True, ws):
            d = ws.upper(d2, i == j).clamp_(min=0)
            for lv_lo, lv_scale, lv_k in levels:
                keep = torch.eq(ws.bins(d, lv_lo, lv_scale), lv_k, out=ws.buffer("mask", torch.bool)[: len(d)])
                d = d[keep]
            yield d

    while True:
        scale = HIST_BINS / width
        counts = torch.zeros(HIST_BINS, dtype=torch.int64, device=x.device)
        for d in distances():
            counts += torch.bincount(ws.bins(d, lo, scale), minlength=HIST_BINS)
        cum = torch.cumsum(counts, 0)
        k = int(torch.searchsorted(cum, torch.tensor(rank, device=x.device), right=True))
        rank -= int(cum[k - 1]) if k else 0
        levels.append((lo, scale, k))
        if int(counts[k]) <= SELECT_LIMIT:
            break
        if len(levels) == 4:  # a bin 2^-72 of the range wide: its values are ties (duplicate frames)
            return math.sqrt(min(float(d.min()) for d in distances() if len(d)))
        lo, width = lo + k / scale, 1.0 / scale
    values = torch.cat([d.clone() for d in distances()])
    return math.sqrt(float(torch.kthvalue(values, rank + 1).values))


def gamma_of(bandwidth: float) -> float:
    return 1.0 / (2.0 * bandwidth**2 + EPS)


def kernel_sums(a: torch.Tensor, b: torch.Tensor | None, gamma: float, block: int = BLOCK,
                col_sums: bool = False) -> tuple[float, torch.Tensor | None]:
    """Σ k over all pairs of a × b, or over i ≠ j of a × a when ``b`` is None (diagonal excluded as kadtk
    does: subtracting the kernel's own diagonal values). With ``col_sums``, also Σ_i k(a_i, b_j) per j."""
    symmetric = b is None
    b = a if symmetric else b
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    cols = torch.zeros(len(b), dtype=torch.float64, device=a.device) if col_sums and not symmetric else None
    for i, j, d2 in _sq_dist_blocks(a, b, block, symmetric):
        k = d2.mul_(-gamma).exp_()
        if cols is not None:
            cols[j : j + k.shape[1]] += k.sum(0, dtype=torch.float64)
        if symmetric and i == j:
            total += k.sum(dtype=torch.float64) - k.diagonal().sum(dtype=torch.float64)
        else:
            total += (2.0 if symmetric else 1.0) * k.sum(dtype=torch.float64)
    return float(total), cols


def kernel_audio_distance(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, bandwidth: float | None = None,
                          block: int = BLOCK, device: str = "cpu", precision: str = "float64") -> tuple[float, float]:
    """(KAD, σ) between reference frames ``x`` [m, d] and generated frames ``y`` [n, d] (kadtk's formula).

    ``precision="float32"`` computes distances and kernels in float32 like kadtk (sums stay float64),
    ≈3× faster on CPU; the default float64 is what the parity tests hold to 1e-6.
    """
    x, y = _as_tensor(x, "reference", device, precision), _as_tensor(y, "generated", device, precision)
    if x.shape[1] != y.shape[1]:
        raise KADError(f"reference dim {x.shape[1]} != generated dim {y.shape[1]}")
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise KADError(f"KAD needs at least 2 frames a side (reference {m}, generated {n})")
    sigma = median_pairwise_distance(y, block, device, precision) if bandwidth is None else float(bandwidth)
    g = gamma_of(sigma)
    xx, _ = kernel_sums(x, None, g, block)
    yy, _ = kernel_sums(y, None, g, block)
    xy, _ = kernel_sums(x, y, g, block)
    return SCALE * (xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2.0 * xy / (m * n)), sigma


def kad_inf(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None, steps: int = 25, min_n: int = 500,
            seed: int = 0, block: int = BLOCK, device: str = "cpu", precision: str = "float64") -> dict:
    """kadtk's ``score_inf``: KAD at ``steps`` frame counts (drawn with replacement), extrapolated in 1/n."""
    rng = np.random.default_rng(seed)
    ns = [int(v) for v in np.linspace(min_n, len(y), steps)]
    if min(ns) < 2:
        raise KADError(f"KAD∞ needs draws of at least 2 frames (min_n {min_n}, {len(y)} generated frames)")
    points = [(n, kernel_audio_distance(x, y[rng.choice(len(y), size=n, replace=True)], bandwidth, block, device, precision)[0])
              for n in ns]
    xs, ys = 1.0 / np.array(ns, dtype=np.float64), np.array([p[1] for p in points])
    slope, intercept = np.polyfit(xs, ys, 1)
    r2 = 1 - np.sum((ys - (slope * xs + intercept)) ** 2) / np.sum((ys - ys.mean()) ** 2)
    return {"kad_inf": float(intercept), "kad_inf_slope": float(slope), "kad_inf_r2": float(r2), "kad_inf_points": points}


# ----------------------------------------------------------------------------- the Metric


def _clip_kernel_sums(a: torch.Tensor, a_clip: torch.Tensor, n_a: int, b: torch.Tensor, b_clip: torch.Tensor, n_b: int,
                      gamma: float, block: int) -> torch.Tensor:
    """[clips_a, clips_b] sums of k over the frame pairs of each pair of clips (O(clips²) memory).

    Frames are laid out clip after clip (``a_clip``/``b_clip`` non-decreasing), so a block of frames
    touches a contiguous tile of clips: the per-block scratch is at most block², never block × clips."""
    out = torch.zeros(n_a, n_b, dtype=torch.float64, device=a.device)
    for i, j, d2 in _sq_dist_blocks(a, b, block, False):
        k = d2.mul_(-gamma).exp_().double()
        ac, bc = a_clip[i : i + k.shape[0]], b_clip[j : j + k.shape[1]]
        a0, b0 = int(ac[0]), int(bc[0])
        h, w = int(ac[-1]) - a0 + 1, int(bc[-1]) - b0 + 1
        cols = torch.zeros(k.shape[0], w, dtype=torch.float64, device=a.device).index_add_(1, bc - b0, k)
        out[a0 : a0 + h, b0 : b0 + w] += torch.zeros(h, w, dtype=torch.float64, device=a.device).index_add_(0, ac - a0, cols)
    return out


class KAD(PerClipOutputs):
    """KAD between the reference and generated clips' frame embeddings (one registered embedder, ``embedder_id``).

    ``bandwidth``: ``"generated"`` (kadtk: the median pairwise distance of the generated frames),
    ``"reference"`` (the same median on the reference frames, so two systems scored against one
    reference share one kernel), or a number. ``inf=True`` adds KAD∞ (kadtk's ``score_inf``).
    ``per_item`` holds each generated clip's KAD against the whole reference (clips of one frame
    have no within-clip term and are listed in ``extra["per_clip_skipped"]``).
    """

    name = "kad"
    output = "embedding"
    higher_is_better = False  # a distance (MMD²) between the two sides' embeddings
    # within-clip frame pairs bias the point value when a clip's frames are alike: the clip jackknife removes it
    interval_method = "jackknife"
    # no bounds: the population MMD² is >= 0 but the unbiased estimate (the point value) can be
    # slightly negative; clipping the interval at 0 would exclude the point value itself

    def __init__(self, embedder_id: str = "", bandwidth: str | float = "generated", inf: bool = False, inf_steps: int = 25, inf_min_n: int = 500,
                 block: int = BLOCK, device: str = "cpu", precision: str = "float64", n_boot: int = 1000, seed: int = 0):
        if not isinstance(bandwidth, (int, float)) and bandwidth not in ("generated", "reference"):
            raise KADError(f"bandwidth must be 'generated', 'reference' or a number, not {bandwidth!r}")
        self.embedder_id = embedder_id
        self.bandwidth, self.inf, self.inf_steps, self.inf_min_n = bandwidth, inf, inf_steps, inf_min_n
        self.block, self.device, self.precision = block, device, precision
        _dtype(precision)
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        return {"embedder": self.embedder_id, "kernel": "gaussian", "bandwidth": self.bandwidth, "scale": SCALE, "inf": self.inf,
                "inf_steps": self.inf_steps, "inf_min_n": self.inf_min_n, "precision": self.precision}

    def reset(self) -> None:
        super().reset()
        self._sigma: float | None = None
        self._clip_matrices: tuple | None = None

    def update(self, side: str, outputs) -> None:
        super().update(side, outputs)
        self._sigma, self._clip_matrices = None, None

    def frames(self, side: str, ids: Sequence[str] | None = None) -> np.ndarray:
        arrays = self.outputs[side]
        ids = self.ids(side) if ids is None else ids
        if not ids:
            raise KADError(f"{side}: no embeddings (empty set of clips)")
        return np.concatenate([np.asarray(arrays[i], np.float64).reshape(len(arrays[i]), -1) for i in ids])

    def sigma(self) -> float:
        """The kernel bandwidth of the point value."""
        if self._sigma is None:
            if isinstance(self.bandwidth, (int, float)):
                self._sigma = float(self.bandwidth)
            else:
                self._sigma = median_pairwise_distance(self.frames(self.bandwidth), self.block, self.device, self.precision)
        return self._sigma

    def compute(self) -> MetricResult:
        x = _as_tensor(self.frames("reference"), "reference", self.device, self.precision)
        y = _as_tensor(self.frames("generated"), "generated", self.device, self.precision)
        if x.shape[1] != y.shape[1]:
            raise KADError(f"reference dim {x.shape[1]} != generated dim {y.shape[1]}")
        if len(x) < 2 or len(y) < 2:
            raise KADError(f"KAD needs at least 2 frames a side (reference {len(x)}, generated {len(y)})")
        sigma = self.sigma()
        g = gamma_of(sigma)
        xx_mean = kernel_sums(x, None, g, self.block)[0] / (len(x) * (len(x) - 1))
        yy_mean = kernel_sums(y, None, g, self.block)[0] / (len(y) * (len(y) - 1))
        xy, cols = kernel_sums(x, y, g, self.block, col_sums=True)
        value = SCALE * (xx_mean + yy_mean - 2.0 * xy / (len(x) * len(y)))
        per, skipped, start = {}, [], 0
        for cid in self.ids("generated"):
            c = y[start : start + len(self.outputs["generated"][cid])]
            col = cols[start : start + len(c)]
            start += len(c)
            if len(c) < 2:
                skipped.append(cid)
                continue
            cc = kernel_sums(c, None, g, self.block)[0] / (len(c) * (len(c) - 1))
            per[cid] = float(SCALE * (xx_mean + cc - 2.0 * float(col.sum()) / (len(x) * len(c))))
        extra = {"bandwidth": sigma, "bandwidth_from": self.bandwidth if isinstance(self.bandwidth, str) else "fixed",
                 "kernel": "gaussian", "scale": SCALE, "n_reference_frames": len(x), "n_generated_frames": len(y),
                 "per_clip_skipped": skipped}
        if self.inf:
            fixed = None if self.bandwidth == "generated" else sigma
            inf = kad_inf(x.cpu().numpy(), y.cpu().numpy(), fixed, self.inf_steps, self.inf_min_n, self.seed, self.block,
                          self.device, self.precision)
            extra.update({k: v for k, v in inf.items() if k != "kad_inf_points"})
            extra["kad_inf_points"] = [[n, v] for n, v in inf["kad_inf_points"]]
        return self.result(value, per, extra)

    # -- resampling: clip-level kernel sums, so a resample costs O(clips²), not O(frames²) --------
    def _clips(self) -> tuple:
        if self._clip_matrices is None:
            g = gamma_of(self.sigma())
            sides = {}
            for side in ("reference", "generated"):
                ids = self.ids(side)
                counts = np.array([len(self.outputs[side][i]) for i in ids], dtype=np.float64)
                owner = torch.as_tensor(np.repeat(np.arange(len(ids)), counts.astype(np.int64)), device=self.device)
                sides[side] = (_as_tensor(self.frames(side), side, self.device, self.precision), owner, len(ids), counts)
            (x, xo, nx, cx), (y, yo, ny, cy) = sides["reference"], sides["generated"]
            mats = [_clip_kernel_sums(a, ao, na, b, bo, nb, g, self.block).cpu().numpy()
                    for a, ao, na, b, bo, nb in ((x, xo, nx, x, xo, nx), (y, yo, ny, y, yo, ny), (x, xo, nx, y, yo, ny))]
            self._clip_matrices = (*mats, cx, cy)
        return self._clip_matrices

    @staticmethod
    def _within_set(w: np.ndarray, s: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Σ k, number of frame pairs) over the within-set pairs a resample keeps, per row of clip counts ``w``.

        Why not every pair of the resampled frames: the point value is a U-statistic over pairs of
        distinct frames, and a bootstrap of it over clips pairs distinct *draws*. Two copies of one
        clip drawn twice are one sample, not two: pairing them pairs each frame with itself
        (k(a, a) = 1) and the clip with its own frames, which put KAD's resampled values ≈1.5 sd above
        the estimate and its intervals below the population value (docs/protocol.md, "Intervals").
        Kept: every pair of frames from two different clips, w_i·w_j times (i ≠ j), and each copy's
        own pairs of distinct frames (S_ii − f_i, w_i times). With every count 1 this is the point
        value's sum over i ≠ j frames. ``s``: clip × clip kernel sums (S_ii includes the f_i frames
        paired with themselves), ``f``: frames per clip.
        """
        s_ii = np.diag(s)
        total = ((w @ s) * w).sum(1) - (w * w) @ s_ii + w @ (s_ii - f)
        pairs = (w @ f) ** 2 - (w * w) @ (f * f) + w @ (f * (f - 1))
        return total, pairs

    def value_on_counts(self, ref_counts: np.ndarray, gen_counts: np.ndarray) -> np.ndarray:
        """KAD on each row of clip counts (rows aligned with ``ids(side)``), the point value's bandwidth;
        within a set, a clip drawn k times is not paired with its own copies (``_within_set``)."""
        sxx, syy, sxy, cx, cy = self._clips()
        wr, wg = np.asarray(ref_counts, np.float64), np.asarray(gen_counts, np.float64)
        (xx, pxx), (yy, pyy) = self._within_set(wr, sxx, cx), self._within_set(wg, syy, cy)
        xy = ((wr @ sxy) * wg).sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = SCALE * (xx / pxx + yy / pyy - 2.0 * xy / ((wr @ cx) * (wg @ cy)))
        # a resample with no kept within-set pair on a side (fewer than 2 frames, or one clip of one frame
        # drawn repeatedly) has no within-set mean: NaN, which the intervals drop
        return np.where((pxx > 0) & (pyy > 0), out, np.nan)

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float:
        return float(self.value_on_counts(self.id_counts("reference", ref_ids), self.id_counts("generated", gen_ids))[0])

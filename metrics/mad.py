"""MAD, the MAUVE Audio Divergence (Huang et al. 2025): −log MAUVE (Pillutla et al. 2021) between clip embeddings.

The recipe, with mauve-text 0.4.0's ``compute_mauve`` settings (the MAD package ``mad_metric`` calls it with
its defaults: ``p_features`` = the evaluated clips, ``q_features`` = the reference clips):

1. one vector per clip: the clip's frame embeddings pooled over time (``aggregation``: ``"max"``, MAD's
   ``featurize(..., aggregation='max')``; ``"mean"`` as an option);
2. quantization of both sides together (``quantize``): rows stacked reference first, then generated (mauve's
   ``np.vstack([q, p])``: the order k-means' seeded initialisation sees), each row L2-normalized, a PCA of all
   rows (no whitening) truncated to the fewest leading components whose explained-variance ratio reaches
   ``explained_variance`` (0.9), then k-means in float32 with ``num_buckets`` centroids (``"auto"``:
   max(2, round(min(n_p, n_q) / 10))), ``kmeans_num_redo`` restarts (5, the best objective kept),
   ``kmeans_max_iter`` iterations (500), seed ``mauve_seed`` + 2 (mauve's default seed is 25); each clip gets
   its nearest centroid. K-means runs in faiss (``faiss.Kmeans``, what mauve runs: identical labels); without
   faiss, scikit-learn's ``KMeans`` (other labels, recorded in ``extra["kmeans_backend"]``);
3. the two histograms over the buckets (clip counts / clips), no smoothing;
4. the divergence frontier (``frontier``): for each mixture weight w of ``divergence_curve_discretization_size``
   (25) values evenly spaced in [1e−6, 1 − 1e−6], R = wP + (1 − w)Q and the point
   (exp(−c·KL(Q‖R)), exp(−c·KL(P‖R))), plus the two extreme points (1, 0) and (0, 1); c = ``scaling`` (5);
5. MAUVE = the area under that curve, the mean of the trapezoid areas integrated along x and along y;
   MAD = −log MAUVE (0 for identical histograms, larger is worse).

MAD is set-level: a clip has no MAD of its own (a histogram of one clip is one bucket), so ``per_item`` is
empty and ``extra["per_clip"]`` says so. Intervals and paired tests resample clips of both sides with the
quantization of the point value kept (each clip keeps its bucket; a resample re-counts the histograms):
an interval of one metric, not of a moving quantizer, as KAD keeps its bandwidth. Why: re-running k-means
on a bootstrap resample clusters duplicated clips (a resample holds ~63 % distinct clips), which moves the
buckets by an amount that is an artefact of the duplicates rather than sampling variation of the sets;
the k-means seed's own effect on the value is a separate, documented source of variation
(docs/protocol.md, "MAD").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metrics.errors import ComputeError
from metrics.metric import PerClipOutputs
from metrics.result import MetricResult

PAPER_EMBEDDER = "mert-v1-330m"  # MAD's embedder (metrics/embedders/mert.py): MERT-v1-330M hidden_states[24], max over time
PAPER_LAYER = 24
AGGREGATIONS = ("max", "mean")


class MADError(ComputeError):
    """Inputs MAD cannot be computed from (too few clips, mismatched dims, non-finite values)."""


def auto_buckets(n_p: int, n_q: int) -> int:
    """mauve's ``num_buckets='auto'``: a tenth of the smaller side, at least 2 (Python's round, ties to even)."""
    return max(2, int(round(min(n_p, n_q) / 10)))


def _kmeans_labels(x: np.ndarray, k: int, num_redo: int, max_iter: int, seed: int) -> tuple[np.ndarray, str]:
    """Each row's nearest centroid after k-means (faiss when installed, else scikit-learn), and the backend."""
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        # min_points_per_centroid only decides whether faiss prints a warning (few points per centroid is the
        # MAUVE heuristic's design: n/10 buckets); max_points_per_centroid keeps faiss' default, as mauve does
        km = faiss.Kmeans(x.shape[1], k, niter=max_iter, nredo=num_redo, update_index=True, seed=seed, verbose=False,
                          min_points_per_centroid=1)
        km.train(x)
        return km.index.search(x, 1)[1].reshape(-1).astype(np.int64), f"faiss {faiss.__version__}"
    import sklearn
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=num_redo, max_iter=max_iter, random_state=seed).fit(x)
    return km.labels_.astype(np.int64), f"scikit-learn {sklearn.__version__}"


def quantize(p: np.ndarray, q: np.ndarray, num_buckets: int, explained_variance: float = 0.9, num_redo: int = 5,
             max_iter: int = 500, seed: int = 25) -> tuple[np.ndarray, np.ndarray, dict]:
    """(p's bucket per row, q's bucket per row, what was done): step 2 of the module docstring.

    ``seed`` is mauve's ``seed`` argument: the PCA gets ``seed + 1`` (unused by the exact solver), k-means
    ``seed + 2``, as mauve passes them."""
    if not 0 < explained_variance < 1:
        raise MADError(f"explained_variance must be in (0, 1), not {explained_variance}")
    try:
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import normalize
    except ImportError as e:
        raise MADError(f"MAD needs scikit-learn ({e}); install it with: pip install 'musiclm-eval[mad]'") from None
    if len(p) + len(q) < num_buckets:
        raise MADError(f"MAD: {len(p) + len(q)} clips cannot fill {num_buckets} buckets")
    data = normalize(np.vstack([q, p]), norm="l2", axis=1)
    pca = PCA(n_components=None, whiten=False, random_state=seed + 1).fit(data)
    dim = int(np.argmax(np.cumsum(pca.explained_variance_ratio_) >= explained_variance)) + 1
    reduced = np.ascontiguousarray(pca.transform(data)[:, :dim], dtype=np.float32)
    labels, backend = _kmeans_labels(reduced, num_buckets, num_redo, max_iter, seed + 2)
    return labels[len(q):], labels[: len(q)], {"pca_dim": dim, "kmeans_backend": backend}


def frontier(p: np.ndarray, q: np.ndarray, size: int = 25, scaling: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the divergence frontier of histograms ``p``, ``q`` ([..., k], rows summing to 1), extremes included.

    x = exp(−c·KL(Q‖R_w)), y = exp(−c·KL(P‖R_w)) for R_w = wP + (1 − w)Q; terms with a zero left argument
    contribute 0. Every R_w is positive wherever P or Q is, so no KL is infinite."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    w = np.linspace(1e-6, 1 - 1e-6, size)[:, None]
    r = w * p[..., None, :] + (1 - w) * q[..., None, :]  # [..., size, k]

    def kl(a: np.ndarray) -> np.ndarray:
        a = np.broadcast_to(a[..., None, :], r.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log(a / r), 0.0).sum(-1)

    lead = p.shape[:-1]
    x = np.concatenate([np.ones((*lead, 1)), np.exp(-scaling * kl(q)), np.zeros((*lead, 1))], -1)
    y = np.concatenate([np.zeros((*lead, 1)), np.exp(-scaling * kl(p)), np.ones((*lead, 1))], -1)
    return x, y


def _area(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoid area under y(x) with the points sorted by x (ties have zero width, so their order is irrelevant)."""
    order = np.argsort(x, axis=-1)
    xs, ys = np.take_along_axis(x, order, -1), np.take_along_axis(y, order, -1)
    return (np.diff(xs, axis=-1) * (ys[..., 1:] + ys[..., :-1]) / 2).sum(-1)


def mauve_of_histograms(p: np.ndarray, q: np.ndarray, size: int = 25, scaling: float = 5.0) -> np.ndarray:
    """MAUVE of histograms ``p``, ``q`` ([..., k]): the mean of the frontier's area along x and along y."""
    x, y = frontier(p, q, size, scaling)
    return 0.5 * (_area(x, y) + _area(y, x))


def mad_of(mauve: np.ndarray | float) -> np.ndarray | float:
    """−log MAUVE, 0 where the area of identical histograms rounds to a hair above 1 (−log would give −4e−16)."""
    return np.maximum(-np.log(mauve), 0.0)


def histograms(labels: np.ndarray, k: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Bucket frequencies of clips with ``labels``; ``counts`` [rows, clips] weights each clip per row (resamples)."""
    onehot = np.zeros((len(labels), k))
    onehot[np.arange(len(labels)), labels] = 1.0
    if counts is None:
        return onehot.sum(0) / len(labels)
    h = np.asarray(counts, np.float64) @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        return h / h.sum(1, keepdims=True)


def pool(frames: np.ndarray, aggregation: str) -> np.ndarray:
    """One vector per clip from its frame embeddings [frames, dim] (or a vector already pooled)."""
    a = np.asarray(frames, np.float64)
    a = a.reshape(1, -1) if a.ndim == 1 else a.reshape(len(a), -1)
    if not len(a):
        raise MADError("a clip with no frame has no embedding to pool")
    return a.max(0) if aggregation == "max" else a.mean(0)


class MAD(PerClipOutputs):
    """MAD between the reference and generated clips of one registered embedder (``embedder_id``).

    Set-level: ``per_item`` is empty (module docstring). ``extra`` records every setting, the MAUVE value,
    the number of buckets, the PCA dimension, the k-means backend, both histograms and whether the number is
    comparable to the paper's (MERT-v1-330M layer 24, max pooling)."""

    name = "mad"
    output = "embedding"
    higher_is_better = False  # −log MAUVE: 0 when the two sets quantize to one histogram, larger as they diverge
    bounds = (0.0, None)

    def __init__(self, embedder_id: str = "", aggregation: str = "max", num_buckets: int | str = "auto",
                 explained_variance: float = 0.9, kmeans_num_redo: int = 5, kmeans_max_iter: int = 500,
                 discretization: int = 25, scaling: float = 5.0, mauve_seed: int = 25, n_boot: int = 1000, seed: int = 0):
        if aggregation not in AGGREGATIONS:
            raise MADError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {aggregation!r}")
        if num_buckets != "auto" and not (isinstance(num_buckets, int) and num_buckets >= 2):
            raise MADError(f"num_buckets must be 'auto' or an integer >= 2, not {num_buckets!r}")
        self.embedder_id, self.aggregation, self.num_buckets = embedder_id, aggregation, num_buckets
        self.explained_variance, self.kmeans_num_redo, self.kmeans_max_iter = explained_variance, kmeans_num_redo, kmeans_max_iter
        self.discretization, self.scaling, self.mauve_seed = discretization, scaling, mauve_seed
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        return {"embedder": self.embedder_id, "aggregation": self.aggregation, "num_buckets": self.num_buckets,
                "l2_normalize": True, "pca_whiten": False, "pca_max_data": -1, "explained_variance": self.explained_variance,
                "kmeans_num_redo": self.kmeans_num_redo, "kmeans_max_iter": self.kmeans_max_iter,
                "divergence_curve_discretization_size": self.discretization, "mauve_scaling_factor": self.scaling,
                "mauve_seed": self.mauve_seed, "smoothing": None, "p": "generated", "q": "reference"}

    def reset(self) -> None:
        super().reset()
        self._quantized: tuple | None = None

    def update(self, side: str, outputs) -> None:
        super().update(side, outputs)
        self._quantized = None

    def features(self, side: str) -> np.ndarray:
        """[clips, dim] pooled clip vectors of one side, rows in ``ids(side)`` order."""
        ids = self.ids(side)
        if not ids:
            raise MADError(f"{side}: no embeddings (empty set of clips)")
        x = np.stack([pool(self.outputs[side][i], self.aggregation) for i in ids])
        if not np.isfinite(x).all():
            raise MADError(f"{side}: embeddings contain NaN or Inf")
        return x

    def _quantization(self) -> tuple:
        """(reference labels, generated labels, buckets, info) of the point value, computed once."""
        if self._quantized is None:
            p, q = self.features("generated"), self.features("reference")
            if p.shape[1] != q.shape[1]:
                raise MADError(f"reference dim {q.shape[1]} != generated dim {p.shape[1]}")
            if len(p) < 2 or len(q) < 2:
                raise MADError(f"MAD needs at least 2 clips a side (reference {len(q)}, generated {len(p)})")
            k = auto_buckets(len(p), len(q)) if self.num_buckets == "auto" else int(self.num_buckets)
            p_lab, q_lab, info = quantize(p, q, k, self.explained_variance, self.kmeans_num_redo, self.kmeans_max_iter,
                                          self.mauve_seed)
            self._quantized = (q_lab, p_lab, k, info)
        return self._quantized

    def comparable_to_paper(self) -> bool:
        return self.embedder_id.startswith(f"{PAPER_EMBEDDER}-L{PAPER_LAYER}-") and self.aggregation == "max"

    def compute(self) -> MetricResult:
        q_lab, p_lab, k, info = self._quantization()
        p_hist, q_hist = histograms(p_lab, k), histograms(q_lab, k)
        mauve = float(mauve_of_histograms(p_hist, q_hist, self.discretization, self.scaling))
        note = ("MERT-v1-330M layer 24, max over time: the paper's embedder (its reference set and clip lengths still "
                "matter)" if self.comparable_to_paper() else
                f"embedder {self.embedder_id or '(unnamed)'}: not comparable to the paper's MAD (MERT-v1-330M layer 24)")
        extra = {**self.config(), **info, "mauve": mauve, "num_buckets_used": k, "p_hist": p_hist.tolist(),
                 "q_hist": q_hist.tolist(), "n_reference_clips": len(q_lab), "n_generated_clips": len(p_lab),
                 "comparable_to_paper": self.comparable_to_paper(), "paper_note": note,
                 "per_clip": "none: MAD is set-level (a histogram over both sets' k-means buckets)",
                 "resampling": "clips of both sides, the point value's buckets kept"}
        return self.result(float(mad_of(mauve)), {}, extra)

    def value_on_counts(self, ref_counts: np.ndarray, gen_counts: np.ndarray) -> np.ndarray:
        """MAD on each row of clip counts (rows aligned with ``ids(side)``), every clip in its point-value bucket."""
        q_lab, p_lab, k, _ = self._quantization()
        q_hist, p_hist = histograms(q_lab, k, ref_counts), histograms(p_lab, k, gen_counts)
        ok = np.isfinite(q_hist).all(1) & np.isfinite(p_hist).all(1)  # a row drawing no clip of a side: NaN
        out = np.full(len(q_hist), np.nan)
        out[ok] = mad_of(mauve_of_histograms(p_hist[ok], q_hist[ok], self.discretization, self.scaling))
        return out

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float:
        return float(self.value_on_counts(self.id_counts("reference", ref_ids), self.id_counts("generated", gen_ids))[0])

"""Audio in, matchers side by side, files out: what ``musiclm-eval memorization audit`` calls.

For each matcher (``semantic-ref`` → the paper's token OT matcher; ``embedding:<name>`` → cosine over
windows of any registered embedder) the same steps, with the same keys in ``memorization.json``:
featurize (level-normalized; generated, null and planted clips at sub-frame phases), calibrate τ
per clip on null clips (``null`` audio, else leave-one-out excerpts of the training audio), audit,
then plant altered copies of training excerpts and measure the detection table at that τ.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metrics.cache import EmbeddingCache
from metrics.memorization.audit import AuditResult, audit
from metrics.memorization.calibration import DEFAULT_SEARCH_CORRECTION, DEFAULT_TAU_CONFIDENCE
from metrics.memorization.detection import LAG_TOL_S, detection_table, plant_copies
from metrics.memorization.feature_cache import cached_features
from metrics.memorization.levels import LevelConfig, embed_clip, tokenize_clip
from metrics.memorization.matchers import (
    DEFAULT_POOLING,
    MIN_ENTROPY_BITS,
    EmbeddingMatcher,
    OTScorer,
    embedder_frame_rate,
)
from metrics.memorization.registry import DEFAULT_CLIP_FPR, MemorizationError, get_tokenizer
from metrics.sinkhorn import DEFAULT_EPS

Clips = Mapping[str, tuple[np.ndarray, int]]
DEFAULT_MATCHERS = ("semantic-ref",)


@dataclass
class Featurizer:
    """A matcher and the function that turns ``(wave, sr, phases)`` into what it compares."""

    matcher: object
    fn: Callable[[np.ndarray, int, int], object]
    model_id: str


def featurizer(name: str, level: LevelConfig = LevelConfig(), eps: float = DEFAULT_EPS, device: str = "cpu",
               min_entropy_bits: float = MIN_ENTROPY_BITS, pooling: str = DEFAULT_POOLING,
               cache: EmbeddingCache | None = None) -> Featurizer:
    """``embedding:<embedder>`` (any name of the embedder registry; windows pooled by ``pooling``, see
    :class:`EmbeddingMatcher`) or a tokenizer name/checkpoint; features read from and written to ``cache``
    when given (:mod:`metrics.memorization.feature_cache`)."""
    if name.startswith("embedding:"):
        from metrics.embedders import EmbedderError, get_embedder
        from metrics.extract import code_version

        try:
            emb = get_embedder(name.split(":", 1)[1], device=device)
        except EmbedderError as e:
            raise MemorizationError(f"matcher {name!r}: {e}") from None
        fr = embedder_frame_rate(emb)
        m = EmbeddingMatcher(emb.name or name.split(":", 1)[1], fr, emb.dim, pooling=pooling)
        fn = cached_features(lambda w, sr, p: embed_clip(w, sr, emb, fr, level, p), cache, emb.id, code_version(emb),
                             level, fr)
        return Featurizer(m, fn, emb.id)
    tok = get_tokenizer(name)
    m = OTScorer(tok.centroids, eps=eps, device=device, frame_rate=int(tok.frame_rate), min_entropy_bits=min_entropy_bits)
    fn = cached_features(lambda w, sr, p: tokenize_clip(w, sr, tok, level, p), cache, tok.id, tok.id, level,
                         float(tok.frame_rate))
    return Featurizer(m, fn, tok.id)


def audio_nulls(train: Clips, length_s: float, max_null: int, seed: int = 0,
                groups: Mapping[str, str] | None = None) -> tuple[dict, dict[str, set[str]]]:
    """Leave-one-out null clips from the training audio: non-overlapping excerpts of ``length_s``, each
    excluded from its own source clip and every clip of its ``groups`` value (training clip → recording:
    several clips cut from one recording leave together, else a null's neighbour in its own recording
    sets τ near 0). A null compared with nothing would set τ to infinity (every clip a
    copy), so one training clip, which leaves no other clip to compare with, is an error asking for nulls."""
    if len(train) < 2:
        raise MemorizationError(f"leave-one-out calibration compares excerpts of each training clip with the other "
                                f"training clips, and there is {len(train)}: give null clips (audio known not to be in "
                                "the training set; --null DIR)")
    cands = []
    for cid in sorted(train):
        wave, sr = train[cid]
        n = int(round(length_s * sr))
        cands += [(cid, o, n) for o in range(0, len(wave) - n + 1, n)]
    if len(cands) > max_null:
        keep = np.sort(np.random.default_rng(seed).choice(len(cands), max_null, replace=False))
        cands = [cands[i] for i in keep]
    null = {f"{cid}@{o / train[cid][1]:.2f}s": (train[cid][0][o : o + n], train[cid][1]) for cid, o, n in cands}
    group = {cid: (groups or {}).get(cid, cid) for cid in train}
    members = {g: {c for c in train if group[c] == g} for g in set(group.values())}
    return null, {k: members[group[k.rsplit("@", 1)[0]]] for k in null}


@dataclass
class AudioAudit:
    results: dict[str, AuditResult]  # matcher name -> audit of the generated clips
    detection: dict[str, dict]  # matcher name -> alteration -> {n, detected, rate, ci95, reported}
    settings: dict = field(default_factory=dict)
    model_ids: dict[str, str] = field(default_factory=dict)
    planted: dict[str, dict] = field(default_factory=dict)  # matcher name -> what was planted (why_empty when nothing)

    @property
    def primary(self) -> str:
        return next(iter(self.results))

    def summary(self) -> dict:
        """``memorization.json``: the first matcher's keys at the top (readers of earlier versions), every
        matcher under ``matchers`` with the same keys, the detection tables under ``detection``."""
        per = {}
        for name, res in self.results.items():
            d = res.to_dict()
            d["detection"] = self.detection.get(name, {})
            d["detection_planted"] = self.planted.get(name)
            d["model_id"] = self.model_ids.get(name)
            per[name] = d
        top = dict(per[self.primary])
        return {**top, "matcher": self.primary, "matchers": per, "detection": self.detection,
                "detection_planted": self.planted, **self.settings}


def audit_audio(generated: Clips, train: Clips, matchers: Sequence[str] = DEFAULT_MATCHERS, null: Clips | None = None,
                fpr: float = DEFAULT_CLIP_FPR, window_s: float = 5.0, gen_hop_s: float = 1.0, train_hop_s: float = 0.04,
                level: LevelConfig = LevelConfig(), phases: int = 4, seed: int = 0, heldout: float = 0.5,
                max_null: int = 200, detect: int = 20, alterations: Mapping | None = None, lag_tol_s: float = LAG_TOL_S,
                eps: float = DEFAULT_EPS, device: str = "cpu", engine=None,
                min_entropy_bits: float = MIN_ENTROPY_BITS, pooling: str = DEFAULT_POOLING,
                tau_confidence: float | None = DEFAULT_TAU_CONFIDENCE, groups: Mapping[str, str] | None = None,
                cache: EmbeddingCache | None = None, search_correction: bool = DEFAULT_SEARCH_CORRECTION) -> AudioAudit:
    """Audit ``generated`` against ``train`` with every matcher; ``detect`` planted copies per alteration (0: none).
    ``tau_confidence``: see :mod:`metrics.memorization.calibration`; ``groups``: training clip → recording,
    for leave-one-out nulls (:func:`audio_nulls`); ``cache``: every clip's features go through it, so a rerun
    after a kill recomputes only what was not cached (:mod:`metrics.memorization.feature_cache`);
    ``search_correction``: see :mod:`metrics.memorization.calibration`."""
    if not generated or not train:
        raise MemorizationError("audit: " + ("no generated clips" if not generated else "no training clips"))
    gen_s = float(np.median([len(w) / sr for w, sr in generated.values()]))
    length_s = min(gen_s, min(len(w) / sr for w, sr in train.values()))
    if null is None and length_s < gen_s - 1e-3:
        warnings.warn(f"the shortest training clip ({length_s:g} s) is shorter than the generated clips ({gen_s:g} s, "
                      f"median): leave-one-out null clips are {length_s:g} s, so the per-clip false-alarm rate is "
                      "calibrated on shorter clips than the audited ones and can be higher for them; give null clips "
                      "as long as the generated ones (--null DIR)", stacklevel=2)
    results, tables, planted, ids = {}, {}, {}, {}
    for spec in matchers:
        fz = featurizer(spec, level, eps, device, min_entropy_bits, pooling, cache)
        m = fz.matcher
        fr = m.frame_rate
        kw = {"fpr": fpr, "window": max(1, round(window_s * fr)), "gen_hop": max(1, round(gen_hop_s * fr)),
              "train_hop": max(1, round(train_hop_s * fr)), "seed": seed, "matcher": m, "tau_confidence": tau_confidence,
              "search_correction": search_correction}
        gen = {cid: fz.fn(w, sr, phases) for cid, (w, sr) in generated.items()}
        trn = {cid: fz.fn(w, sr, 1) for cid, (w, sr) in train.items()}
        if null is not None:
            nul, excl, source = null, None, "null"
        else:
            nul, excl = audio_nulls(train, length_s, max_null, seed, groups)
            source = "leave-one-out"
        feats = {cid: fz.fn(w, sr, phases) for cid, (w, sr) in nul.items()}
        run = audit if engine is None else engine.audit
        res = run(gen, trn, None, null=feats, null_exclude=excl, null_source=source, heldout=heldout, **kw)
        results[m.name], ids[m.name] = res, fz.model_id
        if detect:
            tables[m.name], planted[m.name] = measure_detection(fz, train, trn, res.tau, length_s, detect, alterations,
                                                                lag_tol_s, phases, kw)
    settings = {"window_s": window_s, "gen_hop_s": gen_hop_s, "train_hop_s": train_hop_s, "phases": phases,
                "detection_per_alteration": detect, "tau_confidence": tau_confidence, "search_correction": search_correction,
                "detection_lag_tol_s": lag_tol_s, "excerpt_s": length_s,
                "level": {"mode": level.mode, "ref_dbfs": level.ref_dbfs, "window_s": level.window_s,
                          "floor_db": level.floor_db}}
    return AudioAudit(results, tables, settings, ids, planted)


def shortest_phase(features) -> int:
    """Frames in a featurized clip (its shortest sub-frame phase when it has several)."""
    return min(len(x) for x in (features if isinstance(features, list) else [features]))


def measure_detection(fz: Featurizer, train: Clips, trn: Mapping, tau: float, length_s: float, detect: int,
                      alterations: Mapping | None, lag_tol_s: float, phases: int, kw: dict) -> tuple[dict, dict]:
    """The detection table at the audit's τ and what was planted for it. Copies are as long as the data allow
    (see :func:`plant_copies`); when none can be planted or audited, the table is empty and the report says
    why — the audit's own result is never lost to its detection table."""
    fr = fz.matcher.frame_rate
    pf = {}

    def usable(pid: str, wave: np.ndarray, sr: int) -> bool:  # featurize once, keep what a window fits
        f = fz.fn(wave, sr, phases)
        if shortest_phase(f) < kw["window"]:
            return False
        pf[pid] = f
        return True

    _, truth, report = plant_copies(train, length_s, detect, kw["seed"], alterations, frame_rate=fr,
                                    min_s=kw["window"] / fr, usable=usable)
    if not pf:
        return {}, report
    try:
        det = audit(pf, trn, tau=tau, **kw)
    except MemorizationError as e:
        return {}, {**report, "why_empty": f"the planted copies could not be audited: {e}"}
    return detection_table(det.matches, truth, lag_tol_s), report


def load_clips(directory: str | Path, on_error: str = "raise") -> tuple[dict[str, tuple[np.ndarray, int]], list[str]]:
    """A folder of audio (decoded by ``metrics.audio.load_dir``) → {id: (wave, sr)} and skip notes."""
    from metrics.audio import load_dir

    report = load_dir(directory, on_error=on_error)
    if not report.clips:
        raise MemorizationError(f"{directory}: no usable audio clips" +
                                (f" ({len(report.skipped)} skipped)" if report.skipped else ""))
    return {c.id: (c.wave, c.sr) for c in report.clips}, [f"{s.path}: {s.reason}" for s in report.skipped]


def audit_dirs(generated: str | Path, train: str | Path, out: str | Path, matchers: Sequence[str] = DEFAULT_MATCHERS,
               null: str | Path | None = None, on_error: str = "raise", **kw) -> dict:
    """Folders in (decoded by ``metrics.audio``), :func:`audit_audio`, files out: ``memorization.json``,
    ``matches.csv`` (every matcher, a ``matcher`` column), ``match_rate.png`` and ``detection.png``."""
    import warnings

    from metrics.memorization.io import write_outputs
    from metrics.memorization.plots import plot_audit, plot_detection

    gen, skipped = load_clips(generated, on_error)
    trn, skipped_t = load_clips(train, on_error)
    nul, skipped_n = load_clips(null, on_error) if null is not None else (None, [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = audit_audio(gen, trn, matchers, nul, **kw)
    summary = {**res.summary(), "generated_dir": str(generated), "train_dir": str(train),
               "null_dir": None if null is None else str(null), "skipped": skipped + skipped_t + skipped_n,
               "warnings": sorted({str(w.message) for w in caught}), "seed": kw.get("seed", 0)}
    matches = [{**m, "matcher": name} for name, r in res.results.items() for m in r.matches]

    measured = any(res.detection.values())  # a table can be empty: nothing the data allowed was plantable

    def plots(d: Path) -> Path:
        if measured:
            plot_detection(res.detection, d)
        return plot_audit(res.results[res.primary], d)

    paths = write_outputs(out, summary, matches, plots)
    if measured:
        paths["detection_png"] = Path(out) / "detection.png"
    paths["store"] = write_audit_store(out, res, generated, summary)
    return {**summary, "files": {k: str(v) for k, v in paths.items()}}


def write_audit_store(out: str | Path, res: AudioAudit, generated: str | Path, summary: dict) -> Path:
    """The project's results store beside memorization.json (``kind: memorization``): one system, the
    audited generated set; per matcher its reported-clip rate, exact rate and measured per-clip false-alarm
    rate with Wilson 95 % CIs, so every command's outputs open the same way."""
    from metrics.intervals import wilson_ci
    from metrics.store import write_store

    metrics = {}
    for name, r in res.results.items():
        n = len(r.best_cost)
        k_rep = sum(v < float("inf") for v in r.best_cost.values())
        k_ex = round(r.exact_rate * n)
        cal = r.calibration
        metrics[f"{name}_approx_rate"] = {"value": r.approx_rate, "ci95": list(wilson_ci(k_rep, n))}
        metrics[f"{name}_exact_rate"] = {"value": r.exact_rate, "ci95": list(wilson_ci(k_ex, n))}
        metrics[f"{name}_clip_false_alarm_rate"] = {"value": cal.clip_false_alarm_rate,
                                                    "ci95": list(cal.clip_false_alarm_ci95)}
    write_store(out, "memorization", {"generated": {"dir": str(generated), "n_clips": len(next(iter(res.results.values())).best_cost),
                                                    "metrics": metrics}},
                metadata={"matchers": list(res.results), "fpr_target": summary.get("fpr_target"),
                          "memorization_json": "memorization.json"})
    return Path(out) / "results.json"

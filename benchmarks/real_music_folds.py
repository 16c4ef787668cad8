"""False alarms of the memorization audit measured across splits of the real-music set, not on one.

:func:`benchmarks.real_music.real_set` fixes which Wesnoth pieces are training and which are novel; a
false-alarm rate tuned and measured on that one split says little about another. Here the pieces rotate:
the installed soundtrack (every piece long enough for one training excerpt) is shuffled once (seeded) and
cut into ``k`` folds; in fold i the pieces of fold i are *novel* and every other piece is *training*, so
each piece is novel in exactly one fold and no piece is on both sides of a fold. Per fold the default audit
(leave-one-out nulls from the training clips, ``--fpr 0.01``, both matchers) runs on

- training clips: 30 s of every training piece (from 20 s in), as one 30 s clip (the longer-training
  shape) or as three 10 s clips (the MusicCaps shape: 10 s training clips);
- generated clips: every non-overlapping 10 s excerpt of every novel piece (from 2 s to 2 s before its
  end; at most ``novel_per_piece`` evenly spaced ones), and :data:`FOLD_COPIES` planted copies of training
  clips (exact on and off the 40 ms frame grid, −6 dB, 30 and 20 dB-SNR white noise);
- the audit's own detection table (``detect`` planted copies per alteration of :data:`FOLD_ALTERATIONS`).

Pooled over folds: the share of novel clips reported as copies with its Wilson 95 % interval (per matcher
and shape) and with a piece-clustered one (:func:`piece_clustered_ci`: excerpts of one piece are not
independent), the planted copies found at the right training clip and lag, and detection per alteration.

    python -m benchmarks.real_music_folds            # writes docs/figures/memorization_real_folds.json

The committed artifact: the default audit (``--tau-confidence 0.95``, searched-windows correction) with the
default matcher, the two shapes side by side on 2 cores, the same with novel excerpts every 5 s
(``--novel-hop 5``: half-overlapping, twice the clips), then joined with the earlier artifact (γ chosen on
folds of the seed-2 rotation, not on these; runs before the correction are kept as ``<shape>+no-search-correction``)::

    python -m benchmarks.real_music_folds --k 4 --shape musiccaps --matcher embedding:mel --out a.json
    python -m benchmarks.real_music_folds --k 4 --shape long-train --matcher embedding:mel --out b.json
    python -m benchmarks.real_music_folds --k 4 --shape musiccaps --matcher embedding:mel --novel-hop 5 --out c.json
    python -m benchmarks.real_music_folds --k 4 --shape long-train --matcher embedding:mel --novel-hop 5 --out d.json
    python -m benchmarks.real_music_folds --merge a.json b.json c.json d.json docs/figures/memorization_real_folds.json

The same two runs with ``--seed 2`` (the rotation γ was chosen on) are in it as ``<shape>+seed-2``, the
expected-rate rows from the earlier run, and ``python -m benchmarks.real_music_shared`` adds the
shared-material check of every reported clip.

``--tau-confidence 0`` measures the earlier expected-rate rule, ``--no-search-correction`` τ at ``--fpr`` on the
leave-one-out minima, ``--null-pieces --seed 1`` nulls of other pieces.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.real_music import REAL_SR, cut_excerpt, excerpt_starts, real_pieces
from metrics.memorization import DEFAULT_CLIP_FPR, DEFAULT_TAU_CONFIDENCE, MemorizationError
from metrics.memorization.calibration import DEFAULT_SEARCH_CORRECTION

ARTIFACT = Path("docs/figures/memorization_real_folds.json")
TRAIN_START_S, TRAIN_S, CLIP_S, EDGE_S = 20.0, 30.0, 10.0, 2.0
SHAPES = {"musiccaps": 10.0, "long-train": 30.0}  # shape -> training clip length (s); generated clips are 10 s
MATCHERS = ("semantic-ref", "embedding:mel")
# planted copies per fold: id -> (index among the fold's training pieces, offset s into its 30 s, gain dB, SNR dB)
FOLD_COPIES = {"exact": (0, 0.0, 0.0, None), "exact_offgrid": (1, 10.013, 0.0, None), "gain_m6db": (2, 20.0, -6.0, None),
               "noise_30db": (3, 0.0, 0.0, 30.0), "noise_20db": (4, 10.0, 0.0, 20.0)}
FOLD_ALTERATIONS = ("exact", "gain_+6db", "noise_20db", "shift_offgrid")
LAG_TOL_S = 0.25


def min_piece_s() -> float:
    """A piece is in the rotation when it holds the 30 s training excerpt and leaves its end margin."""
    return TRAIN_START_S + TRAIN_S + EDGE_S


def usable_pieces() -> list[str]:
    """Every installed piece long enough to be a training piece, sorted."""
    import soundfile as sf

    return [f for f in real_pieces() if sf.info(f).duration >= min_piece_s()]


def fold_split(pieces: list[str], k: int, seed: int = 0, null_pieces: bool = False) -> list[dict[str, list[str]]]:
    """``k`` folds over ``pieces``: each ``{"novel": [...], "train": [...]}``, the novel sets a partition of the
    pieces (each novel exactly once), the training set every other piece (sorted). ``null_pieces``: fold i's
    ``null`` pieces are fold i+1's novel ones (mod k), taken out of its training set — the audit then
    calibrates τ on excerpts of pieces that are neither training nor audited (``--null DIR``)."""
    if not 2 <= k <= len(pieces):
        raise MemorizationError(f"real-music folds: k={k} folds over {len(pieces)} pieces (need 2 ≤ k ≤ pieces)")
    order = [pieces[i] for i in np.random.default_rng(seed).permutation(len(pieces))]
    groups = [sorted(g) for g in np.array_split(np.asarray(order, dtype=object), k)]
    if not null_pieces:
        return [{"novel": list(g), "train": sorted(set(pieces) - set(g))} for g in groups]
    if k < 3:
        raise MemorizationError(f"real-music folds: nulls from other pieces need k ≥ 3 folds (novel, null, training), not {k}")
    return [{"novel": list(g), "null": groups[(i + 1) % k], "train": sorted(set(pieces) - set(g) - set(groups[(i + 1) % k]))}
            for i, g in enumerate(groups)]


def excerpts(files: list[str], prefix: str, per_piece: int | None, sr: int = REAL_SR, hop_s: float = CLIP_S) -> dict:
    """Every 10 s excerpt every ``hop_s`` (default: non-overlapping) of every file (or ``per_piece`` of each),
    ``{prefix_stem_start: (wave, sr)}``."""
    import soundfile as sf

    # starts every hop_s whose 10 s still end EDGE_S before the end: excerpt_starts of hop_s-long clips
    # over a piece shortened by the overlap
    return {excerpt_id(prefix, f, s0): cut_excerpt(f, float(s0), CLIP_S, sr)
            for f in files for s0 in excerpt_starts(sf.info(f).duration - (CLIP_S - hop_s), hop_s, per_piece, EDGE_S)}


def excerpt_id(prefix: str, path: str, start: float) -> str:
    """``<prefix>_<stem>_<start>``: the id of an excerpt (:func:`novel_piece` reads the piece back)."""
    return f"{prefix}_{Path(path).stem}_{start:05.1f}"


def fold_clips(fold: dict, train_clip_s: float, sr: int = REAL_SR, seed: int = 0,
               novel_per_piece: int | None = None, novel_hop_s: float = CLIP_S) -> tuple[dict, dict, dict]:
    """``(train, generated, truth)`` of one fold at one shape; ``truth``: planted id → (training id, start s)."""
    from metrics.memorization.alter import gain, noise

    stem = lambda f: Path(f).stem  # noqa: E731
    audio = {f: cut_excerpt(f, TRAIN_START_S, TRAIN_S + 1.0, sr)[0] for f in fold["train"]}  # 1 s beyond: off-grid copies
    train = {}
    for f in fold["train"]:
        for o in np.arange(0.0, TRAIN_S - 1e-9, train_clip_s):
            cid = stem(f) if train_clip_s >= TRAIN_S else f"{stem(f)}_{o:02.0f}"
            train[cid] = (audio[f][int(o * sr) : int((o + train_clip_s) * sr)], sr)
    rng = np.random.default_rng(seed)
    gen, truth, n = {}, {}, int(CLIP_S * sr)
    for gid, (i, off, db, snr) in FOLD_COPIES.items():
        f = fold["train"][i * len(fold["train"]) // len(FOLD_COPIES)]
        x = gain(db)(audio[f][int(round(off * sr)) : int(round(off * sr)) + n], sr, rng)
        gen[f"copy_{gid}"] = (noise(snr)(x, sr, rng) if snr is not None else x, sr)
        clip_o = np.floor(off / train_clip_s + 1e-9) * train_clip_s
        cid = stem(f) if train_clip_s >= TRAIN_S else f"{stem(f)}_{clip_o:02.0f}"
        truth[f"copy_{gid}"] = (cid, float(off - clip_o))
    gen.update(excerpts(fold["novel"], "novel", novel_per_piece, sr, novel_hop_s))
    return train, gen, truth


def found(matches: list[dict], truth: dict) -> dict[str, bool]:
    """Each planted copy: reported against its training clip at its lag (± :data:`LAG_TOL_S`)."""
    return {g: any(m["generated_id"] == g and m["train_id"] == src
                   and abs(m["train_offset_s"] - m["gen_offset_s"] - start) <= LAG_TOL_S + 1e-9 for m in matches)
            for g, (src, start) in truth.items()}


def nearest(matches: list[dict], ids: list[str]) -> dict[str, list]:
    """For each reported novel clip, the training clip of its lowest-cost match and that cost: what a reader
    needs to tell a false alarm from a piece that shares material with a training piece."""
    best = {}
    for m in matches:
        if m["generated_id"] in ids and (m["generated_id"] not in best or m["cost"] < best[m["generated_id"]][1]):
            best[m["generated_id"]] = [m["train_id"], float(m["cost"])]
    return best


def novel_piece(clip_id: str) -> str:
    """The piece of a novel excerpt id (``novel_<stem>_<start>``, see :func:`excerpts`)."""
    return clip_id.split("_", 1)[1].rsplit("_", 1)[0]


def piece_groups(train: dict, train_clip_s: float) -> dict[str, str]:
    """Training clip id → its piece (``<stem>_<offset>`` when a piece is cut into several clips, see
    :func:`fold_clips`): the clips of one recording leave a leave-one-out null's comparisons together
    (:func:`metrics.memorization.pipeline.audio_nulls`)."""
    return {cid: cid if train_clip_s >= TRAIN_S else cid.rsplit("_", 1)[0] for cid in train}


def run_fold(fold: dict, train_clip_s: float, matchers=MATCHERS, detect: int = 4, seed: int = 0,
             novel_per_piece: int | None = None, tau_confidence: float | None = DEFAULT_TAU_CONFIDENCE,
             search_correction: bool = DEFAULT_SEARCH_CORRECTION, novel_hop_s: float = CLIP_S) -> dict:
    """The default audit on one fold at one shape; per matcher the novel clips it reported, the planted
    copies it found, its calibration and its detection table."""
    from metrics.memorization.alter import ALTERATIONS
    from metrics.memorization.pipeline import audit_audio

    train, gen, truth = fold_clips(fold, train_clip_s, seed=seed, novel_per_piece=novel_per_piece, novel_hop_s=novel_hop_s)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        null = excerpts(fold["null"], "null", None) if "null" in fold else None
        res = audit_audio(gen, train, matchers, null=null, detect=detect, seed=seed, groups=piece_groups(train, train_clip_s),
                          alterations={a: ALTERATIONS[a] for a in FOLD_ALTERATIONS}, tau_confidence=tau_confidence,
                          search_correction=search_correction)
    out = {"novel_pieces": [Path(f).stem for f in fold["novel"]], "n_train_clips": len(train),
           "null_pieces": [Path(f).stem for f in fold.get("null", [])],
           "seconds": round(time.perf_counter() - t0, 1), "warnings": sorted({str(w.message) for w in caught}),
           "matchers": {}}
    for name, r in res.results.items():
        novel = sorted(k for k in r.best_cost if k.startswith("novel_"))
        cal = r.calibration
        out["matchers"][name] = {
            "novel_clips": len(novel), "novel_reported": [k for k in novel if r.best_cost[k] < np.inf],
            "novel_clips_by_piece": {p: sum(novel_piece(k) == p for k in novel) for p in sorted({novel_piece(k) for k in novel})},
            "reported_as": nearest(r.matches, [k for k in novel if r.best_cost[k] < np.inf]),
            "planted_found": found(r.matches, truth), "tau": float(r.tau),
            "calibration": {"source": cal.source, "n_calibration": cal.n_calibration, "n_heldout": cal.n_heldout,
                            "clip_false_alarms": cal.clip_false_alarms, "tail": cal.tail,
                            "confidence": cal.confidence, "null_fpr": cal.null_fpr, "searched_ratio": cal.searched_ratio},
            "detection": {a: {"n": t["n"], "detected": t["detected"]} for a, t in res.detection.get(name, {}).items()},
        }
    return out


def pooled(folds: list[dict]) -> dict:
    """Per matcher, over the folds: novel clips reported / novel clips (Wilson 95 %), planted copies found,
    detection per alteration."""
    from metrics.intervals import wilson_ci

    out = {}
    for name in folds[0]["matchers"]:
        per = [f["matchers"][name] for f in folds]
        n, k = sum(p["novel_clips"] for p in per), sum(len(p["novel_reported"]) for p in per)
        pf = sum(sum(p["planted_found"].values()) for p in per)
        det = {}
        for a in per[0]["detection"]:
            dn, dk = sum(p["detection"][a]["n"] for p in per), sum(p["detection"][a]["detected"] for p in per)
            det[a] = {"n": dn, "detected": dk, "ci95": list(wilson_ci(dk, dn))}
        by_piece: dict[str, list[int]] = {}  # piece -> [reported, clips]: false alarms cluster by piece
        for p in per:
            for piece, c in p.get("novel_clips_by_piece", {}).items():
                by_piece.setdefault(piece, [0, 0])[1] += c
            for cid in p["novel_reported"]:
                by_piece.setdefault(novel_piece(cid), [0, 0])[0] += 1
        pieces = {} if not all("novel_clips_by_piece" in p for p in per) else {  # runs before it was recorded: none
            "pieces": len(by_piece), "pieces_reported": sum(r > 0 for r, _ in by_piece.values()),
            "reported_by_piece": {q: v for q, v in sorted(by_piece.items()) if v[0]},
            "ci95_pieces": piece_clustered_ci(list(by_piece.values()))}
        out[name] = {"novel_clips": n, "novel_reported": k, "rate": k / n if n else None, **pieces,
                     "ci95": list(wilson_ci(k, n)), "planted": sum(len(p["planted_found"]) for p in per),
                     "planted_found": pf, "detection": det}
    return out


PIECE_BOOT = 2000


def piece_clustered_ci(by_piece: list[list[int]], n_boot: int = PIECE_BOOT, seed: int = 0) -> list[float]:
    """95 % interval of the pooled share of novel clips reported with the *pieces* as the sampled units: a
    percentile bootstrap that resamples whole pieces ([reported, clips] each) and recomputes reported / clips
    (the cluster bootstrap; Davison & Hinkley 1997, §3.8). Excerpts of one piece — overlapping ones above
    all — are not independent draws; the clip-level Wilson interval treats them as such."""
    from metrics.intervals import bootstrap_ci

    k, n = (np.array([v[i] for v in by_piece], dtype=np.float64) for i in (0, 1))
    if not len(n) or n.sum() == 0:
        return [0.0, 1.0]
    def share(idx: np.ndarray) -> float:  # bootstrap_ci hands the resampled piece indices over as floats
        i = idx.astype(np.int64)
        return float(k[i].sum() / n[i].sum()) if n[i].sum() else 0.0

    return list(bootstrap_ci(np.arange(len(n)), n_boot, seed, statistic=share))


def measure(k: int = 5, shapes=tuple(SHAPES), matchers=MATCHERS, detect: int = 4, seed: int = 0,
            novel_per_piece: int | None = None, folds_only: list[int] | None = None, log=print,
            null_pieces: bool = False, tau_confidence: float | None = DEFAULT_TAU_CONFIDENCE,
            search_correction: bool = DEFAULT_SEARCH_CORRECTION, novel_hop_s: float = CLIP_S) -> dict:
    """Every fold at every shape; the artifact's content. Another rotation than seed 0 is recorded as
    ``<shape>+seed-<seed>`` (so rotations merge side by side). With ``null_pieces`` the shapes are recorded as
    ``<shape>+null-pieces`` (τ from nulls of other pieces, see :func:`fold_split`); with the expected-rate
    rule (``tau_confidence`` None or 0, the earlier calibration) as ``<shape>+expected-rate``."""
    tau_confidence = tau_confidence or None
    pieces = usable_pieces()
    if len(pieces) < 2 * len(FOLD_COPIES):
        raise MemorizationError(f"real-music folds: {len(pieces)} installed pieces of ≥ {min_piece_s():g} s "
                                "(apt-get install wesnoth-1.16-music)")
    split = fold_split(pieces, k, seed, null_pieces)
    result = {"k": k, "seed": seed, "pieces": len(pieces), "min_piece_s": min_piece_s(), "clip_s": CLIP_S,
              "matchers": list(matchers), "detect_per_alteration_per_fold": detect, "novel_per_piece": novel_per_piece,
              "fpr": DEFAULT_CLIP_FPR, "shapes": {}}
    for shape in shapes:
        runs = []
        for i, fold in enumerate(split):
            if folds_only is not None and i not in folds_only:
                continue
            r = run_fold(fold, SHAPES[shape], matchers, detect, seed, novel_per_piece, tau_confidence, search_correction,
                         novel_hop_s)
            log(f"{shape} fold {i}: {r['seconds']} s, " + ", ".join(
                f"{m}: {len(v['novel_reported'])}/{v['novel_clips']} novel reported, "
                f"{sum(v['planted_found'].values())}/{len(v['planted_found'])} planted found"
                for m, v in r["matchers"].items()))
            runs.append({"fold": i, **r})
        key = (shape + (f"+seed-{seed}" if seed else "") + ("+null-pieces" if null_pieces else "") + ("" if tau_confidence else "+expected-rate")
               + ("" if search_correction else "+no-search-correction")
               + ("" if novel_hop_s == CLIP_S else f"+novel-hop-{novel_hop_s:g}"))
        result["shapes"][key] = {"train_clip_s": SHAPES[shape], "seed": seed, "null_pieces": null_pieces,
                                 "tau_confidence": tau_confidence, "search_correction": search_correction,
                                 "novel_hop_s": novel_hop_s, "folds": runs, "pooled": pooled(runs)}
    return result


def merge(parts: list[dict]) -> dict:
    """One artifact from runs over the same pieces that ran different shapes or matchers side by side (two
    processes on two cores): fold by fold, the matchers' entries joined; pooled recomputed. Each shape
    records its own seed; runs of one shape must share it (the same split). A shape entry that does not record
    ``search_correction`` was calibrated before the searched-windows correction existed: it is kept as
    ``<shape>+no-search-correction`` (and its ``shared_material`` check with it), so a corrected run of the same
    shape sits beside it instead of being joined to it."""
    parts = [legacy_keys(p) for p in parts]
    if len({(p["k"], p["pieces"]) for p in parts}) != 1:
        raise MemorizationError("real-music folds: the runs to merge were not cut from the same pieces (k, pieces)")
    for shape in {s for p in parts for s in p["shapes"]}:
        if len({p["shapes"][shape].get("seed", p["seed"]) for p in parts if shape in p["shapes"]}) != 1:
            raise MemorizationError(f"real-music folds: the runs of {shape!r} to merge were not cut from the same split")
    out = {**parts[0], "matchers": sorted({m for p in parts for m in p["matchers"]}), "shapes": {}}
    shared = next((p["shared_material"] for p in parts if "shared_material" in p), None)
    if shared is not None:  # the check of every part's clips, whichever part carries it (the earlier artifact)
        out["shared_material"] = shared
    for p in parts:
        for shape, s in p["shapes"].items():
            entry = out["shapes"].setdefault(shape, {**s, "seed": s.get("seed", p["seed"]), "folds": []})
            have = {f["fold"]: f for f in entry["folds"]}
            for f in s["folds"]:
                if f["fold"] in have:
                    have[f["fold"]]["matchers"].update(f["matchers"])
                    have[f["fold"]]["seconds"] += f["seconds"]
                else:
                    out["shapes"][shape]["folds"].append(json.loads(json.dumps(f)))
    for s in out["shapes"].values():
        s["folds"].sort(key=lambda f: f["fold"])
        s["pooled"] = pooled(s["folds"])
    return out


def legacy_keys(part: dict) -> dict:
    """``part`` with every shape that predates the searched-windows correction renamed (see :func:`merge`)."""
    def key(shape: str, s: dict) -> str:
        return shape if "search_correction" in s or shape.endswith("+no-search-correction") else shape + "+no-search-correction"

    out = {**part, "shapes": {key(sh, s): {**s, "search_correction": s.get("search_correction", False)}
                              for sh, s in part["shapes"].items()}}
    if "shared_material" in part:
        out["shared_material"] = {**part["shared_material"], "clips": {
            key(sh, part["shapes"].get(sh, {"search_correction": True})): v
            for sh, v in part["shared_material"]["clips"].items()}}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--detect", type=int, default=4)
    p.add_argument("--novel-per-piece", type=int, default=None)
    p.add_argument("--shape", action="append", choices=list(SHAPES))
    p.add_argument("--matcher", action="append")
    p.add_argument("--fold", type=int, action="append", help="run only these folds (timing)")
    p.add_argument("--seed", type=int, default=0, help="the rotation's shuffle (and the planted copies' noise)")
    p.add_argument("--null-pieces", action="store_true", help="calibrate τ on the next fold's pieces (--null), not leave-one-out")
    p.add_argument("--tau-confidence", type=float, default=DEFAULT_TAU_CONFIDENCE,
                   help="the audit's --tau-confidence (0: the expected-rate rule)")
    p.add_argument("--no-search-correction", action="store_true",
                   help="τ at --fpr on the leave-one-out null minima, not at the searched-windows level")
    p.add_argument("--novel-hop", type=float, default=CLIP_S,
                   help="seconds between novel excerpts (default: the clip length, non-overlapping)")
    p.add_argument("--out", default=str(ARTIFACT))
    p.add_argument("--merge", nargs="+", metavar="JSON", help="join these runs' JSON into --out instead of measuring")
    a = p.parse_args(argv)
    if a.merge:
        Path(a.out).write_text(json.dumps(merge([json.loads(Path(f).read_text()) for f in a.merge]), indent=1) + "\n")
        return
    res = measure(a.k, tuple(a.shape or SHAPES), tuple(a.matcher or MATCHERS), a.detect, a.seed, a.novel_per_piece,
                  a.fold, lambda s: print(s, flush=True), a.null_pieces, a.tau_confidence, not a.no_search_correction,
                  a.novel_hop)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""The evaluation core: clip sources × models × metrics → one document (what every command calls).

``stats``, ``fad``, ``score``, ``compare`` and ``demo`` are thin CLI layers over the functions here
(``benchmarks/cli/``); tests and other tools call them directly. Every failure is a clear error
naming the file and the problem — never a score of −1.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

from metrics.audio import AudioError, PairingError, load_dir, pair_ids, scan_dir
from metrics.cache import EmbeddingCache, atomic_write_bytes
from metrics.embedders import Embedder
from metrics.engine import LOCAL, EmbedderSpec, Engine
from metrics.engine import stats_of as stats_of
from metrics.extract import EmbeddingSet, preprocessing_key
from metrics.fad import EmbeddingStats, FADError, SingularCovarianceWarning, bootstrap_fad_ci, fad_inf, per_clip_fad
from metrics.fad import fad as fad_metric

__all__ = ["AudioError", "PairingError", "SHIPPED_CLASSIFIER", "compute_fad", "compute_score", "compute_stats",
           "dir_stats", "embed_dir", "load_classifier_spec"]


def embed_dir(directory: str | Path, embedder: Embedder, cache: EmbeddingCache | None = None, on_error: str = "raise",
              workers: int = 0, batch_size: int = 8, progress: bool = False, engine: Engine | None = None,
              spec: EmbedderSpec | None = None) -> EmbeddingSet:
    """Embed every audio file of a directory; empty or all-unusable directories are errors."""
    paths = list(scan_dir(directory).values())
    embs = (engine or LOCAL).embed(paths, embedder, cache, batch_size=batch_size, workers=workers, progress=progress,
                                   on_error=on_error, spec=spec)
    if not embs:
        raise AudioError(directory, f"no usable clips ({len(embs.skipped)} skipped)")
    return embs


def dir_stats(directory: str | Path, embedder: Embedder, cache: EmbeddingCache | None = None, on_error: str = "raise",
              workers: int = 0, batch_size: int = 8, progress: bool = False, engine: Engine | None = None,
              spec: EmbedderSpec | None = None) -> tuple[EmbeddingStats, list]:
    """Statistics of a directory without keeping its embeddings (the Ray engine merges per-batch partials)."""
    paths = list(scan_dir(directory).values())
    s, skipped = (engine or LOCAL).stats(paths, embedder, cache, batch_size=batch_size, workers=workers,
                                         progress=progress, on_error=on_error, spec=spec)
    if not s.n_clips:
        raise AudioError(directory, f"no usable clips ({len(skipped)} skipped)")
    return s, skipped


def compute_stats(audio: str | Path, embedder: Embedder, out: str | Path | None = None, **kw) -> EmbeddingStats:
    """Statistics (mu, sigma, n) of a directory's embeddings, optionally saved as ``.npz``."""
    s, _ = dir_stats(audio, embedder, **kw)
    if out is not None:
        s.save(out)
    return s


def _reference_stats(reference: str | Path, embedder: Embedder, **kw) -> tuple[EmbeddingStats, list]:
    path = Path(reference)
    if path.is_file() and path.suffix == ".npz":
        s = EmbeddingStats.load(path)
        if s.embedder != embedder.id:
            raise FADError(f"{path}: statistics were computed with embedder {s.embedder or '(unknown)'!r}, but this run "
                           f"uses {embedder.id!r}; recompute them with `musiclm-eval stats --embedder {embedder.name}`")
        pre = s.config.get("preprocessing")
        if pre is not None and pre != preprocessing_key(embedder):
            raise FADError(f"{path}: statistics used pre-processing {pre!r}, this run uses {preprocessing_key(embedder)!r}")
        return s, []
    return dir_stats(path, embedder, **kw)


def compute_fad(reference: str | Path, generated: str | Path, embedder: Embedder, *, inf: bool = False,
                per_clip: str | Path | None = None, bootstrap: int = 0, seed: int = 0, **kw) -> dict:
    """FAD of ``generated`` (a directory) against ``reference`` (a directory or a stats ``.npz``).

    Returns the JSON document of ``musiclm-eval fad``; ``kw`` go to ``embed_dir`` (cache, on_error, …).
    """
    ref, ref_skipped = _reference_stats(reference, embedder, **kw)
    if inf or bootstrap or per_clip is not None:  # these need every generated clip's frames
        gen = embed_dir(generated, embedder, **kw)
        gen_stats, gen_skipped = stats_of(gen, embedder), gen.skipped
    else:
        gen_stats, gen_skipped = dir_stats(generated, embedder, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SingularCovarianceWarning)
        result = fad_metric(ref, gen_stats)
    for w in caught:  # re-emit, and keep them in the result so a JSON reader sees them too
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    doc = {"fad": result.value, **result.extra, "embedder_name": embedder.name,
           "preprocessing": preprocessing_key(embedder), "seed": seed,
           "warnings": [str(w.message) for w in caught],
           "skipped": {"reference": [vars(s) for s in ref_skipped], "generated": [vars(s) for s in gen_skipped]}}
    if inf:
        doc["fad_inf"], doc["fad_inf_r2"] = fad_inf(ref, gen, seed=seed)
    if bootstrap:
        doc["ci95"] = list(bootstrap_fad_ci(ref, gen, n_boot=bootstrap, seed=seed))
    if per_clip is not None:
        scores = per_clip_fad(ref, gen)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "fad", "frames"])
        writer.writerows([cid, repr(v), len(gen[cid])] for cid, v in scores.items())
        atomic_write_bytes(Path(per_clip), buf.getvalue().encode())
        doc["per_clip"] = str(per_clip)
    return doc


SHIPPED_CLASSIFIER = "leaf-corpus"


def _ci(result) -> list[float] | None:
    return list(result.ci95) if result.ci95 else None


def load_classifier_spec(spec: str | None, device: str = "cpu", label_space: str | None = None, audioset_csv: str | None = None):
    """``leaf-corpus`` (shipped) or a checkpoint path; ``label_space`` checks what the checkpoint declares."""
    from metrics.classifier import ClassifierError, load_classifier

    if spec in (None, SHIPPED_CLASSIFIER):
        return load_classifier(None, expected=label_space or "corpus", device=device, audioset_csv=audioset_csv)
    if not Path(spec).exists():
        raise ClassifierError(f"unknown classifier {spec!r}: not {SHIPPED_CLASSIFIER!r} or an existing checkpoint file")
    return load_classifier(spec, expected=label_space, device=device, audioset_csv=audioset_csv)


def compute_score(
    generated: str | Path,
    reference: str | Path,
    captions: str | Path | None,
    embedders: Sequence[str] = ("mel",),
    classifier: str | None = SHIPPED_CLASSIFIER,
    joint: str | None = "mulan-ref",
    device: str = "cpu",
    seed: int = 0,
    on_error: str = "raise",
    cache: EmbeddingCache | None = None,
    per_clip: str | Path | None = None,
    kld_direction: str = "ref||gen",
    kld_mode: str = "sigmoid",
    label_space: str | None = None,
    audioset_csv: str | None = None,
    n_boot: int = 1000,
    fad_n_boot: int = 200,
    engine=None,
) -> dict:
    """FAD per embedder, KLD (all directions) and MCC over generated/reference pairs matched by id.

    ``classifier=None`` skips KLD; ``joint=None`` or ``captions=None`` skips MCC; an empty
    ``embedders`` skips FAD. Returns the JSON document (every metric with ``<key>_ci95``). ``engine``
    (``metrics.engine``; default local) runs the FAD embedding extraction; KLD and MCC run here.
    """
    from metrics.embedders import get_embedder
    from metrics.engine import LOCAL
    from metrics.extract import preprocessing_key
    from metrics.fad import EmbeddingStats, bootstrap_fad_ci, per_clip_fad
    from metrics.fad import fad as fad_metric
    from metrics.kld import class_distributions, kld
    from metrics.mcc import load_joint, mcc_for_clips
    from metrics.musiccaps import load_captions

    gen_report = load_dir(generated, on_error=on_error)
    ref_report = load_dir(reference, on_error=on_error)
    gen_ids, ref_ids = {c.id for c in gen_report.clips}, {c.id for c in ref_report.clips}
    # Under --on-error skip a skipped clip leaves its partner unpaired: drop it too, and say so.
    ids = pair_ids({"generated": gen_ids, "reference": ref_ids}, allow_missing=on_error == "skip")
    unpaired = sorted((gen_ids | ref_ids) - set(ids))
    gen = [c for c in gen_report.clips if c.id in ids]
    ref = [c for c in ref_report.clips if c.id in ids]
    doc: dict = {"n_pairs": len(ids), "seed": seed}
    per: dict[str, dict[str, float]] = {i: {} for i in ids}

    for name in embedders:
        emb = get_embedder(name, None, device)
        r = (engine or LOCAL).embed(ref, emb, cache, on_error=on_error)
        g = (engine or LOCAL).embed(gen, emb, cache, on_error=on_error)
        stats = [EmbeddingStats(embedder=emb.id, config={**emb.config, "preprocessing": preprocessing_key(emb)}) for _ in "rg"]
        for s, e in zip(stats, (r, g)):
            for arr in e.values():
                s.update(arr)
        res = fad_metric(stats[0], stats[1])
        doc[f"fad_{name}"] = res.value
        doc[f"fad_{name}_ci95"] = list(bootstrap_fad_ci(stats[0], g, n_boot=200, seed=seed)) if len(g) > 1 else None
        for cid, v in per_clip_fad(stats[0], g).items():
            per[cid][f"fad_{name}"] = v
        doc.setdefault("embedders", {})[name] = emb.config

    if classifier is not None:
        clf = load_classifier_spec(classifier, device, label_space, audioset_csv)
        result = kld(class_distributions(ref, clf, kld_mode, device), class_distributions(gen, clf, kld_mode, device), kld_direction, seed=seed, n_boot=n_boot)
        for key, res in result.items():
            doc[key], doc[f"{key}_ci95"] = res.value, _ci(res)
            for cid, v in res.per_item.items():
                per[cid][key] = v
        doc["kld_settings"] = {"direction": kld_direction, "mode": kld_mode, "eps": 1e-6, "window_seconds": 10.0,
                               "classifier": clf.path, "classifier_sha256": clf.weights_sha256, "label_space": clf.label_space.name}

    if joint is not None and captions is not None:
        caps = load_captions(captions, require_all_columns=False)["caption"].to_dict()
        model = load_joint(joint, device)
        res = mcc_for_clips(gen, caps, model, seed=seed)
        doc["mcc"], doc["mcc_ci95"] = res.value, _ci(res)
        for cid, v in res.per_item.items():
            per[cid]["mcc"] = v
        doc["mcc_settings"] = {"backend": joint, "comparable_to_paper": False}  # neither CLAP nor mulan-ref is the paper's MuLan

    doc["skipped"] = {"generated": [vars(s) for s in gen_report.skipped], "reference": [vars(s) for s in ref_report.skipped],
                      "unpaired": unpaired}
    if per_clip is not None:
        columns = sorted({k for row in per.values() for k in row})
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", *columns])
        writer.writerows([cid, *(repr(per[cid][c]) if c in per[cid] else "" for c in columns)] for cid in ids)
        atomic_write_bytes(Path(per_clip), buf.getvalue().encode())
        doc["per_clip"] = str(per_clip)
    return doc



"""What ``stats``, ``fad`` and ``score`` compute: thin calls of ``metrics.evaluate`` and their documents.

The CLI (``benchmarks/cli``) only parses flags and prints; tests and tools call these functions.
``fad`` and ``score`` also write the one results store (``metrics.store.write_store``) when given
``out``, exactly as ``compare`` does.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from metrics.audio import AudioError, scan_dir
from metrics.cache import EmbeddingCache
from metrics.embedders import Embedder
from metrics.engine import LOCAL, Engine
from metrics.evaluate import Evaluation, Plan, evaluate
from metrics.extract import EmbeddingSet, preprocessing_key
from metrics.fad import EmbeddingStats, SingularCovarianceWarning
from metrics.io import atomic_write_bytes, ci_list
from metrics.mcc import parse_joint_spec
from metrics.models import ModelSpec

SHIPPED_CLASSIFIER = "leaf-corpus"


def embed_dir(directory: str | Path, embedder: Embedder, cache: EmbeddingCache | None = None, on_error: str = "raise",
              workers: int = 0, batch_size: int = 8, progress: bool = False, engine: Engine | None = None,
              spec: ModelSpec | None = None) -> EmbeddingSet:
    """Embed every audio file of a directory; empty or all-unusable directories are errors."""
    paths = list(scan_dir(directory).values())
    embs = (engine or LOCAL).embed(paths, embedder, cache, batch_size=batch_size, workers=workers, progress=progress,
                                   on_error=on_error, spec=spec)
    if not embs:
        raise AudioError(directory, f"no usable clips ({len(embs.skipped)} skipped)")
    return embs


def dir_stats(directory: str | Path, embedder: Embedder, cache: EmbeddingCache | None = None, on_error: str = "raise",
              workers: int = 0, batch_size: int = 8, progress: bool = False, engine: Engine | None = None,
              spec: ModelSpec | None = None) -> tuple[EmbeddingStats, list]:
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


def _spec_of(embedder: Embedder, spec: ModelSpec | None) -> ModelSpec:
    return spec or ModelSpec(embedder.name)


def compute_fad(reference: str | Path, generated: str | Path, embedder: Embedder, *, inf: bool = False,
                per_clip: str | Path | None = None, bootstrap: int = 0, seed: int = 0, cache: EmbeddingCache | None = None,
                on_error: str = "raise", workers: int = 0, batch_size: int = 8, progress: bool = False,
                engine: Engine | None = None, spec: ModelSpec | None = None, out: str | Path | None = None) -> dict:
    """FAD of ``generated`` (a directory) against ``reference`` (a directory or a stats ``.npz``), unpaired.

    Returns the JSON document of ``musiclm-eval fad``; ``out`` also writes the results store.
    """
    spec = _spec_of(embedder, spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SingularCovarianceWarning)
        ev = evaluate(reference, {"generated": generated}, Plan(embedders=[spec.name],
                      embedder_paths={spec.name: spec.path} if spec.path else {}, fad_inf=inf),
                      paired=False, ground_truth=False, pairwise=False, n_boot=bootstrap, seed=seed,
                      device=spec.device, cache=cache, on_error=on_error, engine=engine, progress=progress,
                      batch_size=batch_size, workers=workers, prebuilt={spec: embedder})
    for w in caught:  # re-emit, and keep them in the result so a JSON reader sees them too
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    res = ev.systems["generated"].metrics.get(f"fad_{spec.name}")
    if res is None:
        raise AudioError(generated, f"no usable clips ({len(ev.systems['generated'].skipped)} skipped)")
    doc = {"fad": res.value, **{k: v for k, v in res.extra.items() if k not in ("fad_inf", "fad_inf_r2")},
           "embedder_name": embedder.name, "preprocessing": preprocessing_key(embedder), "seed": seed,
           "warnings": [str(w.message) for w in caught],
           "skipped": {"reference": ev.reference.skipped, "generated": ev.systems["generated"].skipped}}
    if inf:
        doc["fad_inf"], doc["fad_inf_r2"] = res.extra["fad_inf"], res.extra["fad_inf_r2"]
    if bootstrap:
        doc["ci95"] = ci_list(res.ci95)
    if per_clip is not None:
        gen = ev.systems["generated"].states[f"fad_{spec.name}"].outputs["generated"]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "fad", "frames"])
        writer.writerows([cid, repr(v), len(gen[cid])] for cid, v in res.per_item.items())
        atomic_write_bytes(Path(per_clip), buf.getvalue().encode())
        doc["per_clip"] = str(per_clip)
    if out is not None:
        write_evaluation(out, "fad", ev)
    return doc


def classifier_plan(spec: str | None) -> tuple[str | None, str | None]:
    """``--classifier`` value → (registry name, weights path): a registered name, ``NAME:PATH`` (a registered
    classifier with local weights), or a LEAF checkpoint path."""
    from metrics.classifier import ClassifierError
    from metrics.models import CLASSIFIERS

    if spec is None:
        return None, None
    if spec in CLASSIFIERS:
        return spec, None
    name, sep, path = spec.partition(":")
    if sep and name in CLASSIFIERS:  # NAME:PATH = a registered classifier with local weights
        return name, path
    if Path(spec).exists():
        return SHIPPED_CLASSIFIER, spec
    raise ClassifierError(f"unknown classifier {spec!r}: not one of {', '.join(CLASSIFIERS.names())} "
                          "or an existing checkpoint file")


def result_fields(key: str, res, doc: dict) -> None:
    """``key``, ``key_ci95`` (and FAD∞ where computed) of one MetricResult into a flat document."""
    doc[key], doc[f"{key}_ci95"] = res.value, ci_list(res.ci95)
    for extra in ("fad_inf", "fad_inf_r2"):
        if extra in res.extra:
            doc[f"{key}_{extra[4:]}"] = res.extra[extra]


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
    kld_convention: str = "musiclm",
    label_space: str | None = None,
    n_boot: int = 1000,
    engine=None,
    progress: bool = False,
    embedder_paths: Mapping[str, str] | None = None,
    out: str | Path | None = None,
    clip_seconds: float | None = None,
    kad: bool = False,
    extra_metadata: Mapping | None = None,
    controls: str | Path | None = None,
    control_metrics: Sequence[str] | None = None,
    melody_prompts: str | Path | None = None,
) -> dict:
    """FAD per embedder, KLD (the convention's keys) and MCC over generated/reference pairs matched by id, and the
    control metrics against ``controls`` / ``melody_prompts`` (``metrics.control.control_plan``).

    ``classifier=None`` skips KLD; ``joint=None`` or ``captions=None`` skips MCC; an empty
    ``embedders`` skips FAD. Returns the JSON document (every metric with ``<key>_ci95``).
    """
    from metrics.control import control_plan
    from metrics.musiccaps import captions_for

    melody, control_names, melody_prompts, controls = control_plan(controls, melody_prompts, control_metrics)
    clf_name, clf_path = classifier_plan(classifier)
    joint_name, joint_path = parse_joint_spec(joint if captions is not None else None)
    caps = captions_for(captions, scan_dir(generated) if joint_name else ()) if captions is not None else None
    plan = Plan(embedders=list(embedders), embedder_paths=dict(embedder_paths or {}), classifier=clf_name,
                classifier_path=clf_path, joint=joint_name, joint_path=joint_path, kld_convention=kld_convention,
                label_space=label_space, clip_seconds=clip_seconds, kad=kad, melody=melody, controls=control_names)
    ev = evaluate(reference, {"generated": generated}, plan, captions=caps, paired=True, ground_truth=False,
                  pairwise=False, n_boot=n_boot, seed=seed, device=device, cache=cache, on_error=on_error,
                  engine=engine, progress=progress, melody_prompts=melody_prompts, controls=controls)
    s = ev.systems["generated"]
    ref_ids = set(ev.reference.paths)
    doc: dict = {"n_pairs": len(set(s.paths) & ref_ids), "seed": seed, "n_boot": n_boot}
    for key, res in s.metrics.items():
        result_fields(key, res, doc)
    doc["embedders"] = {n: ev.metadata["protocol"]["fad"][n] for n in ev.metadata["embedders"]}
    if clf_name is not None:
        kld_extra = next((r.extra for k, r in s.metrics.items() if k.startswith("kld")), {})
        doc["kld_settings"] = {"convention": kld_convention, **{k: v for k, v in kld_extra.items()
                                                                if k in ("eps", "pooling", "activation")},
                               "classifier": clf_path or clf_name, "classifier_sha256": ev.metadata["checkpoints"].get("classifier")}
    if joint_name is not None:
        doc["mcc_settings"] = {"backend": joint, "comparable_to_paper": False}  # neither CLAP nor mulan-ref is the paper's MuLan
    doc["skipped"] = {"generated": s.skipped, "reference": ev.reference.skipped, "unpaired": s.missing_ids}
    if per_clip is not None:
        per = {cid: {k: r.per_item[cid] for k, r in s.metrics.items() if cid in r.per_item} for cid in s.paths}
        columns = sorted({k for row in per.values() for k in row})
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", *columns])
        writer.writerows([cid, *(repr(per[cid][c]) if c in per[cid] else "" for c in columns)] for cid in sorted(per))
        atomic_write_bytes(Path(per_clip), buf.getvalue().encode())
        doc["per_clip"] = str(per_clip)
    if out is not None:
        write_evaluation(out, "score", ev, captions=caps, extra_metadata=extra_metadata)
    return doc


def write_evaluation(out: str | Path, kind: str, ev: Evaluation, captions: Mapping[str, str] | None = None,
                     extra_metadata: Mapping | None = None, extra_files: Mapping | None = None) -> dict:
    """The one results store for an ``Evaluation`` (``metrics.store.write_store``): results.json,
    per_clip.csv/.parquet and pairwise.csv."""
    import pandas as pd

    from metrics.store import write_store

    systems = {name: {"dir": s.dir, "n_clips": s.n_clips, "missing_ids": s.missing_ids, "skipped": s.skipped,
                      "metrics": dict(s.metrics)} for name, s in ev.systems.items()}
    if ev.reference.metrics:
        r = ev.reference
        systems[r.name] = {"dir": r.dir, "n_clips": r.n_clips, "missing_ids": [], "skipped": r.skipped,
                           "metrics": dict(r.metrics)}
    rows = ev.per_clip_rows(captions)
    for cid, path in ev.reference.paths.items():
        if ev.reference.metrics:
            rows.append({"system": ev.reference.name, "ytid": cid, "audio_path": path, "reference_path": path,
                         **({"caption": captions.get(cid, "")} if captions is not None else {})})
    pairwise = pd.DataFrame([{k: (v if not isinstance(v, list | tuple) else list(v)) for k, v in row.items()}
                             for row in ev.pairwise]) if ev.pairwise else None
    if pairwise is not None and "ci95" in pairwise.columns:
        pairwise["ci95_lo"] = [c[0] if isinstance(c, list) else None for c in pairwise["ci95"]]
        pairwise["ci95_hi"] = [c[1] if isinstance(c, list) else None for c in pairwise["ci95"]]
        pairwise = pairwise.drop(columns=["ci95"])
    metadata = {**ev.metadata, "pairwise": ev.pairwise, **(extra_metadata or {})}
    return write_store(out, kind, systems, per_clip=pd.DataFrame(rows) if rows else None,
                       reference={"dir": ev.reference.dir, "n_clips": ev.reference.n_clips}, metadata=metadata,
                       pairwise=pairwise, extra_files=extra_files)

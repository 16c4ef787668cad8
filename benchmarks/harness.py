"""The Table-1 harness: systems × (FAD per embedder, KLD, MCC, human-study wins).

The reference side (clips, embedding statistics, class distributions) is computed once and every
system is scored against it; every clip is decoded once and every embedding goes through the
content-hashed cache, so a re-run only embeds what changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from metrics.audio import scan_dir
from metrics.cache import EmbeddingCache
from metrics.errors import InputError

GROUND_TRUTH = "ground truth"


def parse_systems(specs: Sequence[str]) -> dict[str, Path]:
    """``["name=dir", ...]`` → {name: Path}; names must be unique and not the reserved row name."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--system must look like NAME=DIR, got {spec!r}")
        if name in out:
            raise InputError(f"--system: {name!r} given twice")
        if name == GROUND_TRUTH:
            raise InputError(f"--system: {GROUND_TRUTH!r} is the reserved name of the reference row")
        out[name] = Path(path)
    if not out:
        raise InputError("give at least one --system NAME=DIR")
    return out


def compare(
    systems: dict[str, Path],
    reference: str | Path,
    captions: str | Path,
    out: str | Path,
    embedders: Sequence[str] = ("mel",),
    classifier: str | None = "leaf-corpus",
    joint: str | None = "mulan-ref",
    ratings: str | None = None,
    on_error: str = "raise",
    device: str = "cpu",
    seed: int = 0,
    cache: EmbeddingCache | None = None,
    n_boot: int = 1000,
    skip_unavailable_embedders: bool = False,
    progress: bool = False,
    extra_metadata: dict | None = None,
    engine=None,
    kld_convention: str = "musiclm",
    kad: bool = False,
    mad: bool = False,
    clip_seconds: float | None = None,
    melody_prompts: str | Path | None = None,
    controls: str | Path | None = None,
    control_metrics: Sequence[str] | None = None,
    adherence: Sequence[str] = (),
    embedder_paths: dict[str, str] | None = None,
    batch_size: int = 8,
    workers: int = 0,
) -> dict:
    """Score every system against the reference; write the results store to ``out``; return results.json.

    A thin call of ``metrics.evaluate.evaluate`` (the same pipeline as ``fad`` and ``score``), plus the
    paired comparisons of every two systems, the human-study wins, the Table-1 files and the plots."""
    from metrics.adherence_estimators import ESTIMATORS
    from metrics.adherence_lexicon import TAGGERS
    from metrics.commands import classifier_plan, write_evaluation
    from metrics.evaluate import Plan, evaluate
    from metrics.mcc import parse_joint_spec
    from metrics.musiccaps import aspects_for, captions_for

    unknown = [t for t in adherence if t not in (*TAGGERS, *ESTIMATORS)]
    if unknown:  # before any model runs
        raise InputError(f"--adherence: unknown judge(s) {', '.join(unknown)}; expected taggers {', '.join(TAGGERS)} "
                         f"or estimators {', '.join(ESTIMATORS)}")
    from metrics.control import control_plan

    melody, control_names, melody_prompts, controls = control_plan(controls, melody_prompts, control_metrics)
    ref_ids = sorted(scan_dir(reference))
    caption_of = captions_for(captions, ref_ids)
    if ratings is not None:  # a bad --ratings database fails before the scoring, not after it
        from human_eval.db import open_db

        open_db(ratings).dispose()
    names = [c.strip() for c in classifier.split(",") if c.strip()] if classifier else []
    clf_name, clf_path = classifier_plan(names[0] if names else None)
    joint_name, joint_path = parse_joint_spec(joint)
    plan = Plan(embedders=list(embedders), embedder_paths=dict(embedder_paths or {}), classifier=clf_name,
                classifier_path=clf_path, extra_classifiers=tuple(names[1:]), joint=joint_name, joint_path=joint_path, kld_convention=kld_convention, kad=kad, mad=mad,
                clip_seconds=clip_seconds, melody=melody, controls=control_names, adherence=tuple(adherence))
    ev = evaluate(reference, systems, plan, captions=caption_of, paired=True, ground_truth=True, pairwise=True,
                  n_boot=n_boot, seed=seed, device=device, cache=cache, on_error=on_error, engine=engine,
                  progress=progress, batch_size=batch_size, workers=workers,
                  skip_unavailable=skip_unavailable_embedders, melody_prompts=melody_prompts, controls=controls,
                  aspects=aspects_for(captions) if adherence else None)
    metadata = {**(extra_metadata or {}), "ratings": None}
    metadata["config"] = {**ev.metadata["config"], "captions": str(captions)}
    doc = write_evaluation(out, "compare", ev, captions=caption_of, extra_metadata={**metadata, "ids_sha256": _ids_digest(ref_ids)})
    if ratings is not None:
        doc = _add_wins(out, doc, ratings)
    from benchmarks.report import write_plots, write_table
    from metrics.store import read_store

    store = read_store(out)
    write_table(store.data, out)
    write_plots(store.data, store.per_clip, out)
    return store.data


def _ids_digest(ids: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def _add_wins(out: str | Path, doc: dict, ratings: str) -> dict:
    """The ``wins`` column from the human study (each system's total wins over all its pairs), added to the store."""
    from human_eval.analysis import wins_by_system
    from metrics.io import redact_url
    from metrics.store import add_metrics

    wins = wins_by_system(ratings)
    rows = {}
    for name, w in wins.items():
        key = name if name in doc["systems"] else (GROUND_TRUTH if name in ("reference", "ground truth", "ground_truth") else None)
        if key in doc["systems"]:  # the reference's wins need its row (there is one when MCC ran)
            rows[key] = {"wins": {"value": int(w), "ci95": None}}
    return add_metrics(out, rows, metadata={"ratings": {"db": redact_url(ratings), "systems": sorted(wins)}})


def summarize(data: dict) -> str:
    from benchmarks.report import table_frame

    df = table_frame(data)
    return df.to_string(index=False)


"""The Table-1 harness: systems × (FAD per embedder, KLD, MCC, human-study wins).

The reference side (clips, embedding statistics, class distributions) is computed once and every
system is scored against it; every clip is decoded once and every embedding goes through the
content-hashed cache, so a re-run only embeds what changed.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from metrics.audio import AudioError, Clip, PairingError, load_dir, pair_ids, preprocessing_id
from metrics.cache import EmbeddingCache
from metrics.store import write_results

GROUND_TRUTH = "ground truth"


@dataclass
class SystemInput:
    name: str
    dir: Path
    clips: list[Clip] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def parse_systems(specs: Sequence[str]) -> dict[str, Path]:
    """``["name=dir", ...]`` → {name: Path}; names must be unique and not the reserved row name."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--system must look like NAME=DIR, got {spec!r}")
        if name in out:
            raise ValueError(f"system {name!r} given twice")
        if name == GROUND_TRUTH:
            raise ValueError(f"{GROUND_TRUTH!r} is the reserved name of the reference row")
        out[name] = Path(path)
    if not out:
        raise ValueError("give at least one --system NAME=DIR")
    return out


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("musiclm-eval", "numpy", "scipy", "torch", "torchaudio", "pot", "tensorflow", "tensorflow-hub"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _ci(res) -> list[float] | None:
    return [float(res.ci95[0]), float(res.ci95[1])] if res.ci95 else None


def load_embedders(names: Sequence[str], device: str, skip_unavailable: bool) -> tuple[dict, dict[str, str]]:
    """Build the requested embedders; with ``skip_unavailable`` a model that cannot be loaded
    (e.g. VGGish/TRILL with no TF-Hub access) is reported with the reason instead of failing."""
    from metrics.embedders import EmbedderError, get_embedder

    loaded, unavailable = {}, {}
    for name in names:
        try:
            loaded[name] = get_embedder(name, None, device)
        except (EmbedderError, ImportError, OSError) as e:
            if not skip_unavailable:
                raise
            unavailable[name] = str(e).splitlines()[0]
    return loaded, unavailable


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
) -> dict:
    """Score every system against the reference; write the results store to ``out``; return results.json.

    ``engine`` (``metrics.engine``; default local) runs the FAD embedding extraction."""
    from metrics.fad import EmbeddingStats, bootstrap_fad_ci, fad, per_clip_fad
    from metrics.musiccaps import load_captions

    started = time.time()
    out = Path(out)
    caps = load_captions(captions, require_all_columns=False)
    caption_of = caps["caption"].to_dict()
    ref_report = load_dir(reference, on_error=on_error)
    ref_clips = ref_report.clips
    lacking = sorted(c.id for c in ref_clips if c.id not in caption_of)
    if lacking:
        raise PairingError(f"{captions}: no caption for {len(lacking)} reference clip(s): {', '.join(lacking[:20])}")
    ref_ids = [c.id for c in ref_clips]

    inputs: list[SystemInput] = []
    for name, d in systems.items():
        try:
            rep = load_dir(d, on_error=on_error)
        except AudioError as e:
            raise AudioError(e.path, f"{e.problem} (system {name!r})") from None
        ids = {c.id for c in rep.clips}
        try:
            common = pair_ids({name: ids, "reference": ref_ids}, allow_missing=on_error == "skip")
        except PairingError as e:
            raise PairingError(f"system {name!r} ({d}): {e}") from None
        inputs.append(SystemInput(
            name, Path(d), [c for c in rep.clips if c.id in set(common)], [vars(s) for s in rep.skipped],
            sorted(set(ref_ids) - ids),
        ))  # fmt: skip

    emb_models, unavailable = load_embedders(embedders, device, skip_unavailable_embedders)
    metadata: dict = {
        "versions": _versions(), "git_commit": _git_commit(), "created_unix": started,
        "config": {"embedders": list(embedders), "classifier": classifier, "joint": joint, "on_error": on_error,
                   "device": device, "n_boot": n_boot, "reference": str(reference), "captions": str(captions)},
        "seeds": {"bootstrap": seed}, "embedders": {n: e.id for n, e in emb_models.items()},
        "unavailable_embedders": unavailable, "checkpoints": {},
        "protocol": {"preprocessing": preprocessing_id(None), "fad": {n: e.config for n, e in emb_models.items()}},
        **(extra_metadata or {}),
    }  # fmt: skip
    per_clip: dict[tuple[str, str], dict] = {}
    results = {s.name: {"dir": str(s.dir), "n_clips": len(s.clips), "missing_ids": s.missing, "skipped": s.skipped, "metrics": {}} for s in inputs}

    def row(system: str, cid: str, path: str) -> dict:
        return per_clip.setdefault((system, cid), {"system": system, "ytid": cid, "caption": caption_of.get(cid, ""), "audio_path": path})

    # FAD: reference statistics once per embedder, then each system against them
    for name, emb in emb_models.items():
        from metrics.engine import LOCAL

        embed_clips = (engine or LOCAL).embed
        ref_embs = embed_clips(ref_clips, emb, cache, on_error=on_error, progress=progress)
        ref_stats = EmbeddingStats.from_embeddings(dict(ref_embs), embedder=emb.id)
        for s in inputs:
            gen_embs = embed_clips(s.clips, emb, cache, on_error=on_error, progress=progress)
            res = fad(ref_stats, EmbeddingStats.from_embeddings(dict(gen_embs), embedder=emb.id))
            ci = bootstrap_fad_ci(ref_stats, gen_embs, n_boot=min(n_boot, 200), seed=seed) if len(gen_embs) > 1 else None
            results[s.name]["metrics"][f"fad_{name}"] = {"value": res.value, "ci95": list(ci) if ci else None,
                                                         "n_reference_frames": ref_embs.n_frames, "n_generated_frames": gen_embs.n_frames}  # fmt: skip
            by_id = {c.id: c.path for c in s.clips}
            for cid, v in per_clip_fad(ref_stats, gen_embs).items():
                row(s.name, cid, by_id[cid])[f"fad_{name}"] = v

    # KLD: reference class distributions once
    if classifier is not None:
        from metrics.commands import load_classifier_spec
        from metrics.kld import class_distributions, kld

        clf = load_classifier_spec(classifier, device)
        metadata["checkpoints"]["classifier"] = getattr(clf, "weights_sha256", None)
        ref_dist = class_distributions(ref_clips, clf, device=device)
        for s in inputs:
            gen_dist = class_distributions(s.clips, clf, device=device)
            kl = kld({i: ref_dist[i] for i in gen_dist}, gen_dist, seed=seed, n_boot=n_boot)
            by_id = {c.id: c.path for c in s.clips}
            for key, res in kl.items():
                results[s.name]["metrics"][key] = {"value": res.value, "ci95": _ci(res)}
                for cid, v in res.per_item.items():
                    row(s.name, cid, by_id[cid])[key] = v
        metadata["protocol"]["kld"] = {"direction": "ref||gen", "mode": "sigmoid", "eps": 1e-6, "window_seconds": 10.0}

    # MCC, with the reference itself as the upper bound ("ground truth" row, as in the paper)
    if joint is not None:
        from metrics.mcc import load_joint, mcc_for_clips

        model = load_joint(joint, device)
        metadata["checkpoints"]["joint"] = getattr(model, "weights_sha256", None) or joint
        gt = mcc_for_clips(ref_clips, caption_of, model, seed=seed)
        results[GROUND_TRUTH] = {"dir": str(reference), "n_clips": len(ref_clips), "missing_ids": [], "skipped": [vars(s) for s in ref_report.skipped],
                                 "metrics": {"mcc": {"value": gt.value, "ci95": _ci(gt)}}}  # fmt: skip
        for c in ref_clips:
            row(GROUND_TRUTH, c.id, c.path)["mcc"] = gt.per_item[c.id]
        for s in inputs:
            res = mcc_for_clips(s.clips, caption_of, model, seed=seed)
            results[s.name]["metrics"]["mcc"] = {"value": res.value, "ci95": _ci(res)}
            by_id = {c.id: c.path for c in s.clips}
            for cid, v in res.per_item.items():
                row(s.name, cid, by_id[cid])["mcc"] = v

    if ratings is not None:
        _add_wins(results, ratings, metadata)

    ref_paths = {c.id: c.path for c in ref_clips}
    table = pd.DataFrame(list(per_clip.values()))
    if not table.empty:
        table["reference_path"] = table["ytid"].map(ref_paths)
        table["aspect_list"] = table["ytid"].map(lambda i: repr(caps["aspect_list"].get(i, [])) if "aspect_list" in caps else "[]")
    metadata["elapsed_s"] = round(time.time() - started, 2)
    if cache is not None:
        metadata["cache"] = {"hits": cache.hits, "misses": cache.misses, "root": str(cache.root)}
    data = {"kind": "compare", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "metadata": metadata,
            "reference": {"dir": str(reference), "n_clips": len(ref_clips), "ids_sha256": _ids_digest(ref_ids)}, "systems": results}  # fmt: skip
    write_results(out, data, table)
    from benchmarks.report import write_plots, write_table

    write_table(data, out)
    write_plots(data, table, out)
    return {"schema_version": 1, **data}


def _ids_digest(ids: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def _add_wins(results: dict, ratings: str, metadata: dict) -> None:
    """The ``wins`` column from the human study (each system's total wins over all its pairs)."""
    from human_eval.analysis import wins_by_system

    wins = wins_by_system(ratings)
    metadata["ratings"] = {"db": ratings.split("@")[-1], "systems": sorted(wins)}
    for name, w in wins.items():
        key = name if name in results else (GROUND_TRUTH if name in ("reference", "ground truth", "ground_truth") else None)
        if key is not None:
            results[key]["metrics"]["wins"] = {"value": int(w), "ci95": None}


def summarize(data: dict) -> str:
    from benchmarks.report import table_frame

    df = table_frame(data)
    return df.to_string(index=False)


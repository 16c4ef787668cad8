"""The evaluation core: clip sources × models × metrics → one ``Evaluation`` (what every command calls).

    sources (reference + named systems; ids = file stems)            scan, pair by id
      └─► engine.extract: every model over every clip, streaming      decode once per rate, cache first
            (embedders → frames, classifier → window logits, joint → audio windows; waveforms dropped)
      └─► Metric states (FAD, KAD, KLD, MCC): update(side, {id: output}) → compute() → MetricResult
      └─► paired comparisons of every two systems (clip-paired bootstrap, Holm-corrected)
      └─► one results store (``metrics.store.write_store``)

``stats``, ``fad``, ``score``, ``compare`` and ``demo`` are thin calls of ``evaluate`` (their
document builders are in ``metrics.commands``). Models are named by ``ModelSpec`` so the Ray engine
builds them on its workers. Every failure is a clear error naming the file and the problem.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metrics.audio import AudioError, PairingError, pair_ids, scan_dir
from metrics.cache import EmbeddingCache
from metrics.control import control_metric
from metrics.control import entry as control_entry
from metrics.engine import LOCAL, Engine
from metrics.errors import InputError
from metrics.extract import EmbeddingSet, preprocessing_key
from metrics.fad import EmbeddingStats
from metrics.metric import Metric
from metrics.models import ModelSpec, audio_model
from metrics.run_statistics import SourceResult, statistics
from metrics.warn_once import once_per_call, warnings_of

GROUND_TRUTH = "ground truth"
REFERENCE = "reference"


@dataclass
class Evaluation:
    reference: SourceResult
    systems: dict[str, SourceResult]
    pairwise: list[dict]
    metadata: dict

    def per_clip_rows(self, captions: Mapping[str, str] | None = None) -> list[dict]:
        """One row per (system, clip): its audio path, the reference path (and caption); the per-clip metric
        values are in each ``MetricResult.per_item`` (the store adds them as columns)."""
        rows = []
        for s in self.systems.values():
            for cid, path in s.paths.items():
                row = {"system": s.name, "ytid": cid, "audio_path": path,
                       "reference_path": self.reference.paths.get(cid)}
                if captions is not None:
                    row["caption"] = captions.get(cid, "")
                rows.append(row)
        return rows


@dataclass
class Plan:
    """What to compute: the models and, per model, which metrics read its outputs."""

    embedders: Sequence[str] = ("mel",)
    embedder_paths: Mapping[str, str] = field(default_factory=dict)
    classifier: str | None = None
    classifier_path: str | None = None
    extra_classifiers: Sequence[str] = ()  # more registered classifiers; their KLD keys end in _<name>
    joint: str | None = None
    joint_path: str | None = None
    kld_convention: str = "musiclm"
    fad_inf: bool = False
    kad: bool = False
    mad: bool = False  # MAD (metrics/mad.py) on every embedder: mad_<embedder>
    label_space: str | None = None
    clip_seconds: float | None = None  # crop/zero-pad every clip to this length before the models (None: as is)
    melody: Sequence[str] = ()  # "pitch", "chroma": melody adherence against the melody prompts (same ids)
    controls: Sequence[str] = ()  # control metrics (metrics/control's registry) against the controls folder (same ids)
    adherence: Sequence[str] = ()  # taggers / estimators judging per-aspect caption adherence (metrics/adherence*.py)


MELODY_MODELS = {"pitch": "crepe-pitch", "chroma": "chroma"}  # embedder registry names of the melody features


def run_metadata() -> dict:
    """Package versions and the git commit, recorded in every results store."""
    versions = {"python": platform.python_version()}
    for pkg in ("musiclm-eval", "numpy", "scipy", "torch", "torchaudio", "pot", "tensorflow", "tensorflow-hub"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"versions": versions, "git_commit": commit}


def _specs(plan: Plan, device: str) -> dict[str, ModelSpec]:
    sec = plan.clip_seconds
    specs = {f"embedder:{n}": ModelSpec(n, plan.embedder_paths.get(n), device, seconds=sec) for n in plan.embedders}
    if plan.classifier is not None:
        specs["classifier"] = ModelSpec(plan.classifier, plan.classifier_path, device, kind="classifier", seconds=sec)
    for name in plan.extra_classifiers:
        specs[f"classifier:{name}"] = ModelSpec(name, None, device, kind="classifier", seconds=sec)
    if plan.joint is not None:
        specs["joint"] = ModelSpec(plan.joint, plan.joint_path, device, kind="joint", seconds=sec)
    for kind in plan.melody:
        if kind not in MELODY_MODELS:
            raise ValueError(f"unknown melody feature {kind!r}; expected one of {', '.join(MELODY_MODELS)}")
        specs[f"melody:{kind}"] = ModelSpec(MELODY_MODELS[kind], None, device, seconds=sec)
    for name in plan.controls:  # one extractor per feature, however many control metrics read it
        extractor = control_entry(name).extractor
        specs.setdefault(f"control:{extractor}", ModelSpec(extractor, None, device, seconds=sec))
    for judge in plan.adherence:  # a judge that is also a KLD classifier or a control extractor runs once, under that key
        kind = "embedder" if _judge_key(plan, judge).startswith("control:") else "classifier"
        specs.setdefault(_judge_key(plan, judge), ModelSpec(judge, None, device, kind=kind, seconds=sec))
    return specs


def _judge_key(plan: Plan, tagger: str) -> str:
    """The model key whose outputs per-aspect adherence reads for a judge: a tagger's window logits (under the KLD
    classifier's key when it is the same model), an estimator's output (under the control metrics' key)."""
    from metrics.adherence_estimators import ESTIMATORS

    if tagger in ESTIMATORS:
        return f"control:{tagger}"
    if plan.classifier == tagger and plan.classifier_path is None:
        return "classifier"
    return f"classifier:{tagger}" if tagger in plan.extra_classifiers else f"adherence:{tagger}"


def build_models(specs: Mapping[str, ModelSpec], skip_unavailable: bool = False,
                 prebuilt: Mapping[ModelSpec, object] | None = None) -> tuple[dict, dict[str, str]]:
    """Build each model once on the driver; with ``skip_unavailable`` an embedder that cannot be loaded
    (VGGish/TRILL with no TF-Hub access) is reported with the reason instead of failing the run."""
    built, unavailable = {}, {}
    for key, spec in specs.items():
        if prebuilt and spec in prebuilt:
            built[key] = prebuilt[spec]
            continue
        try:
            built[key] = spec.build()
        except (RuntimeError, ImportError, OSError, ValueError) as e:
            if not (skip_unavailable and spec.kind == "embedder"):
                raise
            unavailable[spec.name] = str(e).splitlines()[0]
    return built, unavailable


def _kld_metrics(plan: Plan, activation: str | None, n_boot: int, seed: int) -> dict[str, Metric]:
    from metrics.kld import kld_metrics

    return kld_metrics(plan.kld_convention, n_boot=n_boot, seed=seed, activation=activation)


def _metric_factories(plan: Plan, built: Mapping, reference_stats: Mapping[str, EmbeddingStats],
                      n_boot: int, seed: int) -> list[tuple[str, str, Callable[[], Metric]]]:
    """(result key, model key, factory) for every metric the plan asks for."""
    from metrics.fad_metric import FAD
    from metrics.mcc import MCC

    out: list[tuple[str, str, Callable[[], Metric]]] = []
    for key, model in built.items():
        if not key.startswith("embedder:"):
            continue
        name = key.split(":", 1)[1]
        out.append((f"fad_{name}", key, lambda m=model, n=name: FAD(m.id, plan.fad_inf, reference_stats.get(n),
                                                                   n_boot=n_boot, seed=seed)))
        if plan.kad:
            from metrics.kad import KAD

            out.append((f"kad_{name}", key, lambda m=model: KAD(m.id, n_boot=n_boot, seed=seed)))
        if plan.mad:
            from metrics.mad import MAD

            out.append((f"mad_{name}", key, lambda m=model: MAD(m.id, n_boot=n_boot, seed=seed)))
    for model_key in [k for k in built if k == "classifier" or k.startswith("classifier:")]:
        activation = getattr(built[model_key], "activation", None)
        suffix = "" if model_key == "classifier" else "_" + model_key.split(":", 1)[1].replace("-", "_")
        for k in _kld_metrics(plan, activation, 0, seed):
            out.append((k + suffix, model_key,
                        lambda k=k, a=activation: _kld_metrics(plan, a, n_boot, seed)[k]))
    if "joint" in built:
        out.append(("mcc", "joint", lambda: MCC(built["joint"].id, n_boot=n_boot, seed=seed)))
    for kind in plan.melody:
        from metrics.melody_adherence import melody_metric

        key = melody_metric(kind, n_boot=0).name
        out.append((key, f"melody:{kind}", lambda k=kind: melody_metric(k, n_boot=n_boot, seed=seed)))
    for name in plan.controls:
        if f"control:{control_entry(name).extractor}" in built:
            out.append((name, f"control:{control_entry(name).extractor}",
                        lambda n=name: control_metric(n, n_boot=n_boot, seed=seed)))
    for tagger in plan.adherence:
        from metrics.adherence import adherence_metrics
        from metrics.adherence_estimators import ESTIMATORS, EstimatorAdherence, estimator_key

        mk = _judge_key(plan, tagger)
        if tagger in ESTIMATORS:
            out.append((estimator_key(tagger), mk, lambda t=tagger: EstimatorAdherence(t, n_boot=n_boot, seed=seed)))
            continue
        for key in adherence_metrics(tagger, built[mk].labels, n_boot=0):
            out.append((key, mk, lambda k=key, t=tagger, m=mk: adherence_metrics(t, built[m].labels, n_boot, seed)[k]))
    return out


def _controls(plan: Plan, directory: str | Path | None,
              extract: Callable[[Mapping[str, str]], Mapping[str, Mapping]]) -> dict[str, dict]:
    """``{model key: {clip id: control}}``: extracted from the folder's reference clips, then overridden by its
    control files (MIDI, chords, key, beats, JAMS) for the controls they give."""
    if not plan.controls:
        return {}
    if directory is None:
        raise InputError("the control metrics need the controls (--controls DIR: reference clips and/or control "
                         "files, one per clip id)")
    from metrics.control.controls import read_control_files

    try:
        clips = _source("controls", directory)
    except AudioError:
        clips = {}  # a folder of control files only
    out = {k: dict(v) for k, v in extract(clips).items()} if clips else {}
    files = read_control_files(directory)
    for name in plan.controls:  # a file gives a control; every extractor of that control reads it
        e = control_entry(name)
        out.setdefault(f"control:{e.extractor}", {}).update(files.get(e.control, {}))
    if not any(out.values()):
        raise InputError(f"{directory}: no reference clips and no control files (.mid, .lab, .chords.csv, .key.txt, "
                         ".beats.txt, .tempo.txt, .jams) for the control metrics")
    return out


def _source(name: str, directory: str | Path) -> dict[str, str]:
    try:
        return {cid: str(p) for cid, p in scan_dir(directory).items()}
    except AudioError as e:
        raise AudioError(e.path, f"{e.problem} ({name})") from None


@once_per_call
def evaluate(
    reference: str | Path,
    systems: Mapping[str, str | Path],
    plan: Plan,
    *,
    captions: Mapping[str, str] | None = None,
    paired: bool = True,
    ground_truth: bool = True,
    pairwise: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    cache: EmbeddingCache | None = None,
    on_error: str = "raise",
    engine: Engine | None = None,
    progress: bool = False,
    batch_size: int = 8,
    workers: int = 0,
    skip_unavailable: bool = False,
    prebuilt: Mapping[ModelSpec, object] | None = None,
    melody_prompts: str | Path | None = None,
    controls: str | Path | None = None,
    aspects: Mapping[str, Sequence[str]] | None = None,
) -> Evaluation:
    """Score every system against the reference (a directory, or a stats ``.npz`` for FAD alone).

    ``paired``: systems are matched to reference clips by id (KLD and MCC need it; a mismatch is a
    ``PairingError`` unless ``on_error="skip"``, which drops the unpaired clips and reports them).
    ``prebuilt``: models the caller already holds, by spec (they are not built again).
    ``melody_prompts``: the melody each system was conditioned on, one file per id (``plan.melody``).
    ``controls``: the controls each system was given (``plan.controls``): reference clips they are extracted
    from and/or control files (``metrics.control.controls``), one per id.
    ``aspects``: each clip's MusicCaps ``aspect_list`` (per-aspect adherence reads it beside the caption).
    The FAD reference is every reference clip. ``ground_truth`` adds the reference's own MCC and adherence row.
    """
    engine = engine or LOCAL
    started = time.time()
    specs = _specs(plan, device)
    built, unavailable = build_models(specs, skip_unavailable, prebuilt)
    specs = {k: v for k, v in specs.items() if k in built}
    audio = {k: audio_model(m) for k, m in built.items()}
    if plan.label_space and "classifier" in built:
        got = getattr(built["classifier"], "label_space", None)
        if got is not None and got.name != plan.label_space:
            raise InputError(f"classifier {plan.classifier}: label space {got.name!r}, expected {plan.label_space!r}")

    # sources
    ref_stats: dict[str, EmbeddingStats] = {}
    ref_path = Path(reference)
    if ref_path.is_file() and ref_path.suffix == ".npz":
        from metrics.fad_metric import load_reference_stats

        if paired or len(built) != 1 or not next(iter(built)).startswith("embedder:"):
            raise InputError(f"{ref_path}: a statistics file can only be the reference of an unpaired FAD")
        (key, model), = audio.items()
        ref_stats[key.split(":", 1)[1]] = load_reference_stats(ref_path, model)
        ref_files: dict[str, str] = {}
    else:
        ref_files = _source(REFERENCE, reference)
    sys_files: dict[str, dict[str, str]] = {}
    missing: dict[str, list[str]] = {}
    for name, d in systems.items():
        files = _source(f"system {name!r}", d)
        if paired and ref_files:
            try:
                common = pair_ids({name: files, REFERENCE: ref_files}, allow_missing=on_error == "skip")
            except PairingError as e:
                raise PairingError(f"system {name!r} ({d}): {e}") from None
            missing[name] = sorted(set(ref_files) - set(files))
            files = {i: files[i] for i in common}
        sys_files[name] = files

    # models over clips (waveforms never outlive their batch)
    def run(files: Mapping[str, str], keys: Sequence[str]) -> dict[str, EmbeddingSet]:
        keys = [k for k in keys if k in audio]
        if not files or not keys:
            return {}
        return engine.extract(list(files.values()), {k: audio[k] for k in keys}, {k: specs[k] for k in keys}, cache,
                              batch_size=batch_size, workers=workers, progress=progress, on_error=on_error)

    judged = {_judge_key(plan, j) for j in plan.adherence}  # an estimator judging adherence also hears the reference
    ref_keys = [k for k in audio if (k != "joint" or ground_truth)
                and (not k.startswith(("melody:", "control:")) or k in judged)]
    named = len(sys_files) > 1  # warnings name the sets they came from when there are several to tell apart
    with warnings_of(REFERENCE if named else None):
        ref_out = run(ref_files, ref_keys)
    prompt_out: dict[str, EmbeddingSet] = {}
    if plan.melody:
        if melody_prompts is None:
            raise InputError("melody adherence needs the melody prompts (--melody-prompts DIR, one file per clip id)")
        prompt_out = run(_source("melody prompts", melody_prompts), [k for k in audio if k.startswith("melody:")])
    control_out = _controls(plan, controls, lambda files: run(files, [k for k in audio if k.startswith("control:")]))
    text: dict[str, np.ndarray] = {}
    if "joint" in built:
        if captions is None:
            raise PairingError("MCC needs captions (a MusicCaps-format CSV with ytid, caption)")
        ids = sorted(set().union(*[set(f) for f in sys_files.values()], set(ref_files) if ground_truth else set()))
        lacking = [i for i in ids if i not in captions]
        if lacking:
            raise PairingError(f"no caption for {len(lacking)} clip(s): {', '.join(lacking[:20])}"
                               f"{' …' if len(lacking) > 20 else ''}")
        text = dict(zip(ids, built["joint"].embed_text([captions[i] for i in ids])))

    stated: dict[str, list[str]] = {}
    if plan.adherence:
        from metrics.adherence import caption_texts

        stated = caption_texts(captions, aspects)
    factories = _metric_factories(plan, built, ref_stats, 0, seed)  # intervals: statistics(), once all are scored

    def score(name: str, directory, files: dict[str, str], outputs: dict[str, EmbeddingSet],
              keys: Sequence[tuple[str, str, Callable]]) -> SourceResult:
        # a clip every model skipped (unreadable, too short) is as good as missing: say so, and do not count it
        usable = set().union(*map(set, outputs.values())) if outputs else set(files)
        kept = {i: p for i, p in files.items() if i in usable}
        res = SourceResult(name, str(directory) if directory is not None else None, kept,
                           sorted(set(missing.get(name, [])) | (set(files) - usable)),
                           [vars(s) for s in {(s.path, s.reason): s for o in outputs.values() for s in o.skipped}.values()])
        for key, model_key, make in keys:
            got = outputs.get(model_key)
            if got is None or not got:
                continue
            metric = make()
            if model_key == "joint":
                metric.update("reference", {i: text[i] for i in got})
            elif model_key.startswith("melody:"):
                prompts = prompt_out.get(model_key, {})
                metric.update("reference", {i: prompts[i] for i in got if i in prompts})
            elif key.startswith("adherence_"):
                metric.update("reference", metric.encode({i: stated[i] for i in got if i in stated}))
            elif model_key.startswith("control:"):
                given = control_out.get(model_key, {})
                metric.update("reference", {i: given[i] for i in got if i in given})
            else:
                ref = ref_out.get(model_key, {})
                metric.update("reference", ref if key.startswith(("fad_", "kad_", "mad_")) else {i: ref[i] for i in got if i in ref})
            metric.update("generated", dict(got))
            res.metrics[key], res.states[key] = metric.compute(), metric
        return res

    reference_result = SourceResult(GROUND_TRUTH, str(reference), ref_files)
    truth = [f for f in factories if f[1] == "joint" or f[0].startswith("adherence_")] if ground_truth else []
    if any(f[1] in ref_out for f in truth):  # the reference audio's own MCC and adherence: the ceiling row
        reference_result = score(GROUND_TRUTH, reference, ref_files, {f[1]: ref_out[f[1]] for f in truth if f[1] in ref_out},
                                 truth)
        reference_result.skipped = [vars(s) for o in ref_out.values() for s in o.skipped]
    def scored(name: str, files: dict[str, str]) -> SourceResult:
        with warnings_of(f"system {name!r}" if named else None):
            return score(name, systems[name], files, run(files, list(audio)), factories)

    results = {name: scored(name, files) for name, files in sys_files.items()}
    for name, r in results.items():
        if audio and not r.metrics and not r.skipped:
            raise AudioError(systems[name], "no metric could be computed (no usable clips)")

    pairs = statistics(reference_result, results, n_boot, seed, pairwise)
    metadata = {**run_metadata(), "created_unix": started, "elapsed_s": round(time.time() - started, 2),
                "config": {"embedders": list(plan.embedders), "classifier": plan.classifier,
                           "extra_classifiers": list(plan.extra_classifiers), "joint": plan.joint,
                           "kld_convention": plan.kld_convention if plan.classifier else None,
                           "fad_inf": plan.fad_inf, "kad": plan.kad, "mad": plan.mad, "clip_seconds": plan.clip_seconds,
                           "melody": list(plan.melody), "melody_prompts": str(melody_prompts) if melody_prompts else None,
                           "controls": list(plan.controls), "controls_dir": str(controls) if controls else None,
                           "adherence": list(plan.adherence), "on_error": on_error, "device": device,
                           "n_boot": n_boot, "paired": paired, "reference": str(reference), "engine": engine.name},
                "seeds": {"bootstrap": seed},
                "models": {k: getattr(m, "id", None) for k, m in built.items()},
                "embedders": {k.split(":", 1)[1]: m.id for k, m in built.items() if k.startswith("embedder:")},
                "unavailable_embedders": unavailable,
                "protocol": {"fad": {k.split(":", 1)[1]: {**m.config, "preprocessing": preprocessing_key(m)}
                                     for k, m in built.items() if k.startswith("embedder:")}},
                "checkpoints": {k: getattr(m, "weights_sha256", None) or getattr(m, "id", None)
                                for k, m in built.items() if not k.startswith("embedder:")}}
    if cache is not None:
        metadata["cache"] = {"hits": cache.hits, "misses": cache.misses, "root": str(cache.root)}
    return Evaluation(reference_result, results, pairs, metadata)

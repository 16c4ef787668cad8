"""Control metrics: does generated audio follow the control (melody, key, chords, dynamics, rhythm) it was given?

Music ControlNet (Wu et al. 2023), Coco-Mulla, MusiConGen and JASCO each score control adherence with their own
scripts; here every one is a ``Metric`` (``metrics/metric.py``) over two sides keyed by clip id, like the melody
adherence metrics: ``"reference"`` holds the *control* (extracted from a folder of reference clips the way the
papers do, or read from CSV/JAMS/MIDI files by ``metrics.control.controls``) and ``"generated"`` the same feature
extracted from the generated clip. The pipeline (``metrics.evaluate``) runs each entry's extractor once per clip
through the embedding cache, so a control metric needs no model code of its own.

``CONTROL_METRICS`` is the one registry: one ``ControlMetric`` line per metric. The extractors are registered in
the embedder registry from here (``metrics.embedders``), so an entry is all a new control metric needs. This module
imports nothing heavy: the factories are ``"module:attr"`` strings resolved when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metrics.errors import InputError


@dataclass(frozen=True)
class ControlMetric:
    """One control metric: its result key, the Metric and feature-extractor factories, and what it compares."""

    name: str  # result key in the store ("melody_accuracy", "key_accuracy", …)
    metric: str  # "module:attr" of a factory (n_boot=, seed=) -> Metric
    control: str  # the control it needs: "melody", "key", "chords", "dynamics", "beats", "tempo", …
    extractor: str  # embedder-registry name of the per-clip feature, run on the control clip and the generated clip
    extractor_factory: str  # "module:attr" of that extractor's factory (path=None, device="cpu") -> Embedder
    extracts: str  # what the extractor computes, in words (protocols and --help)


# One line per control metric (rhythm: metrics/control/rhythm.py adds its lines here).
_ENTRIES: tuple[ControlMetric, ...] = (
    ControlMetric("melody_accuracy", "metrics.control.melody:MelodyAccuracy", "melody", "controlnet-chroma",
                  "metrics.control.melody:controlnet_chroma",
                  "one-hot argmax chroma of the high-passed audio (Music ControlNet), voiced frames flagged"),
    ControlMetric("key_accuracy", "metrics.control.tonal:KeyAccuracy", "key", "key-madmom",
                  "metrics.control.tonal_madmom:key_madmom", "global key by madmom's CNN key classifier (2018)"),
    ControlMetric("chord_majmin", "metrics.control.tonal:ChordMajmin", "chords", "chords-madmom",
                  "metrics.control.tonal_madmom:chords_madmom", "frame chords by madmom's CNN features + CRF (2016)"),
    ControlMetric("chord_root", "metrics.control.tonal:ChordRoot", "chords", "chords-madmom",
                  "metrics.control.tonal_madmom:chords_madmom", "frame chords by madmom's CNN features + CRF (2016)"),
    ControlMetric("key_accuracy_ks", "metrics.control.tonal:KeyAccuracyKS", "key", "key-ks",
                  "metrics.control.tonal:key_estimator",
                  "global key by Krumhansl-Schmuckler profile correlation of the clip's chroma (a baseline)"),
    ControlMetric("chord_majmin_template", "metrics.control.tonal:ChordMajminTemplate", "chords", "chords-template",
                  "metrics.control.tonal:chord_estimator",
                  "frame chords by major/minor triad template matching on chroma (a baseline recognizer)"),
    ControlMetric("dynamics_correlation", "metrics.control.dynamics:DynamicsCorrelation", "dynamics", "loudness-curve",
                  "metrics.control.dynamics:loudness_curve_factory",
                  "smoothed K-weighted (BS.1770) loudness curve in LUFS"),
    ControlMetric("beat_f", "metrics.control.rhythm:BeatF", "beats", "madmom-beats", "metrics.control.beats:madmom_beats",
                  "beat times by madmom's RNN beat activation + DBN tracker"),
    ControlMetric("downbeat_f", "metrics.control.rhythm:DownbeatF", "downbeats", "madmom-downbeats",
                  "metrics.control.beats:madmom_downbeats", "downbeat times by madmom's RNN downbeat activation + DBN bar tracker"),
    ControlMetric("tempo_acc1", "metrics.control.rhythm:TempoAcc1", "tempo", "madmom-tempo", "metrics.control.beats:madmom_tempo",
                  "tempo (bpm) by a comb-filter histogram of madmom's RNN beat activation"),
    ControlMetric("tempo_acc2", "metrics.control.rhythm:TempoAcc2", "tempo", "madmom-tempo", "metrics.control.beats:madmom_tempo",
                  "tempo (bpm) by a comb-filter histogram of madmom's RNN beat activation"),
)
CONTROL_METRICS: dict[str, ControlMetric] = {e.name: e for e in _ENTRIES}

# Where each control metric's definition comes from (``musiclm-eval protocols``; docs/protocol.md "Control metrics").
SOURCES: dict[str, str] = {
    "melody_rca": "raw chroma accuracy, MIREX melody extraction (mir_eval.melody.raw_chroma_accuracy); CREPE pitch",
    "chroma_cosine": "MusicGen melody (Copet et al. 2023): audiocraft/metrics/chroma_cosinesim.py",
    "melody_accuracy": "Music ControlNet (Wu et al. 2023, arXiv:2311.07069): melody accuracy, argmax chroma pitch class",
    "key_accuracy": "MIREX audio key detection weighted score (mir_eval.key.weighted_score)",
    "chord_majmin": "MIREX chord estimation, majmin vocabulary (mir_eval.chord.majmin); Coco-Mulla, MusiConGen, JASCO",
    "chord_root": "MIREX chord estimation, root (mir_eval.chord.root)",
    "key_accuracy_ks": "MIREX weighted key score; Krumhansl-Schmuckler estimator with Albrecht & Shanahan 2013 "
                       "profiles (baseline)",
    "chord_majmin_template": "mir_eval.chord.majmin; triad template-matching recognizer (Fujishima 1999; baseline)",
    "dynamics_correlation": "Music ControlNet (Wu et al. 2023): dynamics correlation (Pearson r of smoothed loudness); "
                            "ITU-R BS.1770 K-weighting",
    "beat_f": "mir_eval.beat.f_measure (±70 ms); Music ControlNet rhythm F1, MusiConGen, Coco-Mulla",
    "downbeat_f": "mir_eval.beat.f_measure (±70 ms) on downbeats; Music ControlNet",
    "tempo_acc1": "Gouyon et al. 2006 tempo accuracy 1 (within 4 %)",
    "tempo_acc2": "Gouyon et al. 2006 tempo accuracy 2 (within 4 % of ×1, ×2, ×3, ×½, ×⅓)",
}


def describe() -> list[dict]:
    """Every control metric with its control, extractor and source (what ``musiclm-eval protocols`` prints)."""
    rows = [{"metric": k, "control": "melody", "extractor": "crepe-pitch" if k == "melody_rca" else "chroma",
             "extracts": "melody adherence (metrics/melody_adherence.py)", "source": SOURCES[k]} for k in MELODY_ADHERENCE]
    return rows + [{"metric": e.name, "control": e.control, "extractor": e.extractor, "extracts": e.extracts,
                    "source": SOURCES.get(e.name, "")} for e in CONTROL_METRICS.values()]


def register(entry: ControlMetric) -> None:
    """Add or replace a control metric at run time (a plug-in's own metric)."""
    CONTROL_METRICS[entry.name] = entry


def names() -> list[str]:
    return list(CONTROL_METRICS)


def entry(name: str) -> ControlMetric:
    if name not in CONTROL_METRICS:
        raise InputError(f"unknown control metric {name!r}; available: {', '.join(CONTROL_METRICS)}")
    return CONTROL_METRICS[name]


def _resolve(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def control_metric(name: str, n_boot: int = 1000, seed: int = 0):
    """A fresh Metric for the control metric ``name``."""
    return _resolve(entry(name).metric)(n_boot=n_boot, seed=seed)


def extractors() -> dict[str, str]:
    """Embedder-registry entries of every control feature (``metrics.embedders`` adds them to its builtins)."""
    return {e.extractor: e.extractor_factory for e in CONTROL_METRICS.values()}


__all__ = ["CONTROL_METRICS", "MELODY_ADHERENCE", "ControlMetric", "control_metric", "control_plan", "entry", "extractors",
           "names", "register"]


# The melody adherence metrics (metrics/melody_adherence.py) that a melody control also gets, by Plan.melody kind.
MELODY_ADHERENCE = {"melody_rca": "pitch", "chroma_cosine": "chroma"}
MELODY_SET = ("melody_rca", "chroma_cosine", "melody_accuracy")  # what --melody-prompts alone computes


def control_plan(controls: str | Path | None, melody_prompts: str | Path | None = None,
                 selection: Sequence[str] | None = None) -> tuple[tuple[str, ...], tuple[str, ...], Path | None, Path | None]:
    """``(plan.melody, plan.controls, melody prompts folder, controls folder)`` of the CLI's ``--controls DIR``,
    ``--melody-prompts DIR`` and ``--control-metrics`` (None: every control metric and both melody adherence
    metrics with ``--controls``; the three melody metrics with ``--melody-prompts`` alone). The melody prompts
    are the melody control, so either folder serves the melody metrics: ``--melody-prompts`` wins for
    ``melody_rca``/``chroma_cosine`` when both are given, ``--controls`` for the rest."""
    if controls is None and melody_prompts is None:
        if selection:
            raise InputError("--control-metrics needs --controls DIR (or --melody-prompts DIR)")
        return (), (), None, None
    default = MELODY_SET if controls is None else (*MELODY_ADHERENCE, *CONTROL_METRICS)
    chosen = list(selection or default)
    unknown = [n for n in chosen if n not in MELODY_ADHERENCE and n not in CONTROL_METRICS]
    if unknown:
        raise InputError(f"--control-metrics: unknown {', '.join(unknown)}; available: "
                         f"{', '.join([*MELODY_ADHERENCE, *CONTROL_METRICS])}")
    melody = tuple(MELODY_ADHERENCE[n] for n in chosen if n in MELODY_ADHERENCE)
    ctrl = tuple(n for n in chosen if n in CONTROL_METRICS)
    folder = Path(controls if controls is not None else melody_prompts)
    prompts = Path(melody_prompts) if melody_prompts is not None else folder
    return melody, ctrl, prompts if melody else None, folder if ctrl else None

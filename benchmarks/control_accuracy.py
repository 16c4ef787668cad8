"""How accurate is each control estimator? Measured on the procedural corpus, whose specs know the truth.

``musiclm_ref.data`` renders every clip from a spec that holds its key and mode, its chord per bar (scale degrees
of a progression), its melody notes (beats, MIDI pitches) and its tempo and meter, so each estimator that
``metrics/control`` runs on generated audio can be scored against the truth with the control metric itself:
the key estimator with the MIREX weighted score (and exact accuracy), the chord baseline with mir_eval's majmin
and root accuracy, the melody chroma with Music ControlNet's pitch-class accuracy against the notes' pitch
classes. Writes ``docs/figures/control_accuracy.json`` (rendered into README.md by ``benchmarks.figures``)::

    python -m benchmarks.control_accuracy            # 48 clips x 10 s, seed 1 (the tonal choices were made on seed 0)

``ESTIMATORS`` is extensible: an entry is a name and a function ``(spec, wave, sr, seconds) -> {score: value}``;
the rhythm estimators (tempo, beats) add theirs beside these. Every entry's scores are averaged over clips.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.rhythm_accuracy import rhythm_check
from musiclm_ref.data.specs import MAJOR, MINOR, ClipSpec, sample_spec

OUT = Path("docs/figures/control_accuracy.json")
SR = 22050
Check = Callable[[ClipSpec, np.ndarray, int, float], dict[str, float]]


def truth_chords(spec: ClipSpec, seconds: float) -> list[tuple[float, float, str]]:
    """(start, end, Harte label) per bar: the render's triad on each progression degree (musiclm_ref/data/render.py)."""
    from metrics.control.tonal import PITCH_CLASSES

    scale = MAJOR if spec.mode == "major" else MINOR
    bar = 60.0 / spec.tempo * spec.meter
    out = []
    for b in range(int(np.ceil(seconds / bar))):
        deg = spec.progression[b % len(spec.progression)]
        third = (scale[(deg + 2) % 7] - scale[deg % 7]) % 12
        fifth = (scale[(deg + 4) % 7] - scale[deg % 7]) % 12
        quality = {(4, 7): "maj", (3, 7): "min", (3, 6): "dim"}.get((third, fifth), "X")
        out.append((b * bar, min((b + 1) * bar, seconds), f"{PITCH_CLASSES[(spec.key + scale[deg % 7]) % 12]}:{quality}"))
    return out


def truth_notes(spec: ClipSpec, seconds: float) -> list[tuple[float, float, int]]:
    """(start s, duration s, pitch) of the melody as rendered: whole phrases looped (musiclm_ref/data/render.py)."""
    beat = 60.0 / spec.tempo
    phrase = 2 * spec.meter
    if not spec.melody:
        return []
    span = max(phrase, int(np.ceil(max(s + d for s, d, _ in spec.melody) / phrase)) * phrase)
    notes = []
    for loop in range(int(np.ceil(seconds / (span * beat)))):
        for start, dur, pitch in spec.melody:
            t = (start + loop * span) * beat
            if t >= seconds:
                break
            notes.append((t, dur * beat, pitch + 12 * spec.octave_shift))
    return notes


def key_check(spec: ClipSpec, wave: np.ndarray, sr: int, seconds: float, extractor: str = "key-madmom") -> dict[str, float]:
    from metrics.control.tonal import key_weighted_score

    est = _extract(extractor, wave, sr)[0]
    ref = (spec.key, 0 if spec.mode == "major" else 1)
    return {"mirex_weighted": key_weighted_score(ref, est), "exact": float(tuple(est.astype(int)) == ref)}


def chord_check(spec: ClipSpec, wave: np.ndarray, sr: int, seconds: float,
                extractor: str = "chords-madmom") -> dict[str, float]:
    from metrics.control.controls import chord_segment_frames
    from metrics.control.tonal import frame_accuracy, majmin_scores, root_scores

    est = _extract(extractor, wave, sr)
    ref = chord_segment_frames(truth_chords(spec, seconds), 22050 / 1024, n_frames=len(est))
    return {"majmin": frame_accuracy(majmin_scores(ref, est)), "root": frame_accuracy(root_scores(ref, est))}


def melody_check(spec: ClipSpec, wave: np.ndarray, sr: int, seconds: float) -> dict[str, float]:
    from metrics.control.controls import melody_frames
    from metrics.control.melody import pitch_class_accuracy

    est = _extract("controlnet-chroma", wave, sr)
    ref = melody_frames(truth_notes(spec, seconds), 22050 / 512, n_frames=len(est))
    return {"pitch_class_accuracy": pitch_class_accuracy(ref, est)}


_BUILT: dict = {}


def _extract(name: str, wave: np.ndarray, sr: int) -> np.ndarray:
    """The registered extractor ``name`` (built once) on ``wave``, resampled to its rate."""
    from metrics.audio import resample
    from metrics.embedders import get_embedder

    if name not in _BUILT:
        _BUILT[name] = get_embedder(name)
    ext = _BUILT[name]
    return ext.embed(resample(wave, sr, ext.sample_rate))


# name -> (what is estimated, by what, the check)
ESTIMATORS: dict[str, tuple[str, str, Check]] = {
    "key": ("key and mode", "key-madmom (madmom CNN, Korzeniowski & Widmer 2018)", key_check),
    "key-ks": ("key and mode", "key-ks baseline (Krumhansl-Schmuckler, Albrecht-Shanahan profiles, low-passed log "
               "chroma)", lambda *a: key_check(*a, extractor="key-ks")),
    "chords": ("chord per frame (maj/min)", "chords-madmom (madmom CNN + CRF, Korzeniowski & Widmer 2016)", chord_check),
    "chords-template": ("chord per frame (maj/min)", "chords-template baseline (triad template matching)",
                        lambda *a: chord_check(*a, extractor="chords-template")),
    "melody": ("melody pitch class per frame", "controlnet-chroma (argmax chroma above middle C)", melody_check),
    "rhythm": ("beats, downbeats, tempo", "madmom RNN beat/downbeat + DBN trackers, comb-filter tempo", rhythm_check),
}


def measure(n_clips: int = 48, seconds: float = 10.0, seed: int = 1, names: list[str] | None = None) -> dict:
    """Every estimator's mean scores over ``n_clips`` corpus clips (rendered at 22,050 Hz)."""
    from musiclm_ref.data.render import render

    names = names or list(ESTIMATORS)
    scores: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    spent = dict.fromkeys(names, 0.0)
    for i in range(n_clips):
        spec = sample_spec(seed, i)
        wave = render(spec, seconds, SR)
        for name in names:
            t0 = time.perf_counter()
            for k, v in ESTIMATORS[name][2](spec, wave, SR, seconds).items():
                if v is not None:
                    scores[name].setdefault(k, []).append(float(v))
            spent[name] += time.perf_counter() - t0
    out = {}
    for name in names:
        what, by, _ = ESTIMATORS[name]
        out[name] = {"estimates": what, "estimator": by, "n_clips": n_clips,
                     "scores": {k: round(float(np.mean(v)), 4) for k, v in scores[name].items()},
                     "seconds_per_clip": round(spent[name] / n_clips, 4)}
    return {"corpus": {"seed": seed, "clips": n_clips, "seconds": seconds, "sample_rate": SR,
                       "source": "musiclm_ref.data.specs.sample_spec + render (truth from the specs)"},
            "estimators": out}


def main(argv: list[str] | None = None) -> int:
    from metrics.io import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default="", help="comma list of estimators to (re)measure; the others are kept")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    names = [n for n in a.only.split(",") if n] or None
    doc = measure(a.clips, a.seconds, a.seed, names)
    if names and a.out.exists():  # re-measuring some estimators keeps the others' entries
        import json

        old = json.loads(a.out.read_text())
        doc["estimators"] = {**old.get("estimators", {}), **doc["estimators"]}
    write_json(a.out, doc)
    for name, e in doc["estimators"].items():
        print(f"{name}: {e['scores']} ({e['estimator']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Key and chord controls: MIREX key weighted score and mir_eval's majmin / root chord accuracy.

Estimators (non-learned; no chord recognizer with real weights installs offline, so the chord one is a
*baseline*, labelled as such everywhere it is reported), both on the suite's STFT chroma
(``metrics.melody_adherence.AudiocraftChroma``) at 22,050 Hz, 4,096-sample window, 1,024-sample hop (21.53 frames/s):

The audio is first low-passed (4th-order Butterworth at 500 Hz: the bass and chord register, where the upper
partials of the melody — a 5th harmonic is a major third two octaves up — do not smear the chroma) and the chroma
log-compressed (log(1 + 100·c / max c), Müller's logarithmic compression). Both choices were made on 24 corpus
clips of seed 0 (key weighted score 0.31 → 0.63, chord majmin 0.40 → 0.65); ``benchmarks.control_accuracy``
reports the estimators on other clips (seed 1).

- key (``key-ks``): Krumhansl-Schmuckler key finding — the clip's summed, frame-normalized chroma correlated with
  the Albrecht & Shanahan (2013) major and minor profiles in all 12 rotations; the best of 24 keys. Feature
  [1, 2] = (tonic pitch class, mode: 0 major, 1 minor); tonic -1 for a silent clip.
- chords (``chords-template``): each frame's chroma (a 21-frame, 0.98 s moving average) matched by cosine to the
  24 binary major/minor triad templates; frames 40 dB below the loudest are ``N``. Feature [frames, 14] =
  (root, bass, 12-bit root-relative bitmap), mir_eval's ``encode`` layout, so a control read from a chord file
  (any Harte label) and an estimate compare the way mir_eval compares them.

Scores, each an own implementation equal to mir_eval's (tests/test_control_metrics.py checks parity):
- ``key_accuracy``: MIREX weighted score (``mir_eval.key.weighted_score``): same key 1, estimate a fifth above in
  the same mode 0.5, relative major/minor 0.3, parallel 0.2, else 0;
- ``chord_majmin`` / ``chord_root``: ``mir_eval.chord.majmin`` / ``root`` frame comparisons, out-of-gamut
  reference frames (score -1) left out, the share of correct frames per clip (mir_eval's duration-weighted
  accuracy on equal frames). Every clip weighs 1 in the mean over clips.
"""

from __future__ import annotations

import numpy as np

from metrics.melody_adherence import AudiocraftChroma, _PairedMelody

# Albrecht & Shanahan (2013, Music Perception 31(1)) key profiles, C major and C minor
MAJOR_PROFILE = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
MINOR_PROFILE = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES = ("major", "minor")
MAJ = np.array([1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0])  # root-relative bitmaps (mir_eval.chord.QUALITIES)
MIN = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])
SILENT_DB = 40.0
SMOOTH_FRAMES = 21
LOWPASS_HZ = 500.0


def log_chroma(power: np.ndarray) -> np.ndarray:
    """log(1 + 100·c / max c) of a chroma energy (0 stays 0)."""
    peak = float(np.max(power, initial=0.0))
    return np.log1p(100.0 * power / peak) if peak > 0 else np.zeros_like(power)


class _TonalChroma(AudiocraftChroma):
    """The key and chord estimators' shared chroma (22,050 Hz, 4,096 window, 1,024 hop)."""

    def __init__(self, device: str = "cpu"):
        from scipy.signal import butter

        super().__init__(sample_rate=22050, radix2_exp=12, argmax=False, device=device)
        self.sos = butter(4, LOWPASS_HZ, btype="lowpass", fs=self.sample_rate, output="sos")

    def low_chroma(self, wave: np.ndarray) -> np.ndarray:
        """The chroma energy of the low-passed clip."""
        from scipy.signal import sosfilt

        return self.chroma_power(sosfilt(self.sos, np.asarray(wave, np.float64)))

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop


class KeyEstimator(_TonalChroma):
    """``key-ks``: [1, 2] = (tonic pitch class, mode 0 major / 1 minor) by Krumhansl-Schmuckler."""

    name = "key-ks"

    def __init__(self, device: str = "cpu"):
        super().__init__(device)
        self.dim, self.id = 2, f"key-ks-as2013-sr22050-n4096-lp{LOWPASS_HZ:g}-log100-v2"

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return np.array([estimate_key(self.low_chroma(wave))], np.float32)


def estimate_key(chroma: np.ndarray) -> tuple[int, int]:
    """(tonic, mode) of a chroma energy [frames, 12]: log-compressed, frames normalized to sum 1, summed, best of
    the 24 rotated key profiles by Pearson correlation; (-1, 0) when there is no energy."""
    chroma = log_chroma(chroma)
    energy = chroma.sum(axis=1, keepdims=True)
    if not (energy > 0).any():
        return -1, 0
    profile = (chroma / np.maximum(energy, 1e-12)).sum(axis=0)
    best, key = -np.inf, (-1, 0)
    for mode, template in enumerate((MAJOR_PROFILE, MINOR_PROFILE)):
        for tonic in range(12):
            r = np.corrcoef(profile, np.roll(template, tonic))[0, 1]
            if r > best:
                best, key = r, (tonic, mode)
    return key


class ChordEstimator(_TonalChroma):
    """``chords-template``: [frames, 14] = (root, bass, bitmap) by major/minor triad template matching (a baseline)."""

    name = "chords-template"

    def __init__(self, device: str = "cpu"):
        super().__init__(device)
        self.dim, self.id = 14, f"chords-template-sr22050-n4096-lp{LOWPASS_HZ:g}-log100-s{SMOOTH_FRAMES}-v2"

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return estimate_chords(self.low_chroma(wave))


def estimate_chords(chroma: np.ndarray, smooth: int = SMOOTH_FRAMES, silent_db: float = SILENT_DB) -> np.ndarray:
    """Frame chords [frames, 14] of a chroma energy [frames, 12] (see the module docstring)."""
    from scipy.ndimage import uniform_filter1d

    power = np.asarray(chroma, np.float64)
    c = uniform_filter1d(log_chroma(power), smooth, axis=0, mode="nearest") if len(power) else power
    templates = np.stack([np.roll(q, r) for q in (MAJ, MIN) for r in range(12)]).astype(np.float64)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    scores = (c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)) @ templates.T
    best = scores.argmax(axis=1)
    energy = uniform_filter1d(power.sum(axis=1), smooth, mode="nearest") if len(power) else power.sum(axis=1)
    silent = (energy <= 0) | (energy < energy.max(initial=0.0) * 10 ** (-silent_db / 10))
    out = np.zeros((len(c), 14), np.float32)
    out[:, 0] = best % 12
    out[:, 2:] = np.where((best < 12)[:, None], MAJ, MIN)
    out[silent, 0], out[silent, 1], out[silent, 2:] = -1, -1, 0
    return out


def key_estimator(path: str | None = None, device: str = "cpu") -> KeyEstimator:
    _no_weights("key-ks", path)
    return KeyEstimator(device=device)


def chord_estimator(path: str | None = None, device: str = "cpu") -> ChordEstimator:
    _no_weights("chords-template", path)
    return ChordEstimator(device=device)


def _no_weights(name: str, path: str | None) -> None:
    from metrics.embedders import EmbedderError

    if path:
        raise EmbedderError(f"{name} takes no path (its model is built in); a path ({path}) does not apply to it")


# ----------------------------------------------------------------------------- labels and scores


def key_label(tonic: int, mode: int) -> str:
    """mir_eval's key string ("C major", "F# minor"; "X" for no key)."""
    return "X" if tonic < 0 else f"{PITCH_CLASSES[int(tonic)]} {MODES[int(mode)]}"


def key_weighted_score(ref: tuple[int, int], est: tuple[int, int]) -> float:
    """MIREX key weighted score of (tonic, mode) pairs, the rules of ``mir_eval.key.weighted_score``."""
    (rt, rm), (et, em) = (int(ref[0]), int(ref[1])), (int(est[0]), int(est[1]))
    if rt < 0 or et < 0:
        return 1.0 if rt == et else 0.0
    if (rt, rm) == (et, em):
        return 1.0
    if rm == em and (et - rt) % 12 == 7:
        return 0.5
    if rm != em and (et - rt) % 12 == (9 if rm == 0 else 3):
        return 0.3
    if rm != em and rt == et:
        return 0.2
    return 0.0


def chord_frames(labels: list[str]) -> np.ndarray:
    """[frames, 14] (root, bass, bitmap) of Harte chord labels (``mir_eval.chord.encode``; the ``controls`` extra)."""
    from mir_eval.chord import encode_many

    roots, bitmaps, bass = encode_many(list(labels), False)
    return np.column_stack([roots, bass, bitmaps]).astype(np.float32)


def chord_labels(frames: np.ndarray) -> list[str]:
    """Harte labels of estimator frames (maj / min / N only) — for reports and the mir_eval parity tests."""
    out = []
    for root, _, *bits in np.asarray(frames, int):
        if root < 0:
            out.append("N")
        else:
            out.append(f"{PITCH_CLASSES[root]}:{'min' if bits[3] else 'maj'}")
    return out


def root_scores(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """``mir_eval.chord.root`` per frame: 1 if the roots agree, 0 if not, -1 where the reference is X."""
    ref, est = np.asarray(ref, int), np.asarray(est, int)
    s = (ref[:, 0] == est[:, 0]).astype(np.float64)
    s[(ref[:, 2:] < 0).any(axis=1)] = -1.0
    return s


def majmin_scores(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """``mir_eval.chord.majmin`` per frame: the roots and the first 8 semitones agree (inversions ignored); -1
    where the reference is neither major, minor nor N."""
    ref, est = np.asarray(ref, int), np.asarray(est, int)
    rs, es = ref[:, 2:10], est[:, 2:10]
    s = ((ref[:, 0] == est[:, 0]) & (rs == es).all(axis=1)).astype(np.float64)
    ok = (rs == MAJ[:8]).all(axis=1) | (rs == MIN[:8]).all(axis=1) | ((ref[:, 0] < 0) & (ref[:, 2:] == 0).all(axis=1))
    s[~ok] = -1.0
    return s


def frame_accuracy(scores: np.ndarray) -> float | None:
    """Share of correct frames among the in-gamut ones (mir_eval's weighted accuracy on equal frames)."""
    valid = scores >= 0
    return float(scores[valid].mean()) if valid.any() else None


# ----------------------------------------------------------------------------- Metrics


class KeyAccuracy(_PairedMelody):
    """Mean MIREX key weighted score of the generated clips' keys (madmom's CNN) against the control keys."""

    name = "key_accuracy"
    output = "key-madmom"
    higher_is_better = True  # a weighted share of correct keys
    bounds = (0.0, 1.0)

    def config(self) -> dict:
        return {"feature": self.output, "score": "MIREX weighted (mir_eval.key.weighted_score)"}

    def pair_terms(self, prompt: np.ndarray, generated: np.ndarray) -> tuple[float, float] | None:
        ref, est = np.asarray(prompt).reshape(-1, 2)[0], np.asarray(generated).reshape(-1, 2)[0]
        return None if ref[0] < 0 else (key_weighted_score(ref, est), 1.0)


class _ChordAccuracy(_PairedMelody):
    output = "chords-madmom"
    higher_is_better = True  # a share of frames with the control's chord
    bounds = (0.0, 1.0)
    comparison = "majmin"

    def config(self) -> dict:
        return {"feature": self.output, "frame_rate": 22050 / 1024,
                "comparison": f"mir_eval.chord.{self.comparison}"}

    def pair_terms(self, prompt: np.ndarray, generated: np.ndarray) -> tuple[float, float] | None:
        t = min(len(prompt), len(generated))
        scores = (majmin_scores if self.comparison == "majmin" else root_scores)(prompt[:t], generated[:t])
        acc = frame_accuracy(scores)
        return None if acc is None else (acc, 1.0)


class ChordMajmin(_ChordAccuracy):
    """Chord accuracy, mir_eval's majmin comparison."""

    name = "chord_majmin"
    comparison = "majmin"


class ChordRoot(_ChordAccuracy):
    """Chord accuracy, mir_eval's root comparison."""

    name = "chord_root"
    comparison = "root"


class KeyAccuracyKS(KeyAccuracy):
    """The key score with the Krumhansl-Schmuckler baseline estimator (no madmom needed)."""

    name = "key_accuracy_ks"
    output = "key-ks"


class ChordMajminTemplate(ChordMajmin):
    """The majmin chord score with the template-matching baseline recognizer (no madmom needed)."""

    name = "chord_majmin_template"
    output = "chords-template"

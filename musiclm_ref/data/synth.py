"""The procedural captioned music corpus: the project's embedded default data set and metric test bed.

Each clip is a small piece of music — chords, a bass line, a melody and drums — rendered from a
``ClipSpec`` that is drawn from ``(seed, index)`` alone, so clip *i* is the same whatever *n* is, and
work can be split across processes without changing a byte. A clip's id names everything its bytes
depend on — ``syn-s<seed>-<settings>-<index>`` (``clip_id``) — so corpora made with other seeds or
settings never collide on ids, and a training split recorded as settings + split (``split_record``)
can be regenerated id for id (what tests/test_splits.py checks every shipped manifest against). Captions are generated from the same
spec, so every word about instruments, tempo, mood and style is true of the audio: that is what makes
the corpus usable for training the classifier and MuLan, and for checking that metrics move the
right way.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter, oaconvolve

from metrics.audio import save_audio
from metrics.errors import InputError
from metrics.musiccaps import write_captions
from musiclm_ref.data.splits import clip_id, split_indices, split_of, split_record

NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
PROGRESSIONS = {  # scale degrees (0-based) of each bar's chord root
    "major": [[0, 4, 5, 3], [0, 3, 4, 0], [0, 5, 3, 4], [0, 3, 0, 4]],
    "minor": [[0, 5, 2, 6], [0, 3, 4, 0], [0, 6, 5, 4], [0, 3, 6, 2]],
}

# ------------------------------------------------------------------ timbres ---------------------------

TIMBRES = ["piano", "guitar", "organ", "bass", "synth lead", "pad", "bell", "flute"]


def _env(n: int, sr: int, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """ADSR envelope over n samples (release taken from the end)."""
    t = np.arange(n) / sr
    a = np.minimum(1.0, t / max(attack, 1e-4))
    d = sustain + (1 - sustain) * np.exp(-np.maximum(t - attack, 0) / max(decay, 1e-4))
    env = np.where(t < attack, a, d)
    r = int(min(release * sr, n))
    if r > 0:
        env[-r:] *= np.linspace(1, 0, r)
    return env


def _one_pole_lowpass(x: np.ndarray, cutoff: float, sr: int) -> np.ndarray:
    a = np.exp(-2 * np.pi * cutoff / sr)
    return lfilter([1 - a], [1, -a], x)


def note(timbre: str, freq: float, dur: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of ``timbre`` (float64, peak ≈ 1). Vectorized: one array per note."""
    n = max(int(dur * sr), 16)
    t = np.arange(n) / sr
    ph = 2 * np.pi * freq * t
    if timbre == "piano":  # decaying inharmonic-free partials, brighter at the attack
        # partial k = sin(k·ph)·exp(-(2.5 + 1.5k)t)/k, by the recurrences sin(kφ) = 2cos φ sin((k-1)φ) - sin((k-2)φ)
        # and exp(-1.5kt) = exp(-1.5t)^k: two transcendental calls per note instead of twelve
        two_cos, step = 2 * np.cos(ph), np.exp(-1.5 * t)
        prev, cur, decay = np.zeros(n), np.sin(ph), np.exp(-2.5 * t)
        x = np.zeros(n)
        for k in range(1, 7):
            decay = decay * step
            x += cur * decay / k
            prev, cur = cur, two_cos * cur - prev
        return x * _env(n, sr, 0.004, 0.6, 0.0, 0.05)
    if timbre == "guitar":  # Karplus–Strong plucked string
        period = max(int(round(sr / freq)), 2)
        burst = np.zeros(n)
        burst[:period] = rng.uniform(-1, 1, period)
        a = np.zeros(period + 2)
        a[0], a[period], a[period + 1] = 1.0, -0.497, -0.497
        return lfilter([1.0], a, burst) * _env(n, sr, 0.001, 10.0, 1.0, 0.03)
    if timbre == "organ":  # additive drawbars, steady
        x = np.sin(ph) + 0.6 * np.sin(2 * ph) + 0.4 * np.sin(3 * ph) + 0.25 * np.sin(4 * ph) + 0.2 * np.sin(6 * ph)
        return x / 2.4 * _env(n, sr, 0.01, 0.1, 1.0, 0.04)
    if timbre == "bass":  # sine + filtered saw, plucky
        saw = 2 * ((freq * t) % 1.0) - 1
        x = 0.8 * np.sin(ph) + 0.5 * _one_pole_lowpass(saw, 4 * freq, sr)
        return x * _env(n, sr, 0.005, 0.3, 0.5, 0.05)
    if timbre == "synth lead":  # square/saw mix through a swept low-pass
        sq = np.sign(np.sin(ph))
        saw = 2 * ((freq * t) % 1.0) - 1
        x = _one_pole_lowpass(0.6 * sq + 0.4 * saw, 2500.0, sr)
        return x * _env(n, sr, 0.01, 0.2, 0.7, 0.05)
    if timbre == "pad":  # detuned saws, slow attack, dark
        x = sum(2 * ((freq * d * t + p) % 1.0) - 1 for d, p in ((1.0, 0.0), (1.006, 0.3), (0.994, 0.7)))
        return _one_pole_lowpass(x / 3, 1200.0, sr) * _env(n, sr, min(0.4, dur / 3), 1.0, 0.8, min(0.3, dur / 3))
    if timbre == "bell":  # two-operator FM, inharmonic ratio
        mod = 2.0 * np.exp(-t * 3) * np.sin(2 * np.pi * freq * 3.5 * t)
        return np.sin(ph + mod) * np.exp(-t * 2.2) * _env(n, sr, 0.002, 10.0, 1.0, 0.02)
    if timbre == "flute":  # sine with vibrato and breath noise
        vib = 0.004 * np.sin(2 * np.pi * 5.0 * t) * np.minimum(1, t / 0.3)
        x = np.sin(2 * np.pi * freq * (t + np.cumsum(vib) / sr)) + 0.15 * np.sin(2 * ph)
        breath = _one_pole_lowpass(rng.standard_normal(n), 3000.0, sr) * 0.08
        return (x + breath) * _env(n, sr, 0.06, 0.2, 0.85, 0.06)
    raise ValueError(f"unknown timbre {timbre!r}; expected one of {', '.join(TIMBRES)}")


# ------------------------------------------------------------------ drums ----------------------------

DRUM_KITS = ["none", "rock", "electronic", "brushed"]


def _hit(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.35 * sr)
    t = np.arange(n) / sr
    if kind == "kick":
        f = 50 + 90 * np.exp(-t * 30)
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t * 9)
    if kind == "808":
        f = 45 + 60 * np.exp(-t * 18)
        return np.tanh(1.5 * np.sin(2 * np.pi * np.cumsum(f) / sr)) * np.exp(-t * 4)
    if kind == "snare":
        body = np.sin(2 * np.pi * 190 * t) * np.exp(-t * 25)
        return 0.5 * body + 0.6 * rng.standard_normal(n) * np.exp(-t * 18)
    if kind == "clap":
        env = sum(np.exp(-np.maximum(t - d, 0) * 60) * (t >= d) for d in (0, 0.01, 0.02))
        return rng.standard_normal(n) * env * 0.6
    if kind == "hat":
        noise = rng.standard_normal(n)
        return (noise - _one_pole_lowpass(noise, 7000.0, sr)) * np.exp(-t * 60) * 0.5
    if kind == "brush":
        return _one_pole_lowpass(rng.standard_normal(n), 5000.0, sr) * np.exp(-((t - 0.06) ** 2) / 0.002) * 0.25
    raise ValueError(kind)


def drum_pattern(kit: str, meter: int) -> list[tuple[float, str]]:
    """(beat position within the bar, hit) for one bar."""
    if kit == "none":
        return []
    if kit == "rock":
        hits = [(b, "hat") for b in np.arange(0, meter, 0.5)]
        hits += [(0, "kick")] + ([(2, "kick"), (2.5, "kick")] if meter == 4 else [])
        hits += [(b, "snare") for b in ((1, 3) if meter == 4 else (1, 2))]
        return hits
    if kit == "electronic":
        hits = [(b, "808") for b in range(meter)] + [(b, "hat") for b in np.arange(0.5, meter, 1.0)]
        hits += [(b, "clap") for b in ((1, 3) if meter == 4 else (1,))]
        return hits
    if kit == "brushed":
        return [(b, "brush") for b in np.arange(0, meter, 0.5)] + [(0, "kick")]
    raise ValueError(f"unknown drum kit {kit!r}; expected one of {', '.join(DRUM_KITS)}")


# ------------------------------------------------------------------ styles ---------------------------


@dataclass(frozen=True)
class StylePreset:
    melody: tuple[str, ...]  # instruments that may carry the melody
    harmony: tuple[str, ...]  # instruments that may play the chords
    drums: tuple[str, ...]
    tempo: tuple[int, int]
    meters: tuple[int, ...]
    moods: tuple[str, str]  # (gentler, more intense): the mood picks the tempo half and the dynamics
    reverb: tuple[float, float]  # wet range
    chord_rhythm: str  # "sustain" | "beats" | "arpeggio" | "waltz"
    bass: bool = True
    minor_prob: float = 0.5


STYLES: dict[str, StylePreset] = {
    "ambient": StylePreset(("bell", "flute"), ("pad",), ("none",), (60, 80), (4,), ("calm", "dreamy"), (0.35, 0.5), "sustain", False, 0.5),
    "rock": StylePreset(("synth lead", "guitar"), ("guitar",), ("rock",), (110, 150), (4,), ("energetic", "aggressive"), (0.05, 0.12), "beats", True, 0.5),
    "techno": StylePreset(("synth lead",), ("pad", "organ"), ("electronic",), (122, 140), (4,), ("hypnotic", "driving"), (0.1, 0.2), "beats", True, 0.7),
    "waltz": StylePreset(("flute", "piano"), ("piano", "organ"), ("none", "brushed"), (84, 110), (3,), ("romantic", "elegant"), (0.15, 0.3), "waltz", True, 0.4),
    "lullaby": StylePreset(("bell", "flute"), ("piano",), ("none",), (60, 76), (3, 4), ("gentle", "tender"), (0.2, 0.35), "arpeggio", False, 0.3),
    "march": StylePreset(("synth lead", "organ"), ("organ",), ("rock",), (100, 124), (4,), ("proud", "triumphant"), (0.08, 0.15), "beats", True, 0.2),
    "jazz": StylePreset(("piano", "flute"), ("piano", "organ"), ("brushed",), (90, 180), (4,), ("relaxed", "playful"), (0.1, 0.2), "beats", True, 0.5),
}
MOODS = sorted({m for s in STYLES.values() for m in s.moods})

# AudioSet ontology ids for `audioset_positive_labels` (checked against class_labels_indices.csv):
# Music, plus what is audibly there. Styles without an AudioSet class (waltz, march) get none.
AUDIOSET_MIDS = {
    "music": "/m/04rlf",
    "piano": "/m/05r5c", "guitar": "/m/0342h", "organ": "/m/013y1f", "bass": "/m/018vs",
    "synth lead": "/m/0l14qv", "pad": "/m/0l14qv", "bell": "/m/0395lw", "flute": "/m/0l14j_",
    "rock drums": "/m/02hnl", "brushed drums": "/m/02hnl", "electronic drums": "/m/0cfdd",
    "rock": "/m/06by7", "jazz": "/m/03_d0", "techno": "/m/07gxw", "ambient": "/m/0fd3y", "lullaby": "/m/07pkxdp",
}  # fmt: skip


def tempo_class(bpm: float) -> str:
    return "slow tempo" if bpm < 90 else ("medium tempo" if bpm <= 130 else "fast tempo")


# TAG_VOCAB: what the classifier learns (instrument, style, tempo class, mood, drums).
TAG_VOCAB: list[str] = sorted(
    set(TIMBRES)
    | set(STYLES)
    | {"slow tempo", "medium tempo", "fast tempo"}
    | set(MOODS)
    | {f"{k} drums" for k in DRUM_KITS if k != "none"}
    | {"no drums"}
)


def tags_to_multihot(tags: list[str]) -> np.ndarray:
    index = {t: i for i, t in enumerate(TAG_VOCAB)}
    unknown = [t for t in tags if t not in index]
    if unknown:
        raise ValueError(f"unknown tag(s) {unknown}; see TAG_VOCAB")
    v = np.zeros(len(TAG_VOCAB), np.float32)
    v[[index[t] for t in tags]] = 1
    return v


# ------------------------------------------------------------------ specs ----------------------------


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render (and caption) one clip."""

    seed: int
    index: int
    style: str
    key: int  # 0 = C
    mode: str  # "major" | "minor"
    tempo: float
    meter: int
    melody_instrument: str
    harmony_instrument: str
    bass: bool
    drums: str
    mood: str
    dynamics: str  # "soft" | "medium" | "loud"
    reverb: float
    progression: tuple[int, ...]
    melody: tuple[tuple[float, float, int], ...]  # (start beat, duration beats, MIDI pitch)
    melody_id: str
    octave_shift: int = 0

    @property
    def instruments(self) -> list[str]:
        out = [self.melody_instrument, self.harmony_instrument] + (["bass"] if self.bass else [])
        return list(dict.fromkeys(out))

    @property
    def tags(self) -> list[str]:
        drums = "no drums" if self.drums == "none" else f"{self.drums} drums"
        return sorted(set(self.instruments) | {self.style, tempo_class(self.tempo), self.mood, drums})


def _melody(rng: np.random.Generator, scale: list[int], key: int, meter: int, n_bars: int) -> tuple:
    """A stepwise random-walk melody on the scale, one phrase repeated with variation."""
    notes, degree, beat = [], int(rng.integers(0, 7)), 0.0
    durations = [0.5, 1.0, 1.0, 1.5, 2.0]
    phrase_beats = 2 * meter
    while beat < phrase_beats:
        d = float(rng.choice(durations))
        d = min(d, phrase_beats - beat)
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, 11))
        if rng.random() > 0.12:  # a few rests
            pitch = 60 + key + 12 * (degree // 7) + scale[degree % 7]
            notes.append((beat, d, int(pitch)))
        beat += d
    out = []
    for rep in range(int(np.ceil(n_bars * meter / phrase_beats))):
        shift = 0 if rep % 2 == 0 else int(rng.choice([0, 0, 2, -1]))
        for b, d, p in notes:
            out.append((b + rep * phrase_beats, d, p + (scale[(shift) % 7] - scale[0] if shift else 0)))
    return tuple(out)


def sample_spec(seed: int, index: int, style: str | None = None) -> ClipSpec:
    """Draw clip ``index``'s spec from ``(seed, index)`` alone."""
    rng = np.random.default_rng([seed, index, 7919])
    names = sorted(STYLES)
    style = style or names[int(rng.integers(len(names)))]
    if style not in STYLES:
        raise InputError(f"unknown style {style!r}; expected one of {', '.join(names)}")
    p = STYLES[style]
    mode = "minor" if rng.random() < p.minor_prob else "major"
    key = int(rng.integers(12))
    # mood is audible, not just a word: the gentler mood takes the slower half of the style's tempo
    # range and softer dynamics, the more intense one the faster half and louder dynamics
    intense = int(rng.integers(2))
    mid = (p.tempo[0] + p.tempo[1]) // 2
    tempo = float(rng.integers(mid + 1, p.tempo[1] + 1) if intense else rng.integers(p.tempo[0], mid + 1))
    meter = int(rng.choice(p.meters))
    progression = tuple(int(x) for x in PROGRESSIONS[mode][int(rng.integers(4))])
    scale = MAJOR if mode == "major" else MINOR
    melody_rng = np.random.default_rng([seed, index, 104729])
    n_bars = int(np.ceil(60 * tempo / 60 / meter)) + 1  # enough bars for 60 s
    return ClipSpec(
        seed=seed,
        index=index,
        style=style,
        key=key,
        mode=mode,
        tempo=tempo,
        meter=meter,
        melody_instrument=str(rng.choice(p.melody)),
        harmony_instrument=str(rng.choice(p.harmony)),
        bass=p.bass,
        drums=str(rng.choice(p.drums)),
        mood=p.moods[intense],
        dynamics=str(rng.choice(["soft", "medium", "loud"], p=[0.1, 0.45, 0.45] if intense else [0.45, 0.45, 0.1])),
        reverb=float(rng.uniform(*p.reverb)),
        progression=progression,
        melody=_melody(melody_rng, scale, key, meter, n_bars),
        melody_id=f"m{seed}-{index}",
    )


def with_timbre(spec: ClipSpec, instruments: str | Sequence[str]) -> ClipSpec:
    """The same melody, harmony, key and tempo played by other instruments (melody-conditioning pairs).

    ``instruments`` is the new melody instrument, or ``[melody, harmony]``; the bass line and drums are
    kept, and ``melody_id`` is unchanged because the notes are.
    """
    names = [instruments] if isinstance(instruments, str) else list(instruments)
    if not 1 <= len(names) <= 2:
        raise ValueError(f"with_timbre takes a melody instrument or [melody, harmony], got {names!r}")
    for t in names:
        if t not in TIMBRES:
            raise ValueError(f"unknown timbre {t!r}; expected one of {', '.join(TIMBRES)}")
    harmony = names[1] if len(names) == 2 else spec.harmony_instrument
    return replace(spec, melody_instrument=names[0], harmony_instrument=harmony)


# ------------------------------------------------------------------ render ---------------------------

LEVELS = {"soft": 0.35, "medium": 0.6, "loud": 0.85}


def _midi_hz(m: float) -> float:
    return 440.0 * 2 ** ((m - 69) / 12)


def _add(buf: np.ndarray, x: np.ndarray, start: int, gain: float) -> None:
    if start >= len(buf):
        return
    end = min(len(buf), start + len(x))
    buf[start:end] += gain * x[: end - start]


def render(spec: ClipSpec, seconds: float, sample_rate: int = 24000) -> np.ndarray:
    """Render a spec to float32 mono; the peak equals the dynamics level (≤ 0.85)."""
    sr = sample_rate
    n = int(round(seconds * sr))
    rng = np.random.default_rng([spec.seed, spec.index, 31337])
    beat = 60.0 / spec.tempo
    bar = beat * spec.meter
    scale = MAJOR if spec.mode == "major" else MINOR
    p = STYLES[spec.style]
    mel, harm, bass, drums = (np.zeros(n) for _ in range(4))
    n_bars = int(np.ceil(seconds / bar)) + 1
    note_cache: dict[tuple, np.ndarray] = {}
    hits: dict[tuple[str, int], np.ndarray] = {}  # 3 takes per drum sound, cycled: varied yet cheap

    plucks = Counter()

    def cached(timbre: str, midi: int, dur: float) -> np.ndarray:
        k = (timbre, midi, round(dur, 4))
        if timbre == "guitar":  # plucks cycle through 3 takes (own noise bursts) so repeats are not identical
            plucks[k] += 1
            k = (*k, plucks[k] % 3)
        if k not in note_cache:
            note_cache[k] = note(timbre, _midi_hz(midi), dur, sr, rng)
        return note_cache[k]

    for b in range(n_bars):
        root_deg = spec.progression[b % len(spec.progression)]
        chord = [48 + spec.key + 12 * ((root_deg + i) // 7) + scale[(root_deg + i) % 7] for i in (0, 2, 4)]
        t0 = b * bar
        if p.chord_rhythm == "sustain":
            for m in chord:
                _add(harm, cached(spec.harmony_instrument, m, bar * 1.05), int(t0 * sr), 0.35)
        elif p.chord_rhythm == "beats":
            for k in range(spec.meter):
                for m in chord:
                    _add(harm, cached(spec.harmony_instrument, m, beat * 0.9), int((t0 + k * beat) * sr), 0.3)
        elif p.chord_rhythm == "waltz":  # bass note on 1, chord on 2 and 3
            for k in range(1, spec.meter):
                for m in chord:
                    _add(harm, cached(spec.harmony_instrument, m + 12, beat * 0.8), int((t0 + k * beat) * sr), 0.28)
        else:  # arpeggio
            seq = chord + [chord[1] + 12]
            for k in range(spec.meter * 2):
                _add(harm, cached(spec.harmony_instrument, seq[k % len(seq)], beat), int((t0 + k * beat / 2) * sr), 0.3)
        if spec.bass:
            steps = spec.meter if spec.style in ("rock", "techno", "march", "jazz") else 1
            for k in range(steps):
                m = chord[0] - 12 + (7 if (spec.style == "jazz" and k % 2) else 0)
                _add(bass, cached("bass", m, beat * (0.9 if steps > 1 else spec.meter * 0.95)), int((t0 + k * beat) * sr), 0.5)
        for j, (pos, kind) in enumerate(drum_pattern(spec.drums, spec.meter)):
            take = (kind, (b + j) % 3)
            if take not in hits:
                hits[take] = _hit(kind, sr, rng)
            _add(drums, hits[take], int((t0 + pos * beat) * sr), 0.45 if kind != "hat" else 0.25)
    # the spec holds ~60 s of melody (whole phrases); longer clips loop it
    phrase = 2 * spec.meter
    span = max(phrase, int(np.ceil(max(s + d for s, d, _ in spec.melody) / phrase)) * phrase) if spec.melody else 0
    for loop in range(int(np.ceil(seconds / (span * beat))) if span else 0):
        for start, dur, pitch in spec.melody:
            t = (start + loop * span) * beat
            if t >= seconds:
                break
            _add(mel, cached(spec.melody_instrument, pitch + 12 * spec.octave_shift, dur * beat), int(t * sr), 0.55)

    mix = mel + harm + bass + drums
    if spec.reverb > 0:
        ir_n = int(1.2 * sr)
        t = np.arange(ir_n) / sr
        ir = rng.standard_normal(ir_n) * np.exp(-t * 4.0)
        ir[0] = 0
        wet = oaconvolve(mix, ir / np.sqrt(np.sum(ir**2)))[:n]
        mix = mix + spec.reverb * wet
    peak = np.max(np.abs(mix))
    if peak > 0:
        mix = mix / peak * LEVELS[spec.dynamics]
    return mix.astype(np.float32)


# ------------------------------------------------------------------ captions -------------------------

def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption_for(spec: ClipSpec, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A 2–4 sentence MusicCaps-like caption and its aspect list, true to the spec."""
    key = f"{NOTE_NAMES[spec.key]} {spec.mode}"
    tc = tempo_class(spec.tempo)
    drums = {"none": "There are no drums.", "rock": "A rock drum kit keeps a steady backbeat.",
             "electronic": "Electronic drums pound a four-on-the-floor beat.",
             "brushed": "Brushed drums shuffle softly in the background."}[spec.drums]  # fmt: skip
    openers = [
        f"This is a {spec.style} piece in {key} at a {tc}.",
        f"{_a(spec.mood).capitalize()} {spec.mood} {spec.style} instrumental played at a {tc}.",
        f"This {spec.style} track moves at a {tc} in {key}.",
        f"An instrumental {spec.style} song with {_a(spec.mood)} {spec.mood} feel.",
    ]
    middles = [
        f"The {spec.melody_instrument} plays the melody while the {spec.harmony_instrument} holds the chords.",
        f"{_a(spec.melody_instrument).capitalize()} {spec.melody_instrument} carries the main melody over {spec.harmony_instrument} chords.",
        f"The melody is played by {_a(spec.melody_instrument)} {spec.melody_instrument}, accompanied by {spec.harmony_instrument}.",
    ]
    bass = ", over a bass line" if spec.bass else ""
    closers = [
        f"The mood is {spec.mood}.",
        f"It sounds {spec.mood} and {'spacious' if spec.reverb > 0.3 else 'close'}.",
        f"The overall atmosphere is {spec.mood}, with {spec.dynamics} dynamics.",
    ]
    if spec.melody_instrument == spec.harmony_instrument:
        middles = [
            f"{_a(spec.melody_instrument).capitalize()} {spec.melody_instrument} plays both the melody and the chords.",
            f"The {spec.melody_instrument} carries the melody and its own chord accompaniment.",
        ]
    middle = middles[int(rng.integers(len(middles)))]
    sentences = [openers[int(rng.integers(len(openers)))], middle[:-1] + bass + "."]
    if rng.random() < 0.7:
        sentences.append(drums)
    if rng.random() < 0.6 or len(sentences) < 3:
        sentences.append(closers[int(rng.integers(len(closers)))])
    caption = " ".join(sentences[:4])
    drums_aspect = "no drums" if spec.drums == "none" else f"{spec.drums} drums"
    aspects = [spec.style, *spec.instruments, tc, spec.mood, drums_aspect, key, f"{spec.dynamics} dynamics"]
    return caption, list(dict.fromkeys(aspects))


# ------------------------------------------------------------------ corpus ---------------------------



@dataclass
class CorpusInfo:
    out_dir: str
    n: int
    seconds: float
    sample_rate: int
    seed: int
    data_sha256: str
    styles: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    ids: dict = field(default_factory=dict)  # split_record(): the settings that regenerate the ids, and their digest

    def summary(self) -> str:
        styles = ", ".join(f"{k} {v}" for k, v in sorted(self.styles.items()))
        return (
            f"corpus: {self.n} clips × {self.seconds:g} s at {self.sample_rate} Hz (seed {self.seed}) in {self.out_dir}\n"
            f"  splits: train {self.splits.get('train', 0)}, eval {self.splits.get('eval', 0)}\n"
            f"  styles: {styles}\n"
            f"  data sha256: {self.data_sha256[:16]}…"
        )


def _render_job(args: tuple) -> None:
    """Render and write one clip in the worker (sending 10 s of float32 back costs more than writing it)."""
    spec, seconds, sr, path = args
    save_audio(path, render(spec, seconds, sr), sr)


def _pool_context():
    # fork avoids re-importing scipy/pandas in every worker (seconds on a loaded machine); the
    # workers only run numpy/scipy code, so forking is safe. spawn where fork does not exist.
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def audioset_labels(spec: ClipSpec) -> list[str]:
    """AudioSet ids of what is audibly in the clip (Music first), for ``audioset_positive_labels``."""
    drums = f"{spec.drums} drums"
    names = ["music", *spec.instruments, drums, spec.style]
    return list(dict.fromkeys(AUDIOSET_MIDS[k] for k in names if k in AUDIOSET_MIDS))


def generate_corpus(
    out_dir: str | Path,
    n: int,
    seconds: float = 10.0,
    seed: int = 0,
    sample_rate: int = 24000,
    styles: list[str] | None = None,
    workers: int = 1,
    split: str | None = None,
) -> CorpusInfo:
    """Write ``<ytid>.wav``, ``captions.csv`` (MusicCaps columns) and ``labels.csv`` to ``out_dir``.

    With ``styles``, clip i gets style ``styles[i % len(styles)]`` (balanced); otherwise its own draw.
    Clip i is in the eval split when ``i % 5 == 4`` (20 %, independent of seed and n); captions.csv
    marks those rows ``is_audioset_eval = is_balanced_subset = True``. ``split="eval"`` (or ``"train"``)
    writes only the first ``n`` clips of that split — the same bytes and ids as in the full corpus.
    ``workers`` renders in parallel processes; the bytes do not depend on it.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    for s in styles or []:
        if s not in STYLES:
            raise ValueError(f"unknown style {s!r}; expected one of {', '.join(sorted(STYLES))}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = [sample_spec(seed, i, styles[i % len(styles)] if styles else None) for i in split_indices(n, split)]
    ident = {s.index: clip_id(seed, s.index, seconds, sample_rate, styles) for s in specs}
    jobs = [(s, seconds, sample_rate, out / f"{ident[s.index]}.wav") for s in specs]
    if workers > 1 and n > 1:
        with _pool_context().Pool(min(workers, n)) as pool:
            for _ in pool.imap_unordered(_render_job, jobs, chunksize=2):
                pass
    else:
        for j in jobs:
            _render_job(j)
    cap_rows, label_rows = [], []
    for spec in specs:
        ytid = ident[spec.index]
        caption, aspects = caption_for(spec, np.random.default_rng([seed, spec.index, 15485863]))
        part = split_of(spec.index)
        cap_rows.append({
            "ytid": ytid, "start_s": 0, "end_s": seconds, "audioset_positive_labels": audioset_labels(spec),
            "aspect_list": aspects, "caption": caption, "author_id": 0,
            "is_balanced_subset": part == "eval", "is_audioset_eval": part == "eval",
        })  # fmt: skip
        label_rows.append({
            "ytid": ytid, "split": part, "style": spec.style, "tempo_bpm": spec.tempo,
            "tempo_class": tempo_class(spec.tempo), "key": NOTE_NAMES[spec.key], "mode": spec.mode,
            "meter": f"{spec.meter}/4", "drums": spec.drums, "instruments": ";".join(spec.instruments),
            "mood": spec.mood, "melody_id": spec.melody_id, "tags": ";".join(spec.tags),
        })  # fmt: skip
    write_captions(pd.DataFrame(cap_rows), out / "captions.csv")
    pd.DataFrame(label_rows).to_csv(out / "labels.csv", index=False, lineterminator="\n")
    h = hashlib.sha256()
    for p in sorted(out.iterdir()):
        if p.is_file() and (p.suffix == ".wav" or p.name in ("captions.csv", "labels.csv")):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    info = CorpusInfo(
        str(out), n, seconds, sample_rate, seed, h.hexdigest(),
        dict(Counter(s.style for s in specs)), dict(Counter(r["split"] for r in label_rows)),
        split_record(seed, n, seconds, sample_rate, styles, split),
    )  # fmt: skip
    # the folder's own record (without out_dir, so that the same seed gives the same bytes anywhere)
    record = {k: v for k, v in asdict(info).items() if k != "out_dir"}
    (out / "corpus.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return info


def load_labels(data_dir: str | Path) -> pd.DataFrame:
    """``labels.csv`` with ``tags``/``instruments`` as lists, indexed by ytid."""
    path = Path(data_dir) / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found (is this a corpus made by `musiclm-eval synth`?)")
    df = pd.read_csv(path, dtype={"ytid": str}, keep_default_na=False)
    for col in ("tags", "instruments"):
        df[col] = [[t for t in str(v).split(";") if t] for v in df[col]]
    return df.set_index("ytid", drop=False)

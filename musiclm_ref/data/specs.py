"""What a corpus clip is, before any audio: its ``ClipSpec`` drawn from ``(seed, index)`` alone, the tag vocabulary
the classifier learns, the AudioSet ids of what is audible, and a caption that is true of the spec."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from metrics.errors import InputError
from musiclm_ref.data.instruments import DRUM_KITS, TIMBRES

NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
PROGRESSIONS = {  # scale degrees (0-based) of each bar's chord root
    "major": [[0, 4, 5, 3], [0, 3, 4, 0], [0, 5, 3, 4], [0, 3, 0, 4]],
    "minor": [[0, 5, 2, 6], [0, 3, 4, 0], [0, 6, 5, 4], [0, 3, 6, 2]],
}


# -- styles ----------------------------------------------------------------------------------------

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


# -- specs -----------------------------------------------------------------------------------------

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


def audioset_labels(spec: ClipSpec) -> list[str]:
    """AudioSet ids of what is audibly in the clip (Music first), for ``audioset_positive_labels``."""
    drums = f"{spec.drums} drums"
    names = ["music", *spec.instruments, drums, spec.style]
    return list(dict.fromkeys(AUDIOSET_MIDS[k] for k in names if k in AUDIOSET_MIDS))


# -- captions --------------------------------------------------------------------------------------

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

"""Controls read from files: melody (MIDI, JAMS), chords (.lab, CSV, JAMS), key, beats and tempo.

A controls folder holds, per clip id, either a reference clip (``<id>.wav`` …: the pipeline extracts every control
from it with the same extractor it runs on the generated clip, the way Music ControlNet, Coco-Mulla and MusiConGen
derive their controls) or control files, which take precedence over the clip for the controls they give:

- ``<id>.mid`` / ``<id>.midi`` — melody: per frame, the pitch class of the highest sounding note (mido);
- ``<id>.lab`` / ``<id>.chords.lab`` / ``<id>.chords.csv`` — chords: ``start end label`` rows (MIREX .lab,
  whitespace; CSV with commas), Harte labels (``C:maj``, ``A:min7``, ``N``);
- ``<id>.key.txt`` — key: one line in mir_eval's key format (``C major``, ``F# minor``);
- ``<id>.beats.txt`` / ``<id>.beats.csv`` — beats: a time per row (seconds), optionally the beat's position in
  the bar after it (position 1 = downbeat); ``<id>.tempo.txt`` — tempo in BPM;
- ``<id>.jams`` — any of these as JAMS annotations (namespaces ``note_midi``/``pitch_midi``, ``chord``,
  ``key_mode``, ``beat`` with positions, ``tempo``), read as plain JSON (no jams package needed).

Each file becomes the same per-clip array the control's extractors write (every extractor of one control writes
one layout), so the control metrics compare file and audio controls alike; the frame grids are ``FRAME_RATES``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from metrics.errors import InputError

FRAME_RATES = {"melody": 22050 / 512, "chords": 22050 / 1024}  # the melody and chord extractors' frame grids


def melody_frames(notes: list[tuple[float, float, int]], frame_rate: float, n_frames: int | None = None) -> np.ndarray:
    """[frames, 13] (one-hot pitch class, voiced) of ``(start s, duration s, MIDI pitch)`` notes: at each frame
    centre the highest sounding note; frames with none are unvoiced."""
    end = max((s + d for s, d, _ in notes), default=0.0)
    n = int(np.ceil(end * frame_rate)) if n_frames is None else n_frames
    top = np.full(n, -1)
    centres = np.arange(n) / frame_rate
    for start, dur, pitch in notes:
        on = (centres >= start) & (centres < start + dur)
        top[on] = np.maximum(top[on], int(pitch))
    out = np.zeros((n, 13), np.float32)
    voiced = top >= 0
    out[np.nonzero(voiced)[0], top[voiced] % 12] = 1.0
    out[:, 12] = voiced
    return out


def chord_segment_frames(segments: list[tuple[float, float, str]], frame_rate: float,
                         n_frames: int | None = None) -> np.ndarray:
    """[frames, 14] (root, bass, bitmap) of ``(start, end, Harte label)`` segments; frames outside them are N."""
    from metrics.control.tonal import chord_frames

    end = max((e for _, e, _ in segments), default=0.0)
    n = int(np.ceil(end * frame_rate)) if n_frames is None else n_frames
    labels = ["N"] * n
    centres = np.arange(n) / frame_rate
    for start, stop, label in segments:
        for i in np.nonzero((centres >= start) & (centres < stop))[0]:
            labels[i] = label
    return chord_frames(labels) if n else np.zeros((0, 14), np.float32)


def key_array(text: str, path: Path) -> np.ndarray:
    """[1, 2] (tonic, mode) of a mir_eval key string."""
    from metrics.control.tonal import MODES, PITCH_CLASSES

    flats = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E"}
    parts = text.split()
    if text.strip() == "X":
        return np.array([[-1, 0]], np.float32)
    if len(parts) != 2 or flats.get(parts[0], parts[0]) not in PITCH_CLASSES or parts[1] not in MODES:
        raise InputError(f"{path}: a key must look like 'C major' or 'F# minor', not {text.strip()!r}")
    return np.array([[PITCH_CLASSES.index(flats.get(parts[0], parts[0])), MODES.index(parts[1])]], np.float32)


def events_array(times: list[float]) -> np.ndarray:
    """[events, 1] seconds, or the one NO_EVENT row (the rhythm extractors' layout)."""
    from metrics.control.beats import NO_EVENT

    t = np.sort(np.asarray(times, np.float32))
    return t[:, None] if len(t) else np.full((1, 1), NO_EVENT, np.float32)


def read_midi_notes(path: Path) -> list[tuple[float, float, int]]:
    """(start s, duration s, pitch) of every note in a MIDI file, all tracks, tempo changes honoured (mido)."""
    try:
        import mido
    except ImportError as e:
        raise InputError(f"{path}: reading MIDI needs mido: pip install -e '.[controls]' ({e})") from None
    try:
        midi = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError) as e:
        raise InputError(f"{path}: not a readable MIDI file ({e})") from None
    notes, now, sounding = [], 0.0, {}
    for msg in midi:  # iterating a MidiFile yields messages with delta times in seconds
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            sounding[(msg.channel, msg.note)] = now
        elif msg.type in ("note_off", "note_on") and (msg.channel, msg.note) in sounding:
            start = sounding.pop((msg.channel, msg.note))
            notes.append((start, now - start, msg.note))
    return notes


def read_segments(path: Path) -> list[tuple[float, float, str]]:
    """``start end label`` rows of a .lab (whitespace) or .csv (comma) chord file."""
    rows = []
    with open(path, newline="") as f:
        lines = csv.reader(f) if path.suffix == ".csv" else (ln.split() for ln in f)
        for n, row in enumerate(lines, 1):
            if not row or row[0].startswith("#"):
                continue
            try:
                rows.append((float(row[0]), float(row[1]), row[2].strip()))
            except (ValueError, IndexError):
                raise InputError(f"{path}:{n}: expected 'start end label', got {row!r}") from None
    return rows


def read_beats(path: Path) -> tuple[list[float], list[float]]:
    """(beat times, downbeat times) of a beats file: a time per row, optionally its position in the bar."""
    beats, downs = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            row = line.replace(",", " ").split()
            if not row or row[0].startswith("#"):
                continue
            try:
                t = float(row[0])
                pos = float(row[1]) if len(row) > 1 else None
            except ValueError:
                raise InputError(f"{path}:{n}: expected a time (and a beat position), got {line.strip()!r}") from None
            beats.append(t)
            if pos == 1:
                downs.append(t)
    return beats, downs


def read_jams(path: Path) -> dict[str, np.ndarray]:
    """The controls a JAMS file annotates, by control (first annotation of each namespace)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable JAMS file ({e})") from None
    out: dict[str, np.ndarray] = {}
    for ann in doc.get("annotations", []):
        ns, data = ann.get("namespace"), ann.get("data", [])
        obs = [(float(d["time"]), float(d.get("duration") or 0.0), d.get("value")) for d in data]
        if ns in ("note_midi", "pitch_midi") and "melody" not in out:
            notes = [(t, d, int(round(float(v)))) for t, d, v in obs]
            out["melody"] = melody_frames(notes, FRAME_RATES["melody"])
        elif ns in ("chord", "chord_harte") and "chords" not in out:
            out["chords"] = chord_segment_frames([(t, t + d, str(v)) for t, d, v in obs],
                                                          FRAME_RATES["chords"])
        elif ns == "key_mode" and obs and "key" not in out:
            out["key"] = key_array(str(obs[0][2]).replace(":", " "), path)
        elif ns == "beat" and "beats" not in out:
            out["beats"] = events_array([t for t, _, _ in obs])
            out["downbeats"] = events_array([t for t, _, v in obs if v is not None and float(v) == 1])
        elif ns == "tempo" and obs and "tempo" not in out:
            out["tempo"] = np.array([[float(obs[0][2])]], np.float32)
    return out


def read_control_files(directory: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{control: {clip id: array}}`` of every control file in ``directory`` (see the module docstring); the
    controls are the registry's ``ControlMetric.control`` names (melody, chords, key, beats, downbeats, tempo)."""
    out: dict[str, dict[str, np.ndarray]] = {}

    def put(control: str, cid: str, arr: np.ndarray) -> None:
        out.setdefault(control, {})[cid] = arr

    for p in sorted(Path(directory).iterdir()):
        name = p.name
        if p.suffix.lower() in (".mid", ".midi"):
            put("melody", p.stem, melody_frames(read_midi_notes(p), FRAME_RATES["melody"]))
        elif name.endswith((".chords.lab", ".chords.csv")) or p.suffix == ".lab":
            cid = name.rsplit(".chords.", 1)[0] if ".chords." in name else p.stem
            put("chords", cid, chord_segment_frames(read_segments(p), FRAME_RATES["chords"]))
        elif name.endswith(".key.txt"):
            put("key", name[: -len(".key.txt")], key_array(p.read_text(), p))
        elif name.endswith((".beats.txt", ".beats.csv")):
            beats, downs = read_beats(p)
            cid = name.rsplit(".beats.", 1)[0]
            put("beats", cid, events_array(beats))
            if downs:
                put("downbeats", cid, events_array(downs))
        elif name.endswith(".tempo.txt"):
            try:
                put("tempo", name[: -len(".tempo.txt")], np.array([[float(p.read_text().split()[0])]], np.float32))
            except (ValueError, IndexError):
                raise InputError(f"{p}: expected a tempo in BPM") from None
        elif p.suffix == ".jams":
            for control, arr in read_jams(p).items():
                put(control, p.stem, arr)
    return out

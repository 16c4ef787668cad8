"""A ``ClipSpec`` rendered to audio: chords, bass, melody and drums mixed, with reverb, peak-normalized to its dynamics."""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.signal import oaconvolve

from musiclm_ref.data.instruments import drum_hit, drum_pattern, note
from musiclm_ref.data.specs import MAJOR, MINOR, STYLES, ClipSpec

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
                hits[take] = drum_hit(kind, sr, rng)
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

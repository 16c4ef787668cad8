"""The corpus' sound sources: one synthesized note per timbre (``note``), drum hits and per-kit patterns.

Everything draws its noise from the caller's generator, so a clip's bytes depend on its spec alone."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

# -- timbres ---------------------------------------------------------------------------------------

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


# -- drums -----------------------------------------------------------------------------------------

DRUM_KITS = ["none", "rock", "electronic", "brushed"]


def drum_hit(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
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

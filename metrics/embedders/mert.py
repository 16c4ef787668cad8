"""MERT-v1-330M (Li et al. 2024), the embedder of MAD (Huang et al. 2025): hidden states of one layer, 24 kHz audio.

What MAD's own code (``mad_metric.embedding_models.MERT330M``) does, and what this loader does the same way:
``Wav2Vec2FeatureExtractor.from_pretrained`` and ``AutoModel.from_pretrained(..., trust_remote_code=True)`` of
``m-a-p/MERT-v1-330M``, mono audio at the processor's sampling rate (24 kHz), the whole clip in one forward
pass with ``output_hidden_states=True``, and ``hidden_states[24]`` (the last of the 24 transformer layers).
The embedder returns those frames ``[frames, 1024]`` (75 per second); MAD's max over time is the metric's
pooling step (``metrics/mad.py``, ``aggregation="max"``), so FAD or KAD can use the same frames.
One clip per forward pass: MAD's code pads a batch of clips to the longest and then takes the max over the
padded frames too; clips of one length (MusicCaps' 10 s) give the same frames either way.

The contract (what the user provides; nothing is fetched at run time): a ``save_pretrained``-style folder
(``--embedder-path mert-v1-330m=DIR``) or ``m-a-p/MERT-v1-330M`` in the Hugging Face cache, holding
``config.json``, the weights, ``preprocessor_config.json`` and MERT's own modelling code
(``configuration_MERT.py``, ``modeling_MERT.py``, named by the config's ``auto_map``). That code is the
model's, run through ``trust_remote_code=True``: it needs ``nnAudio`` and the transformers version it was
written for; a failure to load says so. A folder of a transformers-native HuBERT-family model (no remote
code) loads the same way: the tests use a tiny random ``HubertModel``, MERT's architecture without MERT's
code, since MERT's code itself cannot be obtained offline (docs/protocol.md, "MAD").
"""

from __future__ import annotations

import numpy as np

from metrics.embedders import Embedder, EmbedderError
from metrics.embedders.pretrained import find_hf_folder, require, weights_id

REPO = "m-a-p/MERT-v1-330M"
LAYER = 24


class MertEmbedder(Embedder):
    """``hidden_states[layer]`` of MERT for one mono clip: ``[frames, hidden_size]`` float32."""

    name = "mert-v1-330m"
    min_seconds = 0.05  # the convolutional front end needs 400 samples for its first frame
    code_version = "1"

    def __init__(self, path: str | None = None, device: str = "cpu", layer: int = LAYER):
        transformers = require("transformers", "mert", "MERT")
        self.path = find_hf_folder(path, REPO, "MERT", f"download {REPO} (`huggingface-cli download {REPO}`)",
                                   f"Download it with `huggingface-cli download {REPO}`, or pass a folder with "
                                   "--embedder-path mert-v1-330m=DIR")
        try:
            self.processor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(self.path), local_files_only=True)
            self.model = transformers.AutoModel.from_pretrained(str(self.path), trust_remote_code=True,
                                                                local_files_only=True).eval().to(device)
        except Exception as e:
            raise EmbedderError(f"{self.path}: cannot load MERT offline with transformers {transformers.__version__} "
                                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); the folder needs "
                                "preprocessor_config.json and MERT's modelling code, which needs nnAudio "
                                "(pip install 'musiclm-eval[mert]')") from None
        n_layers = int(self.model.config.num_hidden_layers)
        if not 0 <= layer <= n_layers:
            raise EmbedderError(f"{self.path}: layer {layer} does not exist (hidden states 0..{n_layers})")
        self.layer, self.device = layer, device
        self.sample_rate = int(self.processor.sampling_rate)
        self.dim = int(self.model.config.hidden_size)
        self.weights_sha256 = weights_id(self.path)
        self.id = f"{self.name}-L{layer}-{self.weights_sha256}"

    @property
    def config(self) -> dict:
        return {**super().config, "layer": self.layer, "num_hidden_layers": int(self.model.config.num_hidden_layers),
                "architecture": type(self.model).__name__, "do_normalize": bool(getattr(self.processor, "do_normalize", False)),
                "frames": "hidden_states[layer] of the whole clip", "source": "mad_metric embedding_models.MERT330M"}

    def embed(self, wave: np.ndarray) -> np.ndarray:
        import torch

        inputs = self.processor(np.asarray(wave, np.float32), sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.no_grad():
            out = self.model(**{k: v.to(self.device) for k, v in inputs.items()}, output_hidden_states=True)
        return out.hidden_states[self.layer][0].float().cpu().numpy().astype(np.float32)


def factory(path: str | None = None, device: str = "cpu") -> MertEmbedder:
    """Embedder factory ``mert-v1-330m``: MAD's layer 24."""
    return MertEmbedder(path, device)

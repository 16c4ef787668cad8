"""MuQ-MuLan (Zhu et al. 2025, ``muq`` package) as the open MuLan reproduction for MCC: 24 kHz audio, text.

The paper's MuLan was never released; ``OpenMuQ/MuQ-MuLan-large`` is the closest open joint music/text
model (a MuQ audio tower and an XLM-RoBERTa text tower trained contrastively). MCC computed with it is
still not the paper's number (another model and training set), and results say so.

Pre-processing is the package's own: mono 24 kHz, ``MuQMuLan._get_all_clips`` (consecutive 10 s clips;
a short last clip is completed with the start of the audio), ``mulan_module.get_audio_latents`` per
clip. The embedder returns those per-clip latents ``[clips, dim]``; MCC averages and L2-normalizes them,
which is what ``MuQMuLan.extract_audio_latents`` computes before its own mean (``metrics/mcc.py``).

Weights: a local ``save_pretrained`` folder of ``MuQMuLan`` (``--joint muq-mulan:DIR``), or
``OpenMuQ/MuQ-MuLan-large`` from the Hugging Face cache. Its config names its two towers by hub id
(``OpenMuQ/MuQ-large-msd-iter``, ``xlm-roberta-base``), which must be in the cache too.

Compatibility: ``muq`` 0.1.0 was written for transformers 4, whose ``Wav2Vec2ConformerEncoder`` took a plain
(``EasyDict``) config and returned ``hidden_states`` itself. transformers 5 moved both out of the encoder: the
attention back end is read from ``config._attn_implementation`` and hidden states are recorded by hooks of the
enclosing ``PreTrainedModel``, which muq's conformer does not have. Under transformers >= 5 ``adapt_conformers``
gives each such encoder in the loaded model (a) ``_attn_implementation = "eager"`` (transformers 4's conformer
attention was the explicit softmax(QK^T/sqrt(d))V that ``eager`` computes) and (b) transformers 4's
``hidden_states``: the input of every layer, then the final layer-normed output (``num_hidden_layers + 1`` entries,
the last equal to ``last_hidden_state``), recorded with forward pre-hooks. The layers' own arithmetic is
transformers', untouched. tests/test_loaders_muq.py checks the result against the layers run by hand.
"""

from __future__ import annotations

import numpy as np

from metrics.embedders import Embedder, EmbedderError
from metrics.embedders.pretrained import find_hf_folder, require, weights_id

REPO = "OpenMuQ/MuQ-MuLan-large"
TOWERS = ("OpenMuQ/MuQ-large-msd-iter", "xlm-roberta-base")


def transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def _resolve(path: str | None):
    towers = f"`huggingface-cli download {TOWERS[0]}` / `{TOWERS[1]}`"
    return find_hf_folder(path, REPO, "MuQMuLan", f"download {REPO} (`huggingface-cli download {REPO}`, and "
                          f"{', '.join(TOWERS)})", f"Download it and its towers with `huggingface-cli download "
                          f"{REPO}` and {towers}, or pass a folder with --joint muq-mulan:DIR")


def adapt_conformers(model) -> int:
    """Make muq's transformers-4 use of ``Wav2Vec2ConformerEncoder`` run under transformers 5 (module docstring).

    Returns the number of encoders adapted (0 under transformers 4, where nothing is needed)."""
    if transformers_major() < 5:
        return 0
    from transformers.modeling_outputs import BaseModelOutput
    from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

    count = 0
    for module in model.modules():
        if not isinstance(module, Wav2Vec2ConformerEncoder) or getattr(module, "_musiclm_adapted", False):
            continue
        if getattr(module.config, "_attn_implementation", None) is None:
            module.config._attn_implementation = "eager"  # the layers share this config object
        _record_hidden_states(module, BaseModelOutput)
        module._musiclm_adapted = True
        count += 1
    return count


def _record_hidden_states(encoder, output_cls) -> None:
    """Wrap ``encoder.forward`` so ``output_hidden_states=True`` returns transformers 4's tuple."""
    forward = encoder.forward

    def forward_with_hidden_states(hidden_states, attention_mask=None, output_hidden_states=False, **kwargs):
        kwargs.pop("output_attentions", None)
        kwargs.pop("return_dict", None)
        inputs: list = []
        hooks = [layer.register_forward_pre_hook(lambda _m, args, kw: inputs.append(args[0] if args else
                                                                                    kw["hidden_states"]),
                                                 with_kwargs=True) for layer in encoder.layers]
        try:
            out = forward(hidden_states, attention_mask=attention_mask, **kwargs)
        finally:
            for h in hooks:
                h.remove()
        if not output_hidden_states:
            return out
        return output_cls(last_hidden_state=out.last_hidden_state,
                          hidden_states=(*inputs, out.last_hidden_state))

    encoder.forward = forward_with_hidden_states


class MuQMuLanAudio(Embedder):
    """Per-10 s-clip MuQ-MuLan audio latents ``[clips, dim]`` of a mono 24 kHz clip; ``embed_text`` for captions."""

    name = "muq-mulan"

    def __init__(self, path: str | None = None, device: str = "cpu"):
        require("muq", "muq", "MuQ-MuLan")
        import contextlib
        import io

        from muq import MuQMuLan

        self.path = _resolve(path)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.model = MuQMuLan.from_pretrained(str(self.path), local_files_only=True).eval().to(device)
        except Exception as e:
            raise EmbedderError(f"{self.path}: cannot load MuQMuLan offline ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}); its towers {', '.join(TOWERS)} must be "
                                "in the Hugging Face cache") from None
        self.adapted = adapt_conformers(self.model)
        self.device = device
        self.sample_rate = int(self.model.sr)
        self.clip_seconds = float(self.model.clip_secs)
        self.dim = int(self.model.mulan_module.dim_latent)
        self.weights_sha256 = weights_id(self.path)
        self.id = f"muq-mulan-{self.weights_sha256}"

    @property
    def config(self) -> dict:
        return {**super().config, "clip_s": self.clip_seconds, "clips": "MuQMuLan._get_all_clips",
                "source": "muq 0.1.0 muq_mulan/muq_mulan.py",
                "transformers5_adapter": self.adapted > 0}

    def clips(self, wave: np.ndarray):
        """The package's own cut of one clip into model inputs ``[clips, samples]``."""
        import torch

        return self.model._get_all_clips(torch.as_tensor(np.asarray(wave, np.float32)))

    def embed(self, wave: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            rows = [self.model.mulan_module.get_audio_latents(c[None].to(self.device))[0] for c in self.clips(wave)]
        return torch.stack(rows).float().cpu().numpy().astype(np.float32)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(texts=list(texts)).float().cpu().numpy().astype(np.float32)


def joint(path: str | None = None, device: str = "cpu"):
    """Joint factory ``muq-mulan``."""
    from metrics.models import Joint

    model = MuQMuLanAudio(path, device)
    return Joint(model.id, model, model.embed_text)

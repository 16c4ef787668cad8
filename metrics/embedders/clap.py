"""LAION-CLAP through ``transformers`` (``ClapModel`` + ``ClapProcessor``): 48 kHz audio and caption embeddings.

Why ``transformers`` and not ``laion_clap``: ``laion_clap`` cannot build its model offline (it fetches
its RoBERTa tokenizer from the hub at construction), while ``transformers`` loads a local folder and
its ``Clap*`` classes are the same networks (HTSAT audio tower, RoBERTa text tower, projections; LAION's
checkpoints are published converted: ``laion/larger_clap_music`` = ``music_audioset_epoch_15_esc_90.14.pt``,
``laion/clap-htsat-fused`` = ``630k-audioset-fusion-best.pt``).

Two registry names, one per published protocol:

- ``clap`` — MusicGen (audiocraft ``audiocraft/metrics/clap_consistency.py``): the music checkpoint,
  mono 48 kHz, no level change; text tokenized ``padding="max_length", truncation=True, max_length=77``.
- ``clap-sam`` — stable-audio-metrics ``src/clap_score.py``: the fusion checkpoint, peak-normalized to
  −1 dBFS, then the int16 round trip ``int16_to_float32(float32_to_int16(audio))``.

A LAION ``.pt`` checkpoint given to the ``clap`` joint model goes through ``laion_clap`` itself
(``LaionClap``): the original package, for users who have its tokenizer cached; the same joint contract.

Audio embedding of a clip: non-fusion checkpoints see consecutive 10 s windows (the extractor's
``repeatpad`` fills a short last one) — deterministic, where ``laion_clap``/the extractor would take one
*random* 10 s crop of a longer clip; a fusion checkpoint sees the whole clip once, its random fusion crops
drawn from a numpy generator seeded per call (so the same clip gives the same embedding). Rows are
``[windows, dim]`` L2-normalized projections; MCC averages and renormalizes them (``metrics/mcc.py``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from metrics.embedders import Embedder, EmbedderError
from metrics.embedders.pretrained import find_hf_folder, peak_normalize, require, weights_id

SAMPLE_RATE = 48000
WINDOW_SECONDS = 10.0
# registry name -> (Hugging Face repo of the converted checkpoint, peak dBFS, int16 round trip, source)
VARIANTS = {
    "clap": ("laion/larger_clap_music", None, False, "audiocraft/metrics/clap_consistency.py"),
    "clap-sam": ("laion/clap-htsat-fused", -1.0, True, "stable-audio-metrics src/clap_score.py"),
}
TEXT_MAX_LENGTH = 77


def resolve(path: str | None, repo: str) -> Path:
    """A local ``save_pretrained`` folder, or ``repo`` from the Hugging Face cache (``$HF_HOME``), never the network."""
    return find_hf_folder(path, repo, "transformers CLAP",
                          f"download one with `huggingface-cli download {repo} --local-dir {path}`",
                          f"Download it with `huggingface-cli download {repo}` or pass a local folder with "
                          "--embedder-path clap=DIR")


def int16_round_trip(wave: np.ndarray) -> np.ndarray:
    """stable-audio-metrics' ``int16_to_float32(float32_to_int16(x))``: clip to [-1, 1], ×32767, truncate, ÷32767."""
    return ((np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)


class ClapAudio(Embedder):
    """Window embeddings ``[windows, dim]`` of a mono 48 kHz clip (unit rows); ``embed_text`` for captions."""

    sample_rate = SAMPLE_RATE

    def __init__(self, name: str = "clap", path: str | None = None, device: str = "cpu"):
        require("transformers", "clap", "CLAP")
        from transformers import ClapModel, ClapProcessor

        if name not in VARIANTS:
            raise EmbedderError(f"unknown CLAP variant {name!r}; expected one of {', '.join(VARIANTS)}")
        repo, self.peak_db, self.quantize, self.source = VARIANTS[name]
        self.name, self.device = name, device
        self.path = resolve(path, repo)
        try:
            self.model = ClapModel.from_pretrained(self.path, local_files_only=True).eval().to(device)
            self.processor = ClapProcessor.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise EmbedderError(f"{self.path}: cannot load a CLAP model and processor ({type(e).__name__}: {e})") from None
        fe = self.processor.feature_extractor
        if fe.sampling_rate != SAMPLE_RATE:
            raise EmbedderError(f"{self.path}: feature extractor runs at {fe.sampling_rate} Hz, CLAP expects {SAMPLE_RATE}")
        self.fusion = bool(self.model.config.audio_config.enable_fusion)
        self.truncation = "fusion" if self.fusion else "rand_trunc"
        self.dim = int(self.model.config.projection_dim)
        self.window = int(WINDOW_SECONDS * SAMPLE_RATE)
        self.weights_sha256 = weights_id(self.path)
        self.id = f"{name}-{self.weights_sha256}"

    @property
    def config(self) -> dict:
        return {**super().config, "checkpoint": str(self.path.name), "fusion": self.fusion, "window_s": WINDOW_SECONDS,
                "peak_dbfs": self.peak_db, "int16_round_trip": self.quantize, "source": self.source}

    def prepare(self, wave: np.ndarray) -> list[np.ndarray]:
        """The exact extractor inputs for one mono 48 kHz clip: level, int16 round trip, windows."""
        wave = peak_normalize(np.asarray(wave, np.float32), self.peak_db)
        if self.quantize:
            wave = int16_round_trip(wave)
        if self.fusion:
            return [wave]
        return [wave[i:i + self.window] for i in range(0, max(len(wave), 1), self.window)]

    def embed(self, wave: np.ndarray) -> np.ndarray:
        import torch

        rows = []
        for w in self.prepare(wave):
            with _seeded_numpy(0):  # the extractor's fusion / rand_trunc crops use numpy's global RNG
                feats = self.processor.feature_extractor(w, sampling_rate=SAMPLE_RATE, truncation=self.truncation,
                                                         padding="repeatpad", return_tensors="pt")
            with torch.no_grad():
                out = self.model.get_audio_features(**{k: v.to(self.device) for k, v in feats.items()})
            rows.append(getattr(out, "pooler_output", out)[0].float().cpu().numpy())
        return np.stack(rows).astype(np.float32)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        import torch

        tok = self.processor.tokenizer(list(texts), padding="max_length", truncation=True, max_length=TEXT_MAX_LENGTH,
                                       return_tensors="pt")
        with torch.no_grad():
            out = self.model.get_text_features(**{k: v.to(self.device) for k, v in tok.items()})
        return getattr(out, "pooler_output", out).float().cpu().numpy().astype(np.float32)


class LaionClap(Embedder):
    """LAION-CLAP from a local ``laion_clap`` checkpoint (e.g. ``music_audioset_epoch_15_esc_90.14.pt``,
    HTSAT-base): one ``[1, 512]`` embedding per 48 kHz clip (laion_clap's own crop), ``embed_text`` for
    captions. Not comparable with the paper's MuLan MCC: another model, training set and embedding space."""

    name, sample_rate, dim = "clap", SAMPLE_RATE, 512

    def __init__(self, checkpoint: str | Path, amodel: str = "HTSAT-base", device: str = "cpu"):
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise EmbedderError(f"{checkpoint}: CLAP checkpoint not found")
        try:
            import laion_clap
        except ImportError as e:
            raise EmbedderError(f"{checkpoint}: a laion_clap .pt checkpoint needs the laion_clap package ({e}); "
                                "or pass a transformers CLAP folder") from None
        try:
            self.model = laion_clap.CLAP_Module(enable_fusion=False, amodel=amodel, device=device)
            self.model.load_ckpt(str(checkpoint))
        except Exception as e:  # it fetches its text tokenizer from the Hugging Face hub
            raise EmbedderError(f"{checkpoint}: laion_clap could not build the model offline "
                                f"({type(e).__name__}: {e})") from None
        self.id = f"clap:{checkpoint.name}"

    def embed(self, wave: np.ndarray) -> np.ndarray:
        out = self.model.get_audio_embedding_from_data(np.asarray(wave, np.float32)[None, :], use_tensor=False)
        return np.asarray(out, dtype=np.float32).reshape(1, -1)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.get_text_embedding(list(texts), use_tensor=False), dtype=np.float32)


@contextlib.contextmanager
def _seeded_numpy(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def embedder(path: str | None = None, device: str = "cpu") -> ClapAudio:
    """Embedder factory ``clap`` (window embeddings for FAD/MCC, music checkpoint)."""
    return ClapAudio("clap", path, device)


def embedder_sam(path: str | None = None, device: str = "cpu") -> ClapAudio:
    """Embedder factory ``clap-sam`` (stable-audio-metrics' checkpoint and level)."""
    return ClapAudio("clap-sam", path, device)


def joint(path: str | None = None, device: str = "cpu", name: str = "clap"):
    """Joint factory (``clap``): the CLAP audio tower and its text tower as a ``metrics.models.Joint``.

    A ``transformers`` CLAP folder (or the Hugging Face cache when ``path`` is None) builds offline
    (``ClapAudio``); a laion_clap ``.pt`` checkpoint goes through ``laion_clap`` (``LaionClap``)."""
    from metrics.models import Joint

    model = LaionClap(path, device=device) if name == "clap" and str(path or "").endswith(".pt") else ClapAudio(name, path, device)
    return Joint(model.id, model, model.embed_text)


def joint_sam(path: str | None = None, device: str = "cpu"):
    """Joint factory ``clap-sam``."""
    return joint(path, device, "clap-sam")

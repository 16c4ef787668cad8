"""PaSST (Koutini et al. 2021) AudioSet tagger through the ``hear21passt`` package: 527 window logits at 32 kHz.

The classifier behind MusicGen's and Stable Audio's KL numbers. Both feed PaSST's ``get_basic_model``
network (``passt_s_swa_p16_128_ap476``: mel front end ``AugmentMelSTFT`` in eval mode + the ViT) with
mono 32 kHz audio, but they cut clips into 10 s windows differently, so the windowing is part of the
registry name:

- ``passt`` — audiocraft ``audiocraft/metrics/kld.py`` (``PasstKLDivergenceMetric._process_audio``):
  ``torch.split`` into consecutive 10 s segments, no padding, segments of 0.15 s or less dropped;
- ``passt-sam`` — stable-audio-metrics ``src/passt_kld.py`` (``return_probabilities``): peak-normalized to
  −1 dBFS, 10 s windows every 5 s, a short window zero-padded to 10 s when longer than 1.5 s.

Output: window **logits** ``[windows, 527]`` (``activation = "sigmoid"``: AudioSet is multi-label; the
audiocraft and stable-audio KLD conventions apply their softmax themselves, ``metrics/kld.py``).

Weights: the released state dict ``passt-s-f128-p16-s10-ap.476-swa.pt`` — a path given with
``--embedder-path passt=PATH``, or the file ``hear21passt`` itself caches in
``$TORCH_HOME/hub/checkpoints/``. The architecture is read from the state dict (embedding width, depth,
patch grid → stride, classes; 64-d heads as every PaSST release), so a smaller checkpoint of the same
class loads the same way.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from metrics.embedders import Embedder, EmbedderError
from metrics.embedders.pretrained import (
    find_weights,
    fixed_windows,
    peak_normalize,
    require,
    torch_hub_checkpoints,
    weights_id,
)

SAMPLE_RATE = 32000
CHECKPOINT = "passt-s-f128-p16-s10-ap.476-swa.pt"
URL = f"https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/{CHECKPOINT}"
# (window rule, hop seconds, min seconds, peak dBFS) per registry name
WINDOWING = {
    "passt": ("split", 10.0, 0.15, None),      # audiocraft/metrics/kld.py
    "passt-sam": ("sam", 5.0, 1.5, -1.0),      # stable-audio-metrics src/passt_kld.py
}
WINDOW_SECONDS = 10.0


def audioset_labels(n: int) -> tuple[str, ...]:
    """AudioSet display names from ``$MUSICLM_EVAL_AUDIOSET_CSV`` / ``../shared/data`` when present, else indices."""
    import csv
    import os

    for p in (os.environ.get("MUSICLM_EVAL_AUDIOSET_CSV"),
              Path(__file__).resolve().parents[3] / "shared" / "data" / "class_labels_indices.csv"):
        if p and Path(p).is_file():
            rows = [r for r in csv.reader(Path(p).read_text(encoding="utf-8").splitlines()) if len(r) >= 3]
            rows = [r for r in rows if r[0].strip().isdigit()]
            if len(rows) == n:
                return tuple(r[2] for r in rows)
    return tuple(f"audioset:{i}" for i in range(n))


def build_network(state: dict):
    """The ``hear21passt`` PaSST network whose shapes match ``state`` (a released or test-made state dict)."""
    from hear21passt.models.passt import PaSST

    if "model" in state:  # deit-style wrapper
        state = state["model"]
    try:
        dim = state["cls_token"].shape[-1]
        grid = (state["freq_new_pos_embed"].shape[2], state["time_new_pos_embed"].shape[3])
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        n_classes = state["head.1.weight"].shape[0]
        patch = state["patch_embed.proj.weight"].shape[-1]
    except (KeyError, ValueError, IndexError) as e:
        raise EmbedderError(f"not a PaSST state dict (missing {e})") from None
    # the released models: 128 mel bins x 998 frames, 16x16 patches; grid 12 x 99 <=> stride 10
    fstride, tstride = (128 - patch) // (grid[0] - 1), (998 - patch) // (grid[1] - 1)
    with contextlib.redirect_stdout(io.StringIO()):
        net = PaSST(img_size=(128, 998), patch_size=patch, stride=(fstride, tstride), embed_dim=dim, depth=depth,
                    num_heads=max(1, dim // 64), distilled="dist_token" in state, num_classes=n_classes)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EmbedderError(f"PaSST state dict does not fit the network: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return net.eval()


def build_model(state: dict):
    """``hear21passt.base.get_basic_model(mode="logits")`` with ``state`` loaded: its exact front end and wrapper."""
    from hear21passt.models.preprocess import AugmentMelSTFT
    from hear21passt.wrapper import PasstBasicWrapper

    with contextlib.redirect_stdout(io.StringIO()):
        mel = AugmentMelSTFT(n_mels=128, sr=SAMPLE_RATE, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192,
                             htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)
    return PasstBasicWrapper(mel=mel, net=build_network(state), mode="logits").eval()


class PasstLogits(Embedder):
    """PaSST window logits ``[windows, 527]`` of a mono 32 kHz clip, windowed as ``name`` prescribes."""

    sample_rate = SAMPLE_RATE
    activation = "sigmoid"

    def __init__(self, name: str = "passt", path: str | None = None, device: str = "cpu"):
        torch = require("torch", "passt", "PaSST")
        require("hear21passt", "passt", "PaSST")
        if name not in WINDOWING:
            raise EmbedderError(f"unknown PaSST windowing {name!r}; expected one of {', '.join(WINDOWING)}")
        self.name = name
        self.rule, hop, min_s, self.peak_db = WINDOWING[name]
        self.window, self.hop, self.min_samples = (int(WINDOW_SECONDS * SAMPLE_RATE), int(hop * SAMPLE_RATE),
                                                   int(min_s * SAMPLE_RATE))
        # PaSST's 16x16 patches need 16 mel frames (0.15 s); audiocraft drops segments of 0.15 s or less
        self.min_seconds = 0.16
        self.path = find_weights(path, [torch_hub_checkpoints() / CHECKPOINT], "PaSST", URL)
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise EmbedderError(f"{self.path}: cannot read a PaSST state dict ({type(e).__name__}: {e})") from None
        self.model = build_model(state).to(device)
        self.device = device
        self.labels = audioset_labels(self.model.net.num_classes)
        self.dim = len(self.labels)
        self.weights_sha256 = weights_id(self.path)
        self.id = f"{name}-{self.weights_sha256}"

    @property
    def config(self) -> dict:
        return {**super().config, "windowing": self.rule, "window_s": WINDOW_SECONDS, "hop_s": self.hop / SAMPLE_RATE,
                "min_s": self.min_samples / SAMPLE_RATE, "peak_dbfs": self.peak_db, "weights": self.path.name}

    def windows(self, wave: np.ndarray) -> list[np.ndarray]:
        """The exact model inputs for one mono 32 kHz clip (level step, then windows)."""
        wave = peak_normalize(np.asarray(wave, np.float32), self.peak_db)
        return fixed_windows(wave, self.window, self.hop, self.rule, self.min_samples)

    def embed(self, wave: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            for w in self.windows(wave):
                x = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))[None].to(self.device)
                out.append(self.model(x)[0].float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return np.stack(out).astype(np.float32)


def passt(path: str | None = None, device: str = "cpu") -> PasstLogits:
    """Classifier factory ``passt`` (audiocraft's windowing)."""
    return PasstLogits("passt", path, device)


def passt_sam(path: str | None = None, device: str = "cpu") -> PasstLogits:
    """Classifier factory ``passt-sam`` (stable-audio-metrics' windowing and level)."""
    return PasstLogits("passt-sam", path, device)

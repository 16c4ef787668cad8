"""What every published-model loader (PaSST, LAION-CLAP, OpenL3, MuQ-MuLan) shares.

- ``require``: import the model's package or fail with the extra that installs it;
- ``find_weights``: a local path the user gave, else the file the package's own cache would hold
  (``$TORCH_HOME/hub/checkpoints``, ``$HF_HOME``), else an error that says what to download and where
  (nothing is ever fetched at run time);
- ``find_hf_folder``: the same for a ``save_pretrained`` folder (CLAP, MuQ-MuLan);
- ``peak_normalize``: stable-audio-metrics' level step (``pyloudnorm.normalize.peak(audio, -1.0)``);
- ``fixed_windows``: cut a clip into fixed windows, with the padding rule a protocol prescribes.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from metrics.embedders import EmbedderError
from metrics.io import file_sha256


def find_hf_folder(path: str | None, repo: str, what: str, missing: str, not_cached: str) -> Path:
    """A local ``save_pretrained`` folder (it must hold ``config.json``), else ``repo`` from the Hugging Face
    cache (``$HF_HOME``), never the network. ``missing`` / ``not_cached`` end the two error messages (what to
    download, which flag takes a folder); ``what`` names the model."""
    if path is not None:
        p = Path(path).expanduser()
        if not (p / "config.json").is_file():
            raise EmbedderError(f"{p}: not a {what} folder (no config.json); {missing}")
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:
        raise EmbedderError(f"{what}: {repo} is not in the Hugging Face cache ($HF_HOME). {not_cached} "
                            "(no weights are fetched at run time)") from None


def require(module: str, extra: str, what: str) -> ModuleType:
    """``importlib.import_module(module)``, or an ``EmbedderError`` naming the pip extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EmbedderError(f"{what} needs the {module.split('.')[0]!r} package ({e}); "
                            f"install it with: pip install 'musiclm-eval[{extra}]'") from None


def torch_hub_checkpoints() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` (used by hear21passt and torchopenl3) caches files."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(path: str | os.PathLike | None, cached: Sequence[Path], what: str, url: str) -> Path:
    """The weights file/folder to load: ``path`` when given (it must exist), else the first of ``cached``.

    The error is the one a user needs: which file, from where, and where to put it.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise EmbedderError(f"{p}: {what} weights not found (download {url})")
        return p
    for c in cached:
        if c.exists():
            return c
    where = " or ".join(str(c) for c in cached)
    raise EmbedderError(f"{what}: no weights. Download {url} and put it at {where}, or pass its location "
                        "with --embedder-path NAME=PATH (no weights are fetched at run time)")


def weights_id(path: Path) -> str:
    """A short content hash of a weights file (or of every file of a folder), for ids and cache keys."""
    if path.is_file():
        return file_sha256(path)[:16]
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()[:16]


def peak_normalize(wave: np.ndarray, db: float | None) -> np.ndarray:
    """stable-audio-metrics' ``pyln.normalize.peak(audio, -1.0)``; ``None`` leaves the level alone; silence stays silent.

    The result keeps pyloudnorm's float64 (its gain is a float64 scalar), as the downstream steps of
    stable-audio-metrics (int16 round trip, resampling) see it.
    """
    if db is None:
        return wave
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak == 0.0:
        return wave
    import pyloudnorm as pyln

    return np.asarray(pyln.normalize.peak(wave, db))


def fixed_windows(wave: np.ndarray, window: int, hop: int, rule: str, min_samples: int = 0) -> list[np.ndarray]:
    """Windows of ``window`` samples every ``hop`` samples, as one of the published tools cuts them.

    - ``"split"`` (audiocraft ``torch.split``): consecutive windows, the last one kept short (no padding)
      when longer than ``min_samples``, dropped otherwise;
    - ``"sam"`` (stable-audio-metrics ``return_probabilities``): starts ``range(0, max(hop, n - hop), hop)``;
      a short window is zero-padded to ``window`` when longer than ``min_samples``, else passed as it is;
    - ``"repeat"``: consecutive windows, a short last one padded by repeating the clip (CLAP's ``repeatpad``
      is applied by its feature extractor; here the window is simply kept short).
    """
    n = len(wave)
    if rule == "split":
        out = [wave[i:i + window] for i in range(0, n, window)]
        return [w for w in out if len(w) > min_samples]
    if rule == "sam":
        out = []
        for i in range(0, max(hop, n - hop), hop):
            w = wave[i:i + window]
            if len(w) < window and len(w) > min_samples:
                w = np.pad(w, (0, window - len(w)))
            out.append(w)
        return out
    if rule == "repeat":
        return [wave[i:i + window] for i in range(0, max(n, 1), window)]
    raise ValueError(f"unknown window rule {rule!r}")

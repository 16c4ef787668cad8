"""``vggish`` and ``trill``: the TF-Hub models the MusicLM paper reports FAD with.

Loading is the real path: ``tensorflow_hub.resolve(handle)`` (which honours ``TFHUB_CACHE_DIR``)
then ``hub.load``. ``path`` (``--embedder-path``) replaces the default handle with a local
SavedModel directory or another handle. TensorFlow is imported only here, only when asked, so
``import metrics`` stays fast. Pre-processing follows Google's evaluation code: mono, 16 kHz,
zero-padded to a whole number of seconds (done by ``metrics.extract`` via ``pad_to_seconds``).
The weights hash (part of ``id`` and so of every cache key) is the sha256 of the SavedModel files.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from metrics.embedders import Embedder, EmbedderError

VGGISH_HANDLE = "https://tfhub.dev/google/vggish/1"
TRILL_HANDLE = "https://tfhub.dev/google/nonsemantic-speech-benchmark/trill/3"


@functools.lru_cache(maxsize=16)
def _hash_dir(path: str, stamp: tuple) -> str:
    """sha256 over (relative path, bytes) of every file of a SavedModel; memoized on mtimes/sizes."""
    h = hashlib.sha256()
    root = Path(path)
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def saved_model_hash(path: str | Path) -> str:
    root = Path(path)
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file())
    return _hash_dir(str(root), stamp)


def _how_to_provide(name: str, handle: str) -> str:
    cache = os.environ.get("TFHUB_CACHE_DIR", "(unset: a temp dir)")
    return (
        f"To use {name} offline: on a machine with internet, download {handle}?tf-hub-format=compressed, "
        f"unpack the .tar.gz into a directory and pass it with --embedder-path DIR "
        f"(Python: get_embedder({name!r}, path=DIR)); or copy a TF-Hub cache that holds it and point "
        f"TFHUB_CACHE_DIR at it (now {cache})."
    )


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """TensorFlow's import writes C++ log lines (absl's "log messages before InitializeLog", cudart's "could not
    find cuda drivers") straight to file descriptor 2, whatever ``TF_CPP_MIN_LOG_LEVEL`` says, and
    tensorflow_hub imports the deprecated ``pkg_resources``: none of it is about the user's run. Descriptor 2
    points at /dev/null for the import only; a failed import still raises, with its message."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def preload_torch_extensions() -> None:
    """Import torchvision and torch._dynamo (which loads triton) before TensorFlow can be imported.

    With tensorflow 2.21 in the process, a later ``import torchvision`` or ``import torch._dynamo`` segfaults
    loading triton's native library (measured here: ``import tensorflow; import torch._dynamo``); the other
    order works. hear21passt's timm and muq's x-clip import torchvision, torch.compile imports dynamo, and
    VGGish/TRILL load TensorFlow before them: so whoever may import TensorFlow calls this first."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        import torchvision  # noqa: F401  (imports torch._dynamo)
    import torch._dynamo  # noqa: F401


def load_saved_model(name: str, handle: str, default_handle: str):
    """Resolve + load a TF-Hub handle or SavedModel directory; returns (model, local_dir)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # its start-up log lines are not for the user's terminal
    preload_torch_extensions()
    try:
        with _quiet_import():
            import tensorflow as tf  # (tensorflow_hub needs it; import errors are clearer this way)
            import tensorflow_hub as hub

        tf.get_logger().setLevel("ERROR")
    except ImportError as e:
        raise EmbedderError(
            f"the {name} embedder needs tensorflow and tensorflow-hub ({e}); install the extra: "
            "pip install 'musiclm-eval[tfhub]'"
        ) from e
    local = Path(handle).expanduser()
    is_local = not str(handle).startswith(("http://", "https://", "gs://"))
    if is_local and not (local / "saved_model.pb").is_file():
        problem = "does not exist" if not local.exists() else "is not a SavedModel directory (no saved_model.pb)"
        raise EmbedderError(f"{name}: {local} {problem}. " + _how_to_provide(name, default_handle))
    try:
        resolved = str(local) if is_local else hub.resolve(handle)
        model = hub.load(resolved)
    except Exception as e:
        raise EmbedderError(f"could not load {name} from {handle} ({type(e).__name__}: {e}). "
                            + _how_to_provide(name, handle)) from e
    return model, resolved


def _tf_device(device: str) -> str:
    return "/GPU:" + (device.split(":")[1] if ":" in device else "0") if device.startswith(("cuda", "gpu")) else "/CPU:0"


class TFHubEmbedder(Embedder):
    """Shared shape of the two TF-Hub embedders; subclasses define how the model is called."""

    pad_to_seconds = 1.0
    min_seconds = 0.0
    sample_rate = 16000
    default_handle = ""

    def __init__(self, path: str | None = None, device: str = "cpu"):
        self.handle = path or self.default_handle
        self.model, self.local_dir = load_saved_model(self.name, self.handle, self.default_handle)
        self.device = _tf_device(device)
        self.id = f"{self.name}-{saved_model_hash(self.local_dir)[:16]}"

    @property
    def config(self) -> dict:
        return {**super().config, "handle": self.handle}

    def _check(self, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out, dtype=np.float32).reshape(-1, out.shape[-1])
        if out.shape[-1] != self.dim:
            raise EmbedderError(f"{self.name} model at {self.handle} returned dim {out.shape[-1]}, expected {self.dim}")
        return out


class VGGish(TFHubEmbedder):
    """``model(waveform[n] float32 at 16 kHz) -> [frames, 128]`` (0.96 s windows, 0.96 s hop)."""

    name = "vggish"
    dim = 128
    default_handle = VGGISH_HANDLE

    def embed(self, wave: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        with tf.device(self.device):
            out = self.model(tf.constant(np.asarray(wave, dtype=np.float32)))
        return self._check(out.numpy())


class Trill(TFHubEmbedder):
    """``model(samples=[1, n], sample_rate=16000)["embedding"] -> [frames, 512]``."""

    name = "trill"
    dim = 512
    default_handle = TRILL_HANDLE

    def embed(self, wave: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        with tf.device(self.device):
            out = self.model(samples=tf.constant(np.asarray(wave, dtype=np.float32)[None]), sample_rate=16000)
        if not isinstance(out, dict) or "embedding" not in out:
            raise EmbedderError(f"trill model at {self.handle} has no 'embedding' output")
        return self._check(out["embedding"].numpy())


def vggish(path: str | None = None, device: str = "cpu") -> VGGish:
    return VGGish(path, device)


def trill(path: str | None = None, device: str = "cpu") -> Trill:
    return Trill(path, device)

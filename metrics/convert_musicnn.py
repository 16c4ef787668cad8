"""Convert musicnn's TF1 checkpoints (inside the ``musicnn==0.1.0`` wheel) into PyTorch state dicts.

    python -m metrics.convert_musicnn [--wheel musicnn-0.1.0-py3-none-any.whl] [--out DIR]

Why a wheel and not ``pip install``: the wheel pins ``numpy<1.17``, so it can never be a normal
dependency; ``pip download --no-deps`` fetches it from the package registry without installing, and
the checkpoints are plain files inside the zip. Reading them needs only TensorFlow
(``tf.compat.v1.train.NewCheckpointReader``, the ``tfhub`` extra). The script records the wheel's
sha256 and the command in ``manifest.json`` beside the converted weights and copies the ISC licence.

``OriginalGraph`` runs musicnn's own inference graph from the ``.meta`` file (the parity test's
independent reference): keep the subgraph the outputs need plus the saver's restore op, drop the
``_output_shapes`` attributes TF 2 rejects, restore the variables, feed log-mel patches.
"""

from __future__ import annotations

import argparse
import ast
import json
import shlex
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from metrics.artifacts import save_checkpoint
from metrics.embedders.musicnn import CHECKPOINT_DIR, CHECKPOINT_FORMAT, MODELS, Musicnn, MusicnnConfig
from metrics.errors import UnavailableError
from metrics.io import atomic_write_text, file_sha256

WHEEL_REQUIREMENT = "musicnn==0.1.0"
OUTPUTS = {"taggram": "model/Sigmoid:0", "penultimate": "model/batch_normalization_10/batchnorm/add_1:0"}

# torch module prefix -> TF variable scope (creation order of tf.compat.v1.layers in build_musicnn)
TF_NAMES = {
    "bn_input": "batch_normalization",
    "timbral.0.conv": "conv2d", "timbral.0.bn": "batch_normalization_1",
    "timbral.1.conv": "conv2d_1", "timbral.1.bn": "batch_normalization_2",
    "temporal.0.conv": "conv2d_2", "temporal.0.bn": "batch_normalization_3",
    "temporal.1.conv": "conv2d_3", "temporal.1.bn": "batch_normalization_4",
    "temporal.2.conv": "conv2d_4", "temporal.2.bn": "batch_normalization_5",
    "midend.0.conv": "conv2d_5", "midend.0.bn": "batch_normalization_6",
    "midend.1.conv": "conv2d_6", "midend.1.bn": "batch_normalization_7",
    "midend.2.conv": "conv2d_7", "midend.2.bn": "batch_normalization_8",
    "bn_pool": "batch_normalization_9",
    "dense": "dense",
    "bn_dense": "batch_normalization_10",
    "out": "dense_1",
}
BN_PARTS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


class ConversionError(UnavailableError):
    """The wheel cannot be fetched or does not hold what musicnn 0.1.0 holds."""


def download_wheel(dest: str | Path) -> Path:
    """``pip download --no-deps musicnn==0.1.0`` into ``dest``; the error carries pip's last words."""
    dest = Path(dest)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check",
           "-q", WHEEL_REQUIREMENT, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("musicnn-0.1.0-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ConversionError(f"`{shlex.join(cmd[2:])}` failed (exit {proc.returncode}): {' | '.join(tail)}")
    return wheels[0]


def extract_checkpoints(wheel: str | Path, dest: str | Path) -> dict[str, Path]:
    """Unzip ``musicnn/<MTT|MSD>_musicnn/*`` → {wheel folder name: checkpoint directory}."""
    dest = Path(dest)
    out = {}
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        for folder in MODELS.values():
            members = [n for n in names if n.startswith(f"musicnn/{folder}/")]
            if not any(n.endswith("/.index") for n in members):
                raise ConversionError(f"{wheel}: no checkpoint under musicnn/{folder}/")
            z.extractall(dest, members)
            out[folder] = dest / "musicnn" / folder
        license_name = next((n for n in names if n.endswith("LICENSE.md")), None)
        if license_name:
            (dest / "LICENSE").write_bytes(z.read(license_name))
    return out


def tf_state_dict(ckpt_dir: str | Path) -> tuple[dict[str, torch.Tensor], MusicnnConfig]:
    """Read every variable of a musicnn checkpoint and lay it out as ``Musicnn``'s state dict."""
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(str(ckpt_dir) + "/")
    get = reader.get_tensor
    state: dict[str, torch.Tensor] = {}
    for prefix, scope in TF_NAMES.items():
        if prefix.endswith("conv") or prefix in ("dense", "out"):
            k = get(f"{scope}/kernel")
            if k.ndim == 2:  # dense [in, out] -> Linear [out, in]
                w = k.T
            elif prefix.startswith("midend"):  # [7, in, 1, out] -> Conv1d [out, in, 7]
                w = k[:, :, 0, :].transpose(2, 1, 0)
            else:  # [kh, kw, in, out] -> Conv2d [out, in, kh, kw]
                w = k.transpose(3, 2, 0, 1)
            state[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(w, np.float32))
            state[f"{prefix}.bias"] = torch.from_numpy(get(f"{scope}/bias").astype(np.float32))
        else:
            for ours, theirs in BN_PARTS.items():
                state[f"{prefix}.{ours}"] = torch.from_numpy(get(f"{scope}/{theirs}").astype(np.float32))
            state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)
    cfg = MusicnnConfig(n_classes=int(state["out.bias"].shape[0]), midend_filters=int(state["midend.0.conv.bias"].shape[0]),
                        backend_units=int(state["dense.bias"].shape[0]))
    Musicnn(cfg).load_state_dict(state)  # strict: every tensor has a home and every home a tensor
    return state, cfg


def wheel_labels(wheel: str | Path) -> dict[str, list[str]]:
    """The tag lists ``MTT_LABELS`` / ``MSD_LABELS`` of the wheel's ``musicnn/configuration.py``,
    read with ``ast`` (importing the module would need the wheel's librosa/numpy pins)."""
    with zipfile.ZipFile(wheel) as z:
        tree = ast.parse(z.read("musicnn/configuration.py").decode())
    found = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name) and t.id in ("MTT_LABELS", "MSD_LABELS")}
    if len(found) != 2:
        raise ConversionError(f"{wheel}: musicnn/configuration.py has no MTT_LABELS/MSD_LABELS")
    return {"MTT_musicnn": found["MTT_LABELS"], "MSD_musicnn": found["MSD_LABELS"]}


class OriginalGraph:
    """musicnn's own TF1 inference graph, restored from its checkpoint (``[n, 187, 96]`` in)."""

    def __init__(self, ckpt_dir: str | Path):
        import tensorflow as tf
        from tensorflow.core.protobuf import meta_graph_pb2

        ckpt_dir = Path(ckpt_dir)
        meta = meta_graph_pb2.MetaGraphDef()
        meta.ParseFromString((ckpt_dir / ".meta").read_bytes())
        keep = [o.split(":")[0] for o in OUTPUTS.values()] + ["save/restore_all", "save/Const"]
        graph_def = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def, keep)
        for node in graph_def.node:
            node.attr.pop("_output_shapes", None)
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.session.run("save/restore_all", {"save/Const:0": str(ckpt_dir) + "/"})
        names = {n.name for n in graph_def.node}
        self.flag = "model/Placeholder_2:0" if "model/Placeholder_2" in names else None

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        feed = {"model/Placeholder:0": np.asarray(x, np.float32)}
        if self.flag:
            feed[self.flag] = False
        out = self.session.run(list(OUTPUTS.values()), feed)
        return dict(zip(OUTPUTS, out))

    def close(self) -> None:
        self.session.close()


def parity(ckpt_dir: Path, state: dict[str, torch.Tensor], cfg: MusicnnConfig, n: int = 16, seed: int = 0) -> dict:
    """Max |original graph − port| on ``n`` seeded random log-mel patches (values 0–4, musicnn's range)."""
    x = np.random.default_rng(seed).uniform(0.0, 4.0, (n, 187, 96)).astype(np.float32)
    graph = OriginalGraph(ckpt_dir)
    try:
        ref = graph(x)
    finally:
        graph.close()
    model = Musicnn(cfg)
    model.load_state_dict(state)
    with torch.no_grad():
        logits, penultimate = model.eval()(torch.from_numpy(x))
    return {"patches": n, "seed": seed,
            "taggram_max_abs": float(np.abs(torch.sigmoid(logits).numpy() - ref["taggram"]).max()),
            "penultimate_max_abs": float(np.abs(penultimate.numpy() - ref["penultimate"]).max())}


def convert(wheel: str | Path | None = None, out: str | Path = CHECKPOINT_DIR, command: str | None = None) -> dict:
    """Fetch (or take) the wheel, convert MTT and MSD, write ``<folder>.pt``, LICENSE, manifest.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Path(wheel) if wheel else download_wheel(tmp)
        labels = wheel_labels(wheel)
        dirs = extract_checkpoints(wheel, tmp)
        manifest = {"source": WHEEL_REQUIREMENT, "wheel": wheel.name, "wheel_sha256": file_sha256(wheel),
                    "licence": "ISC (LICENSE, from the wheel's LICENSE.md)",
                    "command": command or "python -m metrics.convert_musicnn", "models": {}}
        if (Path(tmp) / "LICENSE").is_file():
            (out / "LICENSE").write_bytes((Path(tmp) / "LICENSE").read_bytes())
        for name, folder in MODELS.items():
            state, cfg = tf_state_dict(dirs[folder])
            if len(labels[folder]) != cfg.n_classes:
                raise ConversionError(f"{folder}: {cfg.n_classes} outputs but {len(labels[folder])} labels")
            meta = {"wheel_sha256": manifest["wheel_sha256"], "source_dir": f"musicnn/{folder}/",
                    "index_sha256": file_sha256(dirs[folder] / ".index"),
                    "data_sha256": file_sha256(dirs[folder] / ".data-00000-of-00001")}
            path = out / f"{folder}.pt"
            save_checkpoint({"format": CHECKPOINT_FORMAT, "config": vars(cfg), "labels": labels[folder],
                             "state_dict": state, "meta": meta}, path)
            manifest["models"][name] = {"file": path.name, "sha256": file_sha256(path), "labels": len(labels[folder]),
                                        "parameters": int(sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))),
                                        "parity_with_original_graph": parity(dirs[folder], state, cfg), **meta}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metrics.convert_musicnn", description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", help="a local musicnn-0.1.0 wheel (default: pip download it)")
    parser.add_argument("--out", default=str(CHECKPOINT_DIR), help="where the .pt files, LICENSE and manifest go")
    args = parser.parse_args(argv)
    cmd = "python -m metrics.convert_musicnn" + (" --out " + shlex.quote(args.out) if args.out != str(CHECKPOINT_DIR) else "")
    manifest = convert(args.wheel, args.out, cmd)
    for name, m in manifest["models"].items():
        print(f"{name}: {args.out}/{m['file']} ({m['parameters']:,} parameters, sha256 {m['sha256'][:16]}…)")
    print(f"wheel {manifest['wheel']} sha256 {manifest['wheel_sha256']}")


if __name__ == "__main__":
    main()

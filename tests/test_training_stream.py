"""``train stage --stream`` end to end: a folder tree of audio → streamed crops → tokens → a stage.

Uses the shipped tiny codec / tokenizer / MuLan (the real frozen tokenizers) and a micro Transformer.
Properties: the stage trains from the folder with the stage's crop length, the manifest records the
streaming run (file counts, ids hash, the skipped file and why); a streamed run stopped mid-way and
resumed ends with the weights of the uninterrupted run (data position + dropout generator restored);
and the CLI under torchrun with 2 gloo processes writes one checkpoint (rank 0) with the weights a
one-process run with the doubled batch reaches.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from training_fixtures import max_weight_diff

from musiclm_ref.stages import load_stage

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
MICRO = {"depth": 1, "dim": 32, "heads": 2, "ff_dim": 32}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fma_small")
    rng = np.random.default_rng(0)
    for k in range(10):
        t = np.arange(int(3.5 * 44100)) / 44100
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        w = 0.3 * np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t))
        path = root / f"{k // 5:03d}" / f"{k:06d}.{'flac' if k % 2 else 'wav'}"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, w.astype(np.float32), 44100)
    (root / "001" / "000099.mp3").write_bytes(b"\x00" * 100)  # unreadable
    return root


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _components(tmp_path) -> Path:
    from musiclm_ref.pipeline import SHIPPED_DIR

    out = tmp_path / "out"
    out.mkdir(parents=True)
    for name in ("codec.pt", "semantic_tokenizer.pt", "mulan_rvq.pt"):
        shutil.copy(SHIPPED_DIR / name, out / name)
    return out


def _train(tree, out, **kw):
    from musiclm_ref.train.stages import StagesTrainConfig, train_stages

    args = dict(preset="tiny", steps=4, batch=2, seed=0, threads=1, on_error="skip", progress=False, transformer=MICRO,
                stream=True, checkpoint_every=2)
    return train_stages(tree, out, StagesTrainConfig(stages=("coarse",), **{**args, **kw}))


def test_a_stage_trains_from_a_folder_of_audio_and_the_manifest_says_how(tree, tmp_path):
    out = _components(tmp_path)
    entry = _train(tree, out)["coarse_stage.pt"]
    stage = load_stage(out / "coarse_stage.pt")
    assert stage.config.crop_seconds == 2.0 and entry["metrics"]["steps"] == 4 and entry["metrics"]["held_out_loss"] > 0
    assert entry["training"]["stream"] and entry["inputs"]["train_files"] + entry["inputs"]["held_out_files"] == 11
    assert entry["data_hash"].startswith("ids:") and entry["metrics"]["skipped_files"] >= 1
    assert {s["path"].rsplit("/", 1)[1] for s in entry["training"]["skipped"]} == {"000099.mp3"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["coarse_stage.pt"]["training"]["world_size"] == 1


def test_a_streamed_run_stopped_and_resumed_ends_with_the_uninterrupted_weights(tree, tmp_path):
    a, b = _components(tmp_path / "a"), _components(tmp_path / "b")
    kw = {"transformer": {**MICRO, "dropout": 0.1}}
    _train(tree, a, **kw)
    assert _train(tree, b, stop_at=3, **kw)["coarse_stage.pt"]["metrics"]["stopped_at"] == 3
    state = torch.load(b / "coarse_stage.pt", weights_only=True)["metadata"]["train_state"]
    assert state["ranks"][0]["data"]["position"] > 0
    from musiclm_ref.distributed import DistContext
    from musiclm_ref.stages import StageError
    from musiclm_ref.train.stage import _restore_rank_state

    with pytest.raises(StageError, match="interrupted with 1 processes, resumed with 2"):
        _restore_rank_state(state, DistContext(rank=0, world=2), None, b / "coarse_stage.pt")
    _train(tree, b, **kw)
    wa, wb = load_stage(a / "coarse_stage.pt").net.state_dict(), load_stage(b / "coarse_stage.pt").net.state_dict()
    assert max_weight_diff(wa, wb) < 1e-6


def test_the_cli_under_torchrun_with_two_gloo_processes_equals_one_process(tree, tmp_path):
    from musiclm_ref.train.stages import StagesTrainConfig, train_stages

    clean = tmp_path / "clean"  # no failing file: a skip would shift one rank's positions
    shutil.copytree(tree, clean, ignore=shutil.ignore_patterns("*.mp3"))
    out, ref = _components(tmp_path / "ddp"), _components(tmp_path / "one")
    exe = Path(sys.executable).with_name("musiclm-eval")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}", "--no-python",
           str(exe), "train", "stage", "--stage", "fine", "--stream", "--data", str(clean), "--checkpoint", str(out), "--steps", "2",
           "--batch-size", "4", "--json", str(tmp_path / "entries.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    entry = json.loads((tmp_path / "entries.json").read_text())["fine_stage.pt"]
    assert entry["training"]["world_size"] == 2 and entry["training"]["global_batch"] == 4
    ddp = load_stage(out / "fine_stage.pt")
    assert ddp.metadata["world_size"] == 2
    train_stages(clean, ref, StagesTrainConfig(stages=("fine",), steps=2, batch=4, threads=1, progress=False, stream=True))
    one = load_stage(ref / "fine_stage.pt")
    assert ddp.metadata["loss_history"] == one.metadata["loss_history"]
    assert max_weight_diff(ddp.net.state_dict(), one.net.state_dict()) < 1e-5  # same crops, masks and mean gradient


def test_the_token_corpus_path_trains_through_the_same_entry_point(small_corpus, tmp_path, monkeypatch):
    import musiclm_ref.train.stages as training

    monkeypatch.setattr(training, "CACHE_DIR", tmp_path / "tokens")
    out = _components(tmp_path)
    cfg = training.StagesTrainConfig(stages=("coarse",), steps=2, batch=2, threads=1, progress=False, transformer=MICRO,
                                     cond_dropout=0.3)
    entry = training.train_stages(small_corpus, out, cfg)["coarse_stage.pt"]
    assert load_stage(out / "coarse_stage.pt").config.cond_dropout == 0.3 == entry["config"]["cond_dropout"]
    assert entry["training"] == {"world_size": 1, "global_batch": 2, "precision": "fp32", "grad_checkpoint": False,
                                 "stream": False, "skipped": []}
    assert entry["inputs"]["train_clips"] + entry["inputs"]["held_out_clips"] == 24 and entry["metrics"]["held_out_loss"] > 0
    assert len(list((tmp_path / "tokens").glob("*.pt"))) == 1  # the token cache was filled once

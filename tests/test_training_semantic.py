"""The w2v-BERT semantic path at scale: ``train semantic --stream --hf-model`` and ``train stage --stream --hf-model``.

A tiny wav2vec2 built with the transformers package's own classes stands in for w2v-BERT (both are
``AutoModel`` directories with hidden states; the weights cannot be downloaded here). Properties: the
tokenizer is fitted on one crop per file of a folder tree, reproducibly (same data hash twice, the
count of files it used) and with a report of the unreadable file; a stage then trains from the tree
with those HF-feature tokens (its vocabulary is the tokenizer's k, the manifest names the tokenizer).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from training_fixtures import save_tiny_wav2vec2

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def w2v(tmp_path_factory):
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("w2v")
    save_tiny_wav2vec2(out)
    return out


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fma")
    rng = np.random.default_rng(1)
    for k in range(8):
        t = np.arange(int(10.5 * 32000)) / 32000
        w = 0.3 * np.sin(2 * np.pi * 110 * 2 ** (rng.integers(0, 24) / 12) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * t))
        path = root / f"{k // 4:03d}" / f"{k:06d}.ogg"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, w.astype(np.float32), 32000)
    (root / "001" / "bad.flac").write_bytes(b"fLaC but not really")
    return root


def test_hf_tokenizer_fits_on_streamed_crops_then_a_stage_trains_on_its_tokens(w2v, tree, tmp_path):
    from benchmarks.cli import main
    from musiclm_ref.pipeline import SHIPPED_DIR
    from musiclm_ref.semantic import load_tokenizer
    from musiclm_ref.stages import load_stage
    from musiclm_ref.train.stages import StagesTrainConfig, train_stages

    out = tmp_path / "out"
    args = ["train", "semantic", "--data", str(tree), "--checkpoint", str(out), "--stream", "--hf-model", str(w2v), "--layer", "2", "--k", "8",
            "--crop-seconds", "3", "--max-files", "20", "--on-error", "skip", "--json", "-"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    entry = json.loads(first.stdout)
    assert entry["data_clips"] == 8 and len(entry["skipped"]) == 1 and "bad.flac" in entry["skipped"][0]
    assert entry["stream"] == {"crop_seconds": 3.0, "max_files": 20} and entry["features"]["kind"] == "hf"
    again = json.loads(CliRunner().invoke(main, [*args[:5], str(tmp_path / "again"), *args[6:]]).stdout)
    assert again["data_hash"] == entry["data_hash"]  # the same seeded crops
    strict = CliRunner().invoke(main, [a for a in args if a not in ("--on-error", "skip")])
    assert strict.exit_code != 0 and "bad.flac" in strict.output

    tok = load_tokenizer(out, hf_path=w2v)
    for name in ("codec.pt", "mulan_rvq.pt"):
        shutil.copy(SHIPPED_DIR / name, out / name)
    entries = train_stages(tree, out, StagesTrainConfig(
        stages=("semantic",), steps=2, batch=2, threads=1, on_error="skip", progress=False, stream=True, hf_model=w2v,
        transformer={"depth": 1, "dim": 32, "heads": 2, "ff_dim": 32}))
    e = entries["semantic_stage.pt"]
    assert e["inputs"]["tokenizer_id"] == tok.id and e["metrics"]["steps"] == 2
    assert load_stage(Path(out) / "semantic_stage.pt").config.tokens.semantic_codebook == 8

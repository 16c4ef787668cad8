"""The PyTorch port against musicnn's ORIGINAL TF1 graph, on the same log-mel input.

The wheel comes from the package registry at test time (``pip download --no-deps musicnn==0.1.0``;
``MUSICNN_WHEEL=<path>`` uses a local copy). The test skips only when the registry cannot be reached
(the reason is pip's own message); a registry that answers without the wheel, or a graph that
disagrees, fails.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.convert_musicnn import (
    ConversionError,
    OriginalGraph,
    download_wheel,
    extract_checkpoints,
    tf_state_dict,
)
from metrics.embedders.musicnn import CHECKPOINT_DIR, MODELS, load_musicnn, log_mel, patches, run_patches
from metrics.io import file_sha256

UNREACHABLE = re.compile(r"connection|network|resolve|timed out|temporary failure|unreachable|proxy|ssl", re.I)


@pytest.fixture(scope="module")
def wheel_dirs(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    pytest.importorskip("tensorflow", reason="the original graph needs the tfhub extra (tensorflow)")
    tmp = tmp_path_factory.mktemp("musicnn")
    if os.environ.get("MUSICNN_WHEEL"):
        wheel = Path(os.environ["MUSICNN_WHEEL"])
    else:
        try:
            wheel = download_wheel(tmp)
        except ConversionError as e:
            if UNREACHABLE.search(str(e)):
                pytest.skip(f"package registry unreachable: {e}")
            raise
    return wheel, extract_checkpoints(wheel, tmp)


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    """Patches of a procedural clip (loud and quiet), of noise, and random log-mel values."""
    from musiclm_ref.data.render import render
    from musiclm_ref.data.specs import sample_spec

    rng = np.random.default_rng(0)
    music = render(sample_spec(0, 5, "jazz"), 6.0, 16000)
    music = 0.9 * music / np.abs(music).max()
    waves = [music, 0.02 * music, 0.3 * rng.standard_normal(16000 * 3)]
    x = np.concatenate([patches(log_mel(w.astype(np.float32))) for w in waves])
    return np.concatenate([x, rng.uniform(0.0, 4.0, (2, 187, 96))]).astype(np.float32)


def test_shipped_weights_come_from_this_wheel(wheel_dirs):
    wheel, dirs = wheel_dirs
    manifest = json.loads((CHECKPOINT_DIR / "manifest.json").read_text())
    assert manifest["wheel_sha256"] == file_sha256(wheel)
    for name, folder in MODELS.items():
        state, _ = tf_state_dict(dirs[folder])
        shipped = load_musicnn(name).model.state_dict()
        assert state.keys() == shipped.keys()
        assert all(torch.equal(state[k], shipped[k]) for k in state), f"{name}: shipped weights differ from a fresh conversion"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_port_matches_the_original_graph(name, wheel_dirs, inputs):
    _, dirs = wheel_dirs
    graph = OriginalGraph(dirs[MODELS[name]])
    try:
        ref = graph(inputs)
    finally:
        graph.close()
    logits, penultimate = run_patches(load_musicnn(name), inputs)
    taggram = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    assert ref["taggram"].shape == (len(inputs), 50) and ref["penultimate"].shape == (len(inputs), 200)
    assert np.abs(taggram - ref["taggram"]).max() <= 1e-4
    assert np.abs(penultimate - ref["penultimate"]).max() <= 1e-4
    # not a vacuous pass: the patches are tagged differently from each other
    assert np.abs(np.diff(ref["taggram"], axis=0)).max() > 0.05

"""``train semantic`` resumes exactly: interrupted in its feature pass, then in k-means, and rerun with the same
config, it ends with the uninterrupted run's centroids bit for bit; another config refuses the left state.
An error raised from the progress hook (called right after each atomic save) stands in for the kill."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.audio import save_audio
from musiclm_ref.data.render import render
from musiclm_ref.data.specs import sample_spec
from musiclm_ref.semantic import SemanticError, load_tokenizer
from musiclm_ref.train.semantic import SemanticTrainConfig, train_semantic

SR = 16000
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four 3 s clips and two nearly silent ones: their identical silent frames leave clusters empty, so k-means
    re-seeds them from its generator and a resume that lost the generator state would end elsewhere."""
    root = tmp_path_factory.mktemp("semantic_resume")
    for i in range(4):
        save_audio(root / f"c{i}.wav", render(sample_spec(41, i), 3.0, SR), SR)
    quiet = np.zeros(3 * SR, np.float32)
    quiet[: SR // 5] = render(sample_spec(41, 9), 0.2, SR)
    for i in range(2):
        save_audio(root / f"q{i}.wav", quiet, SR)
    return root


def cfg(stop_at: str | None = None, seen: list[str] | None = None, **kw) -> SemanticTrainConfig:
    """The recipe; ``seen`` collects the progress lines, an error at ``stop_at`` interrupts the run."""

    def progress(line: str) -> None:
        if seen is not None:
            seen.append(line)
        if line == stop_at:
            raise KeyboardInterrupt(line)

    return SemanticTrainConfig(**{"k": 16, "iters": 5, "seed": 3, "checkpoint_every": 2, "progress": progress, **kw})


def test_an_interrupted_semantic_fit_resumes_with_the_uninterrupted_centroids(data, tmp_path):
    train_semantic(data, tmp_path / "plain", cfg())
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_semantic(data, out, cfg("features 2/6 clips"))
    assert (out / "semantic_tokenizer.pt.resume.features").is_file() and not (out / "semantic_tokenizer.pt").exists()
    with pytest.raises(SemanticError, match="another config or data"):
        train_semantic(data, out, cfg(k=12))
    seen: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        train_semantic(data, out, cfg("k-means iteration 2/5", seen))
    assert seen == ["features 4/6 clips", "features 6/6 clips", "k-means iteration 1/5",
                    "k-means iteration 2/5"]  # continued after the 2 clips saved
    with pytest.raises(SemanticError, match="another config or data"):
        train_semantic(data, out, cfg(seed=4))
    seen.clear()
    train_semantic(data, out, cfg(seen=seen))
    assert seen == ["k-means iteration 3/5", "k-means iteration 4/5", "k-means iteration 5/5"]
    a, b = load_tokenizer(tmp_path / "plain"), load_tokenizer(out)
    assert torch.equal(torch.as_tensor(a.centroids), torch.as_tensor(b.centroids)) and a.id == b.id
    assert not list(out.glob("*.resume*"))  # removed once the tokenizer is written

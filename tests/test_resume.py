"""Long runs that survive a kill: ``score`` and ``stats`` SIGKILLed part-way and rerun on the same cache give
exactly the numbers of an uninterrupted run; the trainers killed after a periodic checkpoint and rerun end
with exactly the weights of an uninterrupted run. Real processes, real SIGKILLs (``kill_util``); ``compare``
is ``test_cache_resume``'s."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kill_util import kill_when, numbers, run_ok

from metrics.cache import EmbeddingCache

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "benchmarks.cli"]
N_CLIPS = 6


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Six 2 s reference clips and a noisy copy of each (paired by id), with captions."""
    from metrics.audio import load_dir, save_audio
    from musiclm_ref.data.degrade import degrade
    from musiclm_ref.data.synth import generate_corpus

    root = tmp_path_factory.mktemp("pair")
    generate_corpus(root / "ref", n=N_CLIPS, seconds=2.0, seed=1234, sample_rate=16000)
    for c in load_dir(root / "ref").clips:
        save_audio(root / "gen" / f"{c.id}.wav", degrade(c.wave, c.sr, "noise", 0.3, seed=2), c.sr)
    return root


def entries(cache) -> int:
    return len(EmbeddingCache(cache)._entries())


def in_process(cmd: list[str]) -> None:
    """The uninterrupted run: the same command line, in this process (no second interpreter start-up)."""
    from click.testing import CliRunner

    from benchmarks.cli import main

    r = CliRunner().invoke(main, cmd[len(CLI):])
    assert r.exit_code == 0, r.output


def killed_then_rerun(cmd: list[str], cache, at: int, total: int) -> str:
    """Kill ``cmd`` once ``at`` cache entries exist, check it was part-way with no bad entry, run it again;
    returns the rerun's stderr."""
    kill_when(cmd, lambda: entries(cache) >= at)
    assert 0 < entries(cache) < total and EmbeddingCache(cache).verify()["bad"] == []
    return run_ok(cmd).stderr


def score_cmd(root, out, cache) -> list[str]:
    return [*CLI, "score", "--generated", str(root / "gen"), "--reference", str(root / "ref"), "--captions",
            str(root / "ref" / "captions.csv"), "--embedders", "mel", "--classifier", "none", "--joint", "none",
            "--bootstrap", "20", "--cache-dir", str(cache), "--batch-size", "1", "--no-progress", "--out", str(out)]


def test_killed_score_rerun_on_the_same_cache_gives_the_uninterrupted_numbers(pair, tmp_path):
    in_process(score_cmd(pair, tmp_path / "plain", tmp_path / "plain-cache"))
    cmd = score_cmd(pair, tmp_path / "r", tmp_path / "cache")
    err = killed_then_rerun(cmd, tmp_path / "cache", 2, 2 * N_CLIPS)
    assert "took over the lock of a run that is gone" in err  # the killed run's store lock
    assert numbers(tmp_path / "r") == numbers(tmp_path / "plain")


def stats_cmd(root, path, cache) -> list[str]:
    return [*CLI, "stats", "--audio", str(root / "ref"), "--stats", str(path), "--embedder", "mel",
            "--cache-dir", str(cache), "--batch-size", "1", "--no-progress"]


@pytest.fixture(scope="module")
def many(pair, tmp_path_factory):
    """60 distinct clips (the six reference clips at ten gains each): enough that a kill lands part-way even
    on an idle machine, where six 2 s clips are all cached before the 20 ms poll sees the second entry."""
    from metrics.audio import load_dir, save_audio

    root = tmp_path_factory.mktemp("many")
    for c in load_dir(pair / "ref").clips:
        for g in range(10):
            save_audio(root / "ref" / f"{c.id}-g{g}.wav", c.wave * (1.0 - 0.02 * g), c.sr)
    return root


def test_killed_stats_rerun_on_the_same_cache_gives_the_uninterrupted_statistics(many, tmp_path):
    in_process(stats_cmd(many, tmp_path / "plain.npz", tmp_path / "plain-cache"))
    killed_then_rerun(stats_cmd(many, tmp_path / "r.npz", tmp_path / "cache"), tmp_path / "cache", 2, 10 * N_CLIPS)
    with np.load(tmp_path / "plain.npz") as a, np.load(tmp_path / "r.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k


# --- trainers: killed after a periodic checkpoint, rerun from it -------------------------------------------

STAGE_CFG = dict(steps=8, batch=4, warmup=2, lr=3e-3, checkpoint_every=2)
TRAINER = textwrap.dedent("""
    import json, sys, time
    import torch
    sys.path.insert(0, sys.argv[1])
    torch.set_num_threads(1)
    path, pause, cfg = sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])
    from training_fixtures import micro_stage, random_corpus
    from musiclm_ref.train.stage import StageTrainConfig, fit_stage
    # a pause after each step leaves time to kill between checkpoints; the numbers do not change
    fit_stage(micro_stage("coarse", dropout=0.1), random_corpus(), StageTrainConfig(**cfg), path,
              progress=False, on_step=lambda s, v: time.sleep(pause))
""")


def trainer(path, pause: float) -> list[str]:
    """The stage trainer of ``test_training_loop`` (micro stage, dropout on) in its own process."""
    return [sys.executable, "-c", TRAINER, str(Path(__file__).parent), str(path), str(pause), json.dumps(STAGE_CFG)]


def replaced(path, times: int) -> Callable[[], bool]:
    """Whether ``path`` was written ``times`` times (each atomic write is a new inode): cheap to poll."""
    seen: set[int] = set()

    def ready() -> bool:
        with contextlib.suppress(FileNotFoundError):
            seen.add(os.stat(path).st_ino)
        return len(seen) >= times
    return ready


def same_weights(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_killed_stage_run_resumed_from_its_checkpoint_ends_with_the_uninterrupted_weights(tmp_path):
    import torch
    from training_fixtures import micro_stage, random_corpus

    from musiclm_ref.train.stage import StageTrainConfig, fit_stage

    def fit(path, steps: list):
        fit_stage(micro_stage("coarse", dropout=0.1), random_corpus(), StageTrainConfig(**STAGE_CFG), path,
                  progress=False, on_step=lambda s, v: steps.append(s))

    fit(tmp_path / "plain.pt", [])
    path = tmp_path / "run.pt"
    kill_when(trainer(path, 0.3), replaced(path, 1))
    meta = torch.load(path, weights_only=False)["metadata"]
    assert meta["train_state"] is not None and 2 <= meta["step"] < STAGE_CFG["steps"]  # killed part-way
    fit(path, steps := [])  # resumed in this process, from the killed one's checkpoint
    assert steps == list(range(meta["step"] + 1, STAGE_CFG["steps"] + 1))
    plain, resumed = (torch.load(p, weights_only=False) for p in (tmp_path / "plain.pt", path))
    same_weights(plain["state_dict"], resumed["state_dict"])
    assert resumed["metadata"]["step"] == STAGE_CFG["steps"]



CLASSIFIER = textwrap.dedent("""
    import sys, time
    import torch
    sys.path.insert(0, sys.argv[1])
    torch.set_num_threads(1)
    from test_resume import classifier_config
    from metrics.classifier_training import train_classifier
    # a pause after each epoch (its state is saved by then) leaves time to kill; the numbers do not change
    train_classifier(sys.argv[2], sys.argv[3], classifier_config(lambda line: time.sleep(float(sys.argv[4]))))
""")


def classifier_config(progress=None):
    """``test_classifier``'s tiny LEAF classifier, four epochs of two steps."""
    from metrics.classifier import ClassifierConfig, corpus_label_space
    from metrics.classifier_training import ClassifierTrainConfig
    from metrics.leaf import LeafConfig

    model = ClassifierConfig(n_labels=len(corpus_label_space()), leaf=LeafConfig(n_filters=8), channels=(4, 8), embed_dim=16)
    return ClassifierTrainConfig(epochs=4, crop_seconds=0.5, batch_size=10, model=model, progress=progress)


def test_a_killed_classifier_run_resumes_from_its_last_epoch_with_the_uninterrupted_weights(small_corpus, tmp_path):
    import torch

    from metrics.classifier_training import train_classifier
    from metrics.epoch_resume import resume_path

    plain = train_classifier(small_corpus, tmp_path / "plain.pt", classifier_config())
    out = tmp_path / "run.pt"
    cmd = [sys.executable, "-c", CLASSIFIER, str(Path(__file__).parent), str(small_corpus), str(out), "0.5"]
    kill_when(cmd, replaced(resume_path(out), 1))
    assert 1 <= torch.load(resume_path(out), weights_only=False)["epoch"] < 4 and not out.exists()  # killed part-way
    epochs = []
    resumed = train_classifier(small_corpus, out, classifier_config(epochs.append))  # resumes in this process
    assert len(epochs) < 4  # the epochs the killed run finished were not trained again
    same_weights(torch.load(tmp_path / "plain.pt", weights_only=True)["state_dict"],
                 torch.load(out, weights_only=True)["state_dict"])
    assert resumed["metrics"] == plain["metrics"] and not resume_path(out).exists()


def test_an_interrupted_mulan_run_resumes_exactly_and_another_recipe_refuses(small_corpus, tmp_path):
    """MuLan trains in the same epoch loop; an error after epoch 1 stands in for the kill."""
    import torch

    from metrics.epoch_resume import resume_path
    from metrics.errors import InputError
    from musiclm_ref.mulan import MulanConfig
    from musiclm_ref.train.mulan import MulanTrainConfig, train_mulan

    def cfg(progress=None, **kw):
        return MulanTrainConfig(**{**dict(epochs=3, batch_size=8, crop_frames=100, progress=progress,
                                          model=MulanConfig(audio_channels=(4, 8), buckets=512, text_dim=16, text_heads=2)),
                                   **kw})

    train_mulan(small_corpus, tmp_path / "plain.pt", cfg())

    def stop(line):
        raise KeyboardInterrupt(line)

    out = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt, match="epoch 1/3"):
        train_mulan(small_corpus, out, cfg(stop))
    with pytest.raises(InputError, match="another config or data"):
        train_mulan(small_corpus, out, cfg(lr=1e-3))
    train_mulan(small_corpus, out, cfg())
    same_weights(torch.load(tmp_path / "plain.pt", weights_only=False)["state_dict"],
                 torch.load(out, weights_only=False)["state_dict"])
    assert not resume_path(out).exists()



def test_an_interrupted_melody_run_resumes_from_its_last_state_with_the_uninterrupted_weights(tmp_path):
    """The melody trainer saves its state every ``checkpoint_every`` steps (``train melody``: out/melody_last.pt);
    an error at step 3 stands in for the kill."""
    import torch

    from musiclm_ref.melody import MelodyEmbedder, MelodyError
    from musiclm_ref.train.melody import fit_melody, render_triplets

    waves = render_triplets(3, seconds=4.5)["waves"]
    steps: list[int] = []

    def fit(resume=None, digest="d", stop=None):
        def on_step(step, loss):
            steps.append(step)
            if step == stop:
                raise KeyboardInterrupt
        torch.manual_seed(0)
        model = MelodyEmbedder()
        fit_melody(model, waves, steps=4, batch=2, progress=False, resume=resume, digest=digest, checkpoint_every=2,
                   on_step=on_step)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    plain, last = fit(), tmp_path / "melody_last.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(last, stop=3)
    assert torch.load(last, weights_only=True)["step"] == 2
    with pytest.raises(MelodyError, match="another config"):
        fit(last, digest="another recipe")
    del steps[:]
    same_weights(plain, fit(last))
    assert steps == [3, 4]  # continued after the saved step 2

"""Quiet, readable output (issue #26 item 7, #28 item 4): each warning once per run, naming its sets; no
library noise from the TF-Hub import; one line per skipped model; the demo's steps timed; the tag AUC
reads the tagger's cached outputs instead of running it again.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from metrics.audio import save_audio
from metrics.embedders import EMBEDDERS, Embedder
from metrics.fad import SingularCovarianceWarning
from metrics.warn_once import warn_once, warnings_of

SR = 16000


class Wide(Embedder):
    """50 dimensions, 4 frames a second: 12 one-second clips give 48 frames, a singular covariance."""

    name = id = "wide-test"
    sample_rate, dim = SR, 50

    def embed(self, wave: np.ndarray) -> np.ndarray:
        frames = np.asarray(wave[: len(wave) // 4000 * 4000], np.float64).reshape(-1, 4000)
        return np.stack([np.roll(frames, k, axis=1)[:, :50].mean(1) * (k + 1) for k in range(50)], 1).astype(np.float32)


@pytest.fixture
def three_sets(tmp_path, monkeypatch):
    monkeypatch.setitem(EMBEDDERS._entries, "wide-test", lambda path=None, device="cpu": Wide())
    rng = np.random.default_rng(2)
    for d in ("ref", "a", "b"):
        for i in range(12):
            save_audio(tmp_path / d / f"c{i:02d}.wav", (0.2 * rng.standard_normal(SR)).astype(np.float32), SR)
    return tmp_path


def test_an_evaluation_shows_each_warning_once_naming_the_sets(three_sets):
    from metrics.evaluate import Plan, evaluate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate(three_sets / "ref", {"a": three_sets / "a", "b": three_sets / "b"}, Plan(embedders=("wide-test",)),
                      n_boot=20)
    assert set(ev.systems) == {"a", "b"}
    singular = [str(w.message) for w in caught if w.category is SingularCovarianceWarning]
    # reference and generated sets are both singular in each of the 2 systems: 4 raised, 2 distinct, each shown once
    assert len(singular) == len(set(singular)) == 2, singular
    assert {m.split(" set ")[0] for m in singular} == {"reference", "generated"}
    assert all(m.endswith("(while scoring system 'a', system 'b')") for m in singular)


def test_warn_once_still_honours_filters_and_nests():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with warn_once():
            with warn_once():  # nested: the outer block alone emits
                for _ in range(3):
                    warnings.warn("same thing", UserWarning, stacklevel=1)
            assert caught == []  # nothing is shown while the run goes on
            with warnings_of("system 'x'"):
                warnings.warn("same thing", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["same thing (while scoring system 'x')"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="an error"), warn_once():
            warnings.warn("an error", UserWarning, stacklevel=1)


def test_a_failed_tfhub_load_prints_nothing_but_its_error():
    pytest.importorskip("tensorflow_hub")
    code = ("from metrics.embedders import get_embedder, EmbedderError\n"
            "try:\n    get_embedder('vggish', path='/nonexistent/vggish')\n"
            "except EmbedderError as e:\n    print('ERROR', e)\n")
    run = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300)
    assert run.stdout.startswith("ERROR") and "does not exist" in run.stdout
    for noise in ("pkg_resources", "absl", "cudart", "cuda drivers"):
        assert noise not in run.stderr, run.stderr


def test_a_skipped_model_is_one_line():
    from benchmarks.demo import skip_reason
    from metrics.embedders.tfhub import VGGISH_HANDLE, _how_to_provide

    reason = f"could not load vggish from {VGGISH_HANDLE} (URLError: <urlopen error no network>). " + \
        _how_to_provide("vggish", VGGISH_HANDLE)
    assert skip_reason(reason) == f"could not load vggish from {VGGISH_HANDLE} (URLError: <urlopen error no network>)."
    assert skip_reason("line one\nline two") == "line one"


def test_demo_steps_are_timed_and_summed():
    from benchmarks.demo import StepTimes

    lines: list[str] = []
    times = StepTimes(lines.append)
    with times.step("corpus"):
        pass
    with pytest.raises(RuntimeError), times.step("compare"):
        raise RuntimeError("a failing step is still timed")
    assert list(times.seconds) == ["corpus", "compare"] and lines[0].startswith("  [corpus: ")
    assert times.summary().startswith("step times: corpus 0 s, compare 0 s; total ")

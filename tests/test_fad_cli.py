"""``musiclm-eval stats | fad | cache`` through the real lazy CLI, and the functions behind them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.cli import main
from metrics.audio import save_audio
from metrics.commands import compute_fad, compute_stats, embed_dir
from metrics.embedders import get_embedder
from metrics.fad import EmbeddingStats, FADError, fad, fad_inf

SR = 16000
# 10 clips x 5 frames < 128 dims: every FAD here warns about singular covariances (asserted once below)
pytestmark = pytest.mark.filterwarnings("ignore::metrics.fad.SingularCovarianceWarning")


def make_dir(path, n, seed, shift=0.0, seconds=3.0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    for i in range(n):
        f0 = rng.uniform(200, 800) * (1 + shift)
        wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * (1 + 4 * shift) * rng.standard_normal(len(t))
        save_audio(path / f"clip{i:02d}.wav", wave.astype(np.float32), SR)
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICLM_EVAL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def dirs(tmp_path):
    ref = make_dir(tmp_path / "ref", 10, seed=1)
    gen = make_dir(tmp_path / "gen", 8, seed=2, shift=0.3)
    return ref, gen


def run(*args):
    args = [str(a) for a in args]
    if args[0] in ("stats", "fad") and "--embedder" not in args:
        args += ["--embedder", "mel"]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_stats_then_fad_from_npz_equals_fad_from_directory(tmp_path, dirs):
    ref, gen = dirs
    res = run("stats", "--audio", ref, "--embedder", "mel", "--stats", tmp_path / "ref.npz")
    assert res.exit_code == 0, res.output
    assert "10 clips, 50 frames, dim 128" in res.output
    with np.load(tmp_path / "ref.npz") as z:
        assert {"mu", "sigma", "n"} <= set(z.files) and z["sigma"].shape == (128, 128)

    by_dir = run("fad", "--reference", ref, "--generated", gen, "--json", tmp_path / "a.json")
    by_npz = run("fad", "--reference", tmp_path / "ref.npz", "--generated", gen, "--json", tmp_path / "b.json")
    assert by_dir.exit_code == 0 and by_npz.exit_code == 0, by_dir.output + by_npz.output
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["fad"] == pytest.approx(b["fad"], rel=1e-12)
    assert {k: a[k] for k in ("n_reference", "n_generated", "n_reference_frames", "n_generated_frames", "dim")} == {
        "n_reference": 10, "n_generated": 8, "n_reference_frames": 50, "n_generated_frames": 40, "dim": 128}
    assert a["embedder"] == get_embedder("mel").id
    assert a["warnings"] == [
        "reference set has 50 frames for 128 dimensions: its covariance is singular and FAD is biased upwards; "
        "use more audio (or FAD∞) before comparing numbers",
        "generated set has 40 frames for 128 dimensions: its covariance is singular and FAD is biased upwards; "
        "use more audio (or FAD∞) before comparing numbers"]
    assert by_dir.output.startswith(f"FAD[{a['embedder']}] = {a['fad']:.4f}  (reference 10 clips / 50 frames")


def test_compute_fad_matches_the_metric_on_embeddings(dirs):
    ref, gen = dirs
    mel = get_embedder("mel")
    doc = compute_fad(ref, gen, mel, inf=True, bootstrap=50, seed=3)
    r, g = compute_stats(ref, mel), compute_stats(gen, mel)
    assert doc["fad"] == pytest.approx(fad(r, g).value, rel=1e-12)
    lo, hi = doc["ci95"]
    assert lo < hi and doc == compute_fad(ref, gen, mel, inf=True, bootstrap=50, seed=3)  # seeded
    assert np.isfinite(doc["fad_inf"]) and 0 <= doc["fad_inf_r2"] <= 1


def test_inf_per_clip_and_bootstrap_options(tmp_path, dirs):
    ref, gen = dirs
    res = run("fad", "--reference", ref, "--generated", gen, "--inf", "--bootstrap", "30", "--seed", "5",
              "--per-clip", tmp_path / "per.csv", "--json", tmp_path / "o.json")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o.json").read_text())
    assert {"fad_inf", "fad_inf_r2", "ci95"} <= set(doc) and len(doc["ci95"]) == 2
    assert "FAD∞ = " in res.output and "95% CI [" in res.output
    rows = list(csv.DictReader((tmp_path / "per.csv").open()))
    assert [r["id"] for r in rows] == [f"clip{i:02d}" for i in range(8)] and all(r["frames"] == "5" for r in rows)
    mel = get_embedder("mel")
    value, r2 = fad_inf(compute_stats(ref, mel), embed_dir(gen, mel), seed=5)
    assert doc["fad_inf"] == pytest.approx(value, rel=1e-12) and doc["fad_inf_r2"] == pytest.approx(r2, rel=1e-12)


def test_mixing_embedders_is_an_error(tmp_path, dirs):
    ref, gen = dirs
    stats = EmbeddingStats(embedder="vggish-0123456789abcdef").update(np.random.default_rng(0).standard_normal((300, 128)))
    stats.save(tmp_path / "vggish.npz")
    res = run("fad", "--reference", tmp_path / "vggish.npz", "--generated", gen, "--embedder", "mel")
    assert res.exit_code == 1
    assert ("vggish.npz: statistics were computed with embedder 'vggish-0123456789abcdef', but this run uses "
            f"'{get_embedder('mel').id}'") in res.output
    with pytest.raises(FADError, match="statistics were computed with embedder"):
        compute_fad(tmp_path / "vggish.npz", gen, get_embedder("mel"))


def test_bad_inputs_are_clear_errors_or_reported_skips(tmp_path, dirs):
    ref, gen = dirs
    (tmp_path / "empty").mkdir()
    res = run("fad", "--reference", ref, "--generated", tmp_path / "empty")
    assert res.exit_code == 1 and "empty: no audio files (.flac, .mp3, .ogg, .wav) in directory" in res.output
    save_audio(gen / "tiny.wav", np.zeros(SR // 4, np.float32) + 0.1, SR)
    res = run("fad", "--reference", ref, "--generated", gen)
    assert res.exit_code == 1
    assert "tiny.wav: too short for mel: 0.250 s < 1.000 s (one embedding frame)" in res.output
    res = run("fad", "--reference", ref, "--generated", gen, "--on-error", "skip", "--json", tmp_path / "s.json")
    assert res.exit_code == 0 and "(1 clips skipped)" in res.output
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["n_generated"] == 8 and [s["path"] for s in doc["skipped"]["generated"]] == [str(gen / "tiny.wav")]
    res = run("fad", "--reference", ref, "--generated", gen, "--embedder", "nope")
    assert res.exit_code == 1 and "unknown embedder 'nope'" in res.output


def test_cache_info_clear_and_no_cache(tmp_path, dirs, private_cache):
    ref, gen = dirs
    assert run("fad", "--reference", ref, "--generated", gen, "--no-cache").exit_code == 0
    info = json.loads(run("cache", "info", "--json", "-").output)
    assert info == {"root": str(private_cache), "entries": 0, "bytes": 0}
    assert run("fad", "--reference", ref, "--generated", gen).exit_code == 0
    assert json.loads(run("cache", "info", "--json", "-").output)["entries"] == 18
    other = tmp_path / "other"
    assert run("stats", "--audio", ref, "--stats", tmp_path / "s.npz", "--cache-dir", other).exit_code == 0
    assert f"{other}: 10 entries" in run("cache", "info", "--cache-dir", other).output
    assert run("cache", "clear").output.strip() == f"removed 18 entries from {private_cache}"
    assert json.loads(run("cache", "info", "--json", "-").output)["entries"] == 0

"""The evaluation core: one pipeline behind ``fad``, ``score`` and ``compare`` (local and Ray).

The same clips through every command give the same FAD / KLD / MCC (≤1e-10 relative) and the same
results-store schema; extraction decodes each clip once per sample rate; metric states merge.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from metrics.audio import AudioError, load_dir, save_audio
from metrics.commands import compute_fad, compute_score
from metrics.embedders import get_embedder
from metrics.fad_metric import FAD
from metrics.store import read_store

N = 10  # clips: metrics.evaluate.MIN_PAIRS shared clips are needed for the paired tests
HAVE_RAY = importlib.util.find_spec("ray") is not None


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dirs(small_corpus, tmp_path_factory):
    """Reference = the first N corpus clips; two systems: lightly and heavily noised copies (same ids)."""
    root = tmp_path_factory.mktemp("evaluate")
    ref, a, b = root / "reference", root / "a", root / "b"
    ref.mkdir()
    for p in sorted(small_corpus.glob("*.wav"))[:N]:
        (ref / p.name).write_bytes(p.read_bytes())
    rng = np.random.default_rng(7)
    for clip in load_dir(ref).clips:
        for d, level in ((a, 0.003), (b, 0.05)):
            save_audio(d / f"{clip.id}.wav", clip.wave + level * rng.standard_normal(len(clip.wave)).astype(np.float32),
                       clip.sr)
    return ref, a, b, small_corpus / "captions.csv"


def _compare(dirs, out, engine=None):
    from benchmarks.harness import compare

    ref, a, b, caps = dirs
    return compare({"a": a, "b": b}, ref, caps, out, embedders=["mel"], n_boot=50, seed=1, engine=engine)


@pytest.fixture(scope="module")
def local_compare(dirs, tmp_path_factory):
    return _compare(dirs, tmp_path_factory.mktemp("cmp-local"))


def _rel(x, y):
    return abs(x - y) / max(abs(y), 1e-300)


def test_fad_score_compare_give_the_same_numbers(dirs, local_compare, tmp_path):
    ref, a, _, caps = dirs
    fad_doc = compute_fad(ref, a, get_embedder("mel"), bootstrap=50, seed=1)
    score_doc = compute_score(a, ref, caps, embedders=["mel"], n_boot=50, seed=1, out=tmp_path / "score")
    m = local_compare["systems"]["a"]["metrics"]
    assert _rel(score_doc["fad_mel"], fad_doc["fad"]) <= 1e-10
    assert _rel(m["fad_mel"]["value"], fad_doc["fad"]) <= 1e-10
    for key in ("kld_musiclm", "mcc"):
        assert _rel(m[key]["value"], score_doc[key]) <= 1e-10, key
    # same intervals too: one Metric, one resampling
    assert np.allclose(m["fad_mel"]["ci95"], fad_doc["ci95"], rtol=1e-10)
    # the same results-store schema from `score --out` and `compare --out`
    s = read_store(tmp_path / "score").data
    assert s["schema_version"] == local_compare["schema_version"]
    assert set(s["systems"]["generated"]["metrics"]) <= set(m)
    assert s["systems"]["generated"]["metrics"]["fad_mel"]["value"] == pytest.approx(m["fad_mel"]["value"], rel=1e-10)


def test_compare_reports_paired_differences(local_compare, dirs):
    rows = local_compare["metadata"]["pairwise"]
    fad_row = next(r for r in rows if r["metric"] == "fad_mel")
    m = local_compare["systems"]
    assert fad_row["system_a"] == "a" and fad_row["system_b"] == "b"
    assert fad_row["diff"] == pytest.approx(m["a"]["metrics"]["fad_mel"]["value"] - m["b"]["metrics"]["fad_mel"]["value"],
                                            rel=1e-9)
    assert 0.0 <= fad_row["p_value"] <= 1.0 and fad_row["p_holm"] >= fad_row["p_value"]
    lo, hi = fad_row["ci95"]
    assert lo <= fad_row["diff"] <= hi


def test_every_point_estimate_lies_in_its_interval(local_compare):
    for name, s in local_compare["systems"].items():
        for key, entry in s["metrics"].items():
            if entry.get("ci95"):
                lo, hi = entry["ci95"]
                assert lo <= entry["value"] <= hi, (name, key)


def test_extraction_decodes_each_clip_once_per_sample_rate(dirs, monkeypatch):
    """mel and the classifier share 16 kHz, the joint model too: one decode per clip, whatever the model count."""
    import metrics.extract as ex
    from metrics.extract import extract
    from metrics.models import ModelSpec

    calls = []
    real = ex.load_audio

    def counting(path, *a, **k):
        calls.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(ex, "load_audio", counting)
    ref = dirs[0]
    paths = sorted(ref.glob("*.wav"))
    models = {"mel": get_embedder("mel"), "clf": ModelSpec("leaf-corpus", kind="classifier").build()}
    out = extract(paths, models)
    assert sorted(calls) == sorted(map(str, paths))  # once each
    assert set(out["mel"]) == set(out["clf"]) == {p.stem for p in paths}
    assert out["clf"][paths[0].stem].shape[1] == len(models["clf"].labels)


def test_fad_metric_merges_partial_states(dirs):
    from metrics.extract import embed_clips

    ref, a, _, _ = dirs
    mel = get_embedder("mel")
    r, g = embed_clips(sorted(ref.glob("*.wav")), mel), embed_clips(sorted(a.glob("*.wav")), mel)
    whole = FAD(mel.id, n_boot=0)
    whole.update("reference", r)
    whole.update("generated", g)
    ids = sorted(g)
    parts = []
    for half in (ids[: N // 2], ids[N // 2:]):
        p = whole.clone()
        p.update("reference", {i: r[i] for i in half})
        p.update("generated", {i: g[i] for i in half})
        parts.append(p)
    merged = parts[0].merge(parts[1])
    assert _rel(merged.compute().value, whole.compute().value) <= 1e-12
    # the resampling hook equals a recomputation on stacked frames
    pick = [ids[0], ids[0], ids[3]]
    x = np.concatenate([g[i] for i in pick]).astype(np.float64)
    y = np.concatenate([r[i] for i in ids]).astype(np.float64)
    from metrics.fad import frechet_distance

    want = frechet_distance(y.mean(0), np.cov(y, rowvar=False), x.mean(0), np.cov(x, rowvar=False))
    assert _rel(whole.value_on(ids, pick), want) <= 1e-8


def test_store_json_is_standard(local_compare, tmp_path):
    text = json.dumps(local_compare)
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))


@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (extra 'ray')")
def test_compare_and_score_on_ray_equal_local(dirs, local_compare, tmp_path):
    """Ray workers build every model (embedder, classifier, joint) from its spec: same numbers as local.
    One actor per pass: every pass starts its pool's processes afresh (import torch, build the model), so a
    second actor doubles that cost here; several actors merging in order are tested in tests/test_ray_engine.py."""
    import ray

    from metrics.ray_engine import RayEngine

    ref, a, _, caps = dirs
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        engine = RayEngine(actors=1)
        got = _compare(dirs, tmp_path / "cmp-ray", engine=engine)
        score_ray = compute_score(a, ref, caps, embedders=["mel"], n_boot=50, seed=1, engine=engine)
    finally:
        ray.shutdown()
    for name in ("a", "b", "ground truth"):
        for key, entry in local_compare["systems"][name]["metrics"].items():
            assert _rel(got["systems"][name]["metrics"][key]["value"], entry["value"]) <= 1e-10, (name, key)
    assert _rel(score_ray["kld_musiclm"], local_compare["systems"]["a"]["metrics"]["kld_musiclm"]["value"]) <= 1e-10
    assert _rel(score_ray["mcc"], local_compare["systems"]["a"]["metrics"]["mcc"]["value"]) <= 1e-10


def test_fad_resampling_routes_agree(monkeypatch):
    """Per-clip Gram matrices (small sets) and re-weighted stacked frames (MusicCaps-size sets) give one value."""
    import metrics.fad_metric as fm
    from metrics.fad import frechet_distance

    rng = np.random.default_rng(0)
    r = {f"c{i}": rng.standard_normal((int(rng.integers(3, 12)), 8)) for i in range(30)}
    g = {f"c{i}": rng.standard_normal((int(rng.integers(3, 12)), 8)) + 0.3 for i in range(30)}
    values = []
    # Grams kept; Grams rebuilt one clip at a time; rebuilt 7 clips at a time (the last chunk short)
    for budget, chunk in ((fm.GRAM_BYTES, fm.CHUNK_BYTES), (0, fm.CHUNK_BYTES), (0, 7 * 8 * 8 * 8)):
        monkeypatch.setattr(fm, "GRAM_BYTES", budget)
        monkeypatch.setattr(fm, "CHUNK_BYTES", chunk)
        m = FAD(n_boot=0)
        m.update("reference", r)
        m.update("generated", g)
        ids = m.ids("generated")
        values.append(m.value_on(ids, [ids[0], ids[0], ids[5], ids[7]]))
    # independent formulation: FAD of the repeated clips' stacked frames
    pick = [ids[0], ids[0], ids[5], ids[7]]
    frames_r, frames_g = np.concatenate([r[i] for i in ids]), np.concatenate([g[i] for i in pick])
    direct = frechet_distance(frames_r.mean(0), np.cov(frames_r, rowvar=False), frames_g.mean(0), np.cov(frames_g, rowvar=False))
    for v in values:
        assert _rel(v, direct) <= 1e-10


def test_clip_seconds_crops_and_pads_before_every_model(tmp_path):
    """--clip-seconds 1: a 2.5 s clip is scored on its first second, a 0.5 s one zero-padded to 1 s,
    and the length is part of the model id (so the cache never mixes lengths)."""
    from metrics.extract import extract
    from metrics.models import ModelSpec

    sr = 16000
    rng = np.random.default_rng(3)
    long_wave = (0.1 * rng.standard_normal(int(2.5 * sr))).astype(np.float32)
    save_audio(tmp_path / "long.wav", long_wave, sr)
    save_audio(tmp_path / "first.wav", long_wave[:sr], sr)
    save_audio(tmp_path / "short.wav", long_wave[: sr // 2], sr)
    save_audio(tmp_path / "padded.wav", np.concatenate([long_wave[: sr // 2], np.zeros(sr // 2, np.float32)]), sr)
    fixed = ModelSpec("mel", seconds=1.0).build()
    assert fixed.id.endswith("clip_seconds=1") and fixed.id != get_embedder("mel").id
    out = extract(sorted(tmp_path.glob("*.wav")), {"m": fixed})["m"]
    np.testing.assert_array_equal(out["long"], out["first"])
    np.testing.assert_array_equal(out["short"], out["padded"])


def test_compare_adds_the_human_study_wins_to_the_store(dirs, tmp_path):
    """--ratings: each system's wins from the study database land in the store (validated, URL redacted)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from dashboard_fixtures import make_study_db
    from human_fixtures import SYSTEMS

    from benchmarks.harness import compare
    from human_eval.analysis import wins_by_system

    url = make_study_db(tmp_path / "study")
    want = wins_by_system(url)
    ref, a, b, caps = dirs
    names = [s for s in SYSTEMS if s in want][:2]
    doc = compare(dict(zip(names, (a, b))), ref, caps, tmp_path / "out", embedders=[], classifier=None, joint=None,
                  ratings=url, n_boot=0)
    store = read_store(tmp_path / "out")
    assert not store.problems
    for name in names:
        assert doc["systems"][name]["metrics"]["wins"]["value"] == want[name]
        assert store.data["systems"][name]["metrics"]["wins"]["value"] == want[name]
    assert store.data["metadata"]["ratings"]["systems"] == sorted(want)


def test_compare_scores_melody_adherence_against_the_prompts(dirs, tmp_path):
    """--melody-prompts: a system that keeps the prompt's melody scores higher on both melody metrics
    than one whose audio is buried in noise (pitch RCA and chroma cosine, paired by id)."""
    pytest.importorskip("torchcrepe", reason="the optional 'melody' extra (torchcrepe) is not installed")
    from benchmarks.harness import compare

    ref, a, b, caps = dirs
    doc = compare({"a": a, "b": b}, ref, caps, tmp_path / "out", embedders=[], classifier=None, joint=None,
                  melody_prompts=ref, n_boot=0)
    for key in ("melody_rca", "chroma_cosine", "melody_accuracy"):  # --melody-prompts: the three melody metrics
        va, vb = (doc["systems"][s]["metrics"][key]["value"] for s in ("a", "b"))
        assert 0.0 <= vb < va <= 1.0, (key, va, vb)


def test_no_paired_test_on_a_handful_of_clips():
    """Below MIN_PAIRS shared clips a bootstrap has a handful of distinct resamples: no p-value, a reason."""
    from metrics.run_statistics import MIN_PAIRS, SourceResult, paired_comparisons

    rng = np.random.default_rng(1)
    ids = [f"c{i}" for i in range(MIN_PAIRS - 1)]
    ref = {i: rng.standard_normal((5, 3)) for i in ids}
    states = {}
    for name, shift in (("a", 0.0), ("b", 3.0)):
        m = FAD(n_boot=50)
        m.update("reference", ref)
        m.update("generated", {i: rng.standard_normal((5, 3)) + shift for i in ids})
        states[name] = SourceResult(name, None, {}, states={"fad_x": m})
    (row,) = paired_comparisons(states, n_boot=50, seed=0)
    assert row["diff"] is None and "p_value" not in row and str(MIN_PAIRS) in row["reason"]


def test_bad_input_to_the_new_options_is_a_clear_error(dirs, tmp_path):
    """Unknown classifier or joint spec, a missing melody-prompt folder, a clip length below one model
    frame, a non-positive --clip-seconds: each a clear error naming the value or the path."""
    from click.testing import CliRunner

    from benchmarks.cli import main
    from benchmarks.harness import compare
    from metrics.classifier import ClassifierError
    from metrics.mcc import JointModelError, parse_joint_spec
    from metrics.models import ModelError, ModelSpec

    ref, a, _, caps = dirs
    with pytest.raises(ClassifierError, match=r"unknown classifier 'nope'"):
        compare({"a": a}, ref, caps, tmp_path / "x", embedders=[], classifier="nope", joint=None)
    with pytest.raises(JointModelError, match=r"unknown joint model 'nope.pt'"):
        parse_joint_spec("nope.pt")
    pytest.importorskip("torchcrepe", reason="the optional 'melody' extra (torchcrepe) is not installed")
    missing = tmp_path / "no-prompts"
    with pytest.raises(AudioError, match=rf"{missing}: directory not found \(melody prompts\)"):
        compare({"a": a}, ref, caps, tmp_path / "y", embedders=[], classifier=None, joint=None, melody_prompts=missing)
    with pytest.raises(ModelError, match=r"clip length 0.5 s is shorter than one frame of mel"):
        ModelSpec("mel", seconds=0.5).build()
    r = CliRunner().invoke(main, ["compare", "--system", f"a={a}", "--reference", str(ref), "--captions", str(caps),
                                  "--out", str(tmp_path / "z"), "--clip-seconds", "0"])
    assert r.exit_code == 2 and "--clip-seconds" in r.output

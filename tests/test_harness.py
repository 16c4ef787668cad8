"""The Table-1 harness end to end on a small corpus: pairing, bad clips, schema, cache reuse."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from benchmarks.cli import main
from benchmarks.harness import compare, parse_systems
from metrics.audio import AudioError, PairingError, load_dir, save_audio
from metrics.cache import EmbeddingCache
from metrics.store import read_store, validate_results
from musiclm_ref.data.degrade import degrade


@pytest.fixture(scope="module")
def systems(small_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("systems")
    clips = load_dir(small_corpus).clips
    for name, sev in (("light", 0.2), ("heavy", 0.8)):
        for c in clips:
            save_audio(root / name / f"{c.id}.wav", degrade(c.wave, c.sr, "noise", sev, seed=1), c.sr)
    return root


def run(small_corpus, systems, out, **kw):
    kw.setdefault("classifier", None)
    kw.setdefault("joint", None)
    return compare(
        {"light": systems / "light", "heavy": systems / "heavy"}, small_corpus, small_corpus / "captions.csv", out,
        embedders=("mel",), n_boot=100, **kw,
    )  # fmt: skip


def test_compare_writes_store_and_orders_fad(small_corpus, systems, tmp_path):
    data = run(small_corpus, systems, tmp_path / "r")
    assert validate_results(json.loads((tmp_path / "r/results.json").read_text())) == []
    light, heavy = (data["systems"][s]["metrics"]["fad_mel"] for s in ("light", "heavy"))
    assert 0 < light["value"] < heavy["value"]
    for m in (light, heavy):  # the interval always holds its estimate (metrics.intervals, BCa over both sides)
        assert m["ci95"][0] <= m["value"] <= m["ci95"][1] and m["ci95"][0] < m["ci95"][1]
    res = read_store(tmp_path / "r")
    assert res.problems == []
    assert len(res.per_clip) == 2 * 24 and set(res.per_clip["system"]) == {"light", "heavy"}
    assert res.per_clip["fad_mel"].notna().all()
    md = (tmp_path / "r/table.md").read_text()
    assert "FAD_mel" in md and "| light |" in md
    assert (tmp_path / "r/plots/fad_mel.png").stat().st_size > 1000
    meta = data["metadata"]
    assert meta["embedders"]["mel"].startswith("mel") and "numpy" in meta["versions"]


def test_pairing_by_id_and_missing_clips(small_corpus, systems, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(systems / "light", partial)
    (partial / "syn-s1234-4s-00003.wav").unlink()
    with pytest.raises(PairingError, match=r"system 'p' .*p lacks 1 id\(s\): syn-s1234-4s-00003"):
        compare({"p": partial}, small_corpus, small_corpus / "captions.csv", tmp_path / "x", embedders=("mel",), classifier=None, joint=None)
    data = compare({"p": partial}, small_corpus, small_corpus / "captions.csv", tmp_path / "y", embedders=("mel",),
                   classifier=None, joint=None, on_error="skip", n_boot=50)  # fmt: skip
    assert data["systems"]["p"]["missing_ids"] == ["syn-s1234-4s-00003"] and data["systems"]["p"]["n_clips"] == 23


def test_corrupt_clip_error_or_reported_skip(small_corpus, systems, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(systems / "light", bad)
    (bad / "syn-s1234-4s-00005.wav").write_bytes(b"garbage")
    with pytest.raises(AudioError, match=r"syn-s1234-4s-00005\.wav: unreadable or corrupt audio"):
        compare({"b": bad}, small_corpus, small_corpus / "captions.csv", tmp_path / "x", embedders=("mel",), classifier=None, joint=None)
    data = compare({"b": bad}, small_corpus, small_corpus / "captions.csv", tmp_path / "y", embedders=("mel",),
                   classifier=None, joint=None, on_error="skip", n_boot=50)  # fmt: skip
    skipped = data["systems"]["b"]["skipped"]
    assert len(skipped) == 1 and skipped[0]["path"].endswith("syn-s1234-4s-00005.wav")
    assert "syn-s1234-4s-00005" in data["systems"]["b"]["missing_ids"]


def test_warm_cache_reuses_embeddings(small_corpus, systems, tmp_path):
    cold = EmbeddingCache(tmp_path / "cache")
    run(small_corpus, systems, tmp_path / "a", cache=cold)
    assert cold.misses == 3 * 24 and cold.hits == 0
    warm = EmbeddingCache(tmp_path / "cache")
    data = run(small_corpus, systems, tmp_path / "b", cache=warm)
    assert warm.hits == 3 * 24 and warm.misses == 0
    assert data["metadata"]["cache"]["hits"] == 72


def test_parse_systems_errors():
    assert parse_systems(["a=x", "b=y"]).keys() == {"a", "b"}
    for bad, msg in ((["a"], "NAME=DIR"), (["a=x", "a=y"], "given twice"), (["ground truth=x"], "reserved"), ([], "at least one")):
        with pytest.raises(ValueError, match=msg):
            parse_systems(bad)


def test_compare_cli(small_corpus, systems, tmp_path):
    res = CliRunner().invoke(main, [
        "compare", "--system", f"light={systems / 'light'}", "--reference", str(small_corpus),
        "--captions", str(small_corpus / "captions.csv"), "--out", str(tmp_path / "c"), "--embedders", "mel,vggish",
        "--classifier", "none", "--joint", "none", "--skip-unavailable", "--no-cache",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "light" in res.output and "results written to" in res.output
    per_clip = pd.read_csv(tmp_path / "c/per_clip.csv")
    assert len(per_clip) == 24


def test_table_marks_a_system_significantly_better_than_the_next():
    """† where the paired test (Holm) says a row beats the next one, in the metric's own direction."""
    from benchmarks.report import BETTER_MARK, table_frame

    def m(v, **kw):
        return {"value": v, "ci95": [v - 1, v + 1], **kw}

    data = {"systems": {"a": {"metrics": {"fad_mel": m(10.0), "kld_audiocraft": m(0.5, number="kld"), "mcc": m(0.3)}},
                        "b": {"metrics": {"fad_mel": m(20.0), "kld_audiocraft": m(0.6, number="kld"), "mcc": m(0.4)}},
                        "c": {"metrics": {"fad_mel": m(30.0), "kld_audiocraft": m(0.7, number="kld"), "mcc": m(0.1)}}},
            "metadata": {"pairwise": [
                {"metric": "fad_mel", "system_a": "a", "system_b": "b", "diff": -10.0, "p_holm": 0.01},  # a better
                {"metric": "fad_mel", "system_a": "b", "system_b": "c", "diff": -10.0, "p_holm": 0.20},  # not significant
                {"metric": "mcc", "system_a": "a", "system_b": "b", "diff": -0.1, "p_holm": 0.001},  # b better: no mark on a
                {"metric": "mcc", "system_a": "c", "system_b": "b", "diff": -0.3, "p_holm": 0.001},  # b beats c (next row)
                {"metric": "kld_audiocraft", "system_a": "a", "system_b": "b", "diff": -0.1, "p_holm": 0.04}]}}
    df = table_frame(data).set_index("System")
    assert list(df.columns) == ["FAD_mel ↓", "KLD (audiocraft) ↓", "MCC ↑"]
    marked = {(s, c) for s in df.index for c in df.columns if df.loc[s, c].endswith(BETTER_MARK)}
    assert marked == {("a", "FAD_mel ↓"), ("b", "MCC ↑"), ("a", "KLD (audiocraft) ↓")}


def test_dashboard_lists_the_stores_paired_comparisons(tmp_path):
    """The leaderboard page's paired table reads the store's tests back exactly (Holm p < 0.05 = significant)."""
    from dashboards.leaderboard import PAIRWISE_COLUMNS, pairwise
    from dashboards.runs import load_run
    from metrics.result import MetricResult
    from metrics.store import write_store

    rows = [{"metric": "fad_mel", "system_a": "a", "system_b": "b", "diff": -1.5, "ci95": [-2.0, -1.0],
             "p_value": 0.004, "p_holm": 0.012, "n_pairs": 20, "method": "clip-paired bootstrap (bca)"},
            {"metric": "mcc", "system_a": "a", "system_b": "b", "diff": 0.01, "ci95": [-0.05, 0.07],
             "p_value": 0.6, "p_holm": 0.6, "n_pairs": 20, "method": "clip-paired bootstrap (bca)"}]
    systems = {s: {"fad_mel": MetricResult("fad_mel", v, (v - 1, v + 1)), "mcc": MetricResult("mcc", 0.2, (0.1, 0.3))}
               for s, v in (("a", 10.0), ("b", 11.5))}
    write_store(tmp_path / "s", "compare", systems=systems, metadata={"pairwise": rows})
    table = pairwise([load_run(tmp_path / "s")]).set_index("metric")
    assert table.loc["fad_mel", "diff"] == -1.5 and bool(table.loc["fad_mel", "significant"])
    assert table.loc["mcc", "p (Holm)"] == 0.6 and not bool(table.loc["mcc", "significant"])
    assert pairwise([]).columns.tolist() == PAIRWISE_COLUMNS

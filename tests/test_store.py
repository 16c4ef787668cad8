"""The results store and the shared I/O helpers: round trips from another cwd, standard JSON, errors.

Expected values are written down here (or come from an independent formulation: SQLAlchemy's URL
renderer, ``hashlib`` over the whole file, ``os.path``), never read back from the artifact under test.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metrics.audio import save_audio
from metrics.io import (
    JSONFormatError,
    atomic_write_text,
    ci_list,
    dumps_json,
    file_sha256,
    format_ci,
    format_value,
    loads_json,
    redact_url,
    to_jsonable,
)
from metrics.result import MetricResult
from metrics.store import (
    PER_CLIP_FILE,
    RESULTS_FILE,
    SCHEMA_VERSION,
    ResultsError,
    add_metrics,
    read_store,
    write_store,
)

IDS = ["ytA", "ytB", "ytC"]


def strict_loads(text: str):
    """A parser that rejects the NaN/Infinity tokens (what browsers and jq do)."""

    def reject(token):
        raise ValueError(f"non-standard token {token}")

    return json.loads(text, parse_constant=reject)


def tone(seed: int, sr: int = 8000) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(sr // 4)).astype(np.float32)


@pytest.fixture
def demo_like(tmp_path, monkeypatch):
    """The demo's layout: audio in sibling folders of the store, paths given relative to the cwd."""
    root = tmp_path / "work"
    for i, y in enumerate(IDS):
        save_audio(root / "results/demo/reference" / f"{y}.wav", tone(i), 8000)
        save_audio(root / "results/demo/systems/sys" / f"{y}.wav", tone(10 + i), 8000)
    monkeypatch.chdir(root)
    per_clip = pd.DataFrame({
        "system": "sys", "ytid": IDS, "caption": ["a", "b", "c"],
        "audio_path": [f"results/demo/systems/sys/{y}.wav" for y in IDS],
        "reference_path": [str(root / "results/demo/reference" / f"{y}.wav") for y in IDS],
    })
    mcc = MetricResult("mcc", 0.25, (0.1, 0.4), {"ytA": 0.1, "ytB": 0.25, "ytC": 0.4}, {"n_pairs": 3})
    kld = MetricResult("kld", float("nan"), None, {"ytA": 1.0, "ytB": float("nan"), "ytC": 2.0},
                       {"reason": "classifier saw silence on ytB"})
    doc = write_store(
        "results/demo/results", "compare",
        {"sys": {"dir": "results/demo/systems/sys", "n_clips": 3, "missing_ids": [],
                 "skipped": [{"path": "results/demo/systems/sys/bad.wav", "reason": "NaN samples"}],
                 "metrics": {"mcc": mcc, "kld": kld, "fad_mel": {"value": float("inf"), "ci95": [1.0, float("nan")]}}}},
        per_clip=per_clip, reference={"dir": "results/demo/reference", "n_clips": 3},
        metadata={"seeds": {"bootstrap": 0}, "weird": np.float32("nan")},
    )
    return root, root / "results/demo/results", doc


def test_round_trip_from_another_cwd(demo_like, tmp_path, monkeypatch):
    root, store, doc = demo_like
    text = (store / RESULTS_FILE).read_text()
    assert strict_loads(text) == doc and doc["schema_version"] == SCHEMA_VERSION == 2
    sysd = doc["systems"]["sys"]
    # every path in the store is relative to the store directory
    assert sysd["dir"] == "../systems/sys" and doc["reference"]["dir"] == "../reference"
    assert sysd["skipped"] == [{"path": "../systems/sys/bad.wav", "reason": "NaN samples"}]
    on_disk = pd.read_csv(store / PER_CLIP_FILE)
    assert list(on_disk["audio_path"]) == [f"../systems/sys/{y}.wav" for y in IDS]
    assert list(on_disk["reference_path"]) == [f"../reference/{y}.wav" for y in IDS]
    assert list(pd.read_parquet(store / "per_clip.parquet")["audio_path"]) == list(on_disk["audio_path"])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = read_store(os.path.relpath(store, elsewhere))
    assert res.problems == [] and res.kind == "compare" and res.version == 2
    pc = res.per_clip.set_index("ytid")
    for y in IDS:
        for col, folder in (("audio_path", "systems/sys"), ("reference_path", "reference")):
            p = Path(pc.loc[y, col])
            assert p.is_absolute() and p.is_file()
            assert p.resolve() == (root / "results/demo" / folder / f"{y}.wav").resolve()
    assert res.resolve(sysd["dir"]).resolve() == (root / "results/demo/systems/sys").resolve()
    # per-clip values of the MetricResults became columns, NaN as a blank cell
    assert pc["mcc"].tolist() == [0.1, 0.25, 0.4]
    assert pc.loc["ytA", "kld"] == 1.0 and math.isnan(pc.loc["ytB", "kld"]) and pc.loc["ytC", "kld"] == 2.0


def test_undefined_values_are_null_with_a_reason(demo_like):
    _, store, _ = demo_like
    doc = strict_loads((store / RESULTS_FILE).read_text())
    m = doc["systems"]["sys"]["metrics"]
    assert m["mcc"] == {"value": 0.25, "ci95": [0.1, 0.4], "n_pairs": 3, "n": 3}
    assert m["kld"]["value"] is None and m["kld"]["reason"] == "classifier saw silence on ytB"
    assert m["fad_mel"]["value"] is None and m["fad_mel"]["reason"] == "was +Infinity"
    assert m["fad_mel"]["ci95"] is None and m["fad_mel"]["ci95_reason"] == "was NaN (undefined)"
    assert doc["metadata"]["weird"] is None and doc["metadata"]["weird_reason"] == "was NaN (undefined)"


def test_to_jsonable_conventions():
    assert to_jsonable({"value": np.float64("nan"), "reason": None}) == {"value": None, "reason": "was NaN (undefined)"}
    assert to_jsonable({"reason": "too few clips", "value": float("nan")}) == {"reason": "too few clips", "value": None}
    assert to_jsonable({"x": -np.inf, "l": [1.0, float("nan")], np.int64(3): np.arange(2), "p": Path("a/b")}) == {
        "x": None, "x_reason": "was -Infinity", "l": [1.0, None], "3": [0, 1], "p": "a/b"}
    assert to_jsonable({"s": {3, 1}, "t": (np.bool_(True), np.float32(0.5))}) == {"s": [1, 3], "t": [True, 0.5]}
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        dumps_json({"a": object()})
    strict_loads(dumps_json({"a": [float("inf")], "value": float("nan")}))


def test_loads_json_rejects_nonstandard_tokens_naming_the_file():
    with pytest.raises(JSONFormatError, match=r"f\.json: non-standard JSON token NaN"):
        loads_json('{"a": NaN}', "f.json")
    with pytest.raises(JSONFormatError, match=r"f\.json: not valid JSON"):
        loads_json("{", "f.json")
    assert loads_json('{"a": Infinity}', "f.json", allow_nonstandard=True) == {"a": None}


def test_version_1_store_is_still_read(tmp_path, monkeypatch):
    """v1 stores (the old harness) wrote cwd-relative paths and NaN tokens; both are handled and reported."""
    save_audio(tmp_path / "audio/ytA.wav", tone(0), 8000)
    store = tmp_path / "old"
    store.mkdir()
    (store / RESULTS_FILE).write_text('{"schema_version": 1, "kind": "compare", "systems": {"s": {"metrics": '
                                      '{"kld": {"value": NaN, "ci95": null}, "mcc": {"value": 0.5, "ci95": [0.4, 0.6]}}}}}')
    pd.DataFrame({"system": ["s"], "ytid": ["ytA"], "audio_path": ["audio/ytA.wav"]}).to_csv(store / PER_CLIP_FILE, index=False)
    monkeypatch.chdir(tmp_path)
    res = read_store(store)
    assert res.problems == [f"{store / RESULTS_FILE}: non-standard JSON token(s) NaN read as null"]
    assert res.metric("s", "kld")["value"] is None and res.metric("s", "mcc")["value"] == 0.5
    assert Path(res.per_clip.loc[0, "audio_path"]) == tmp_path / "audio/ytA.wav"


@pytest.mark.parametrize("text, message", [
    ("{oops", "not valid JSON"),
    ('{"schema_version": 2, "kind": "fad", "systems": {}}', "no systems"),
    ("[1]", "top level must be an object"),
])
def test_unusable_store_raises_naming_the_file(tmp_path, text, message):
    (tmp_path / RESULTS_FILE).write_text(text)
    with pytest.raises(ResultsError, match=message) as e:
        read_store(tmp_path)
    assert str(tmp_path / RESULTS_FILE) in str(e.value)
    with pytest.raises(ResultsError, match="results directory not found"):
        read_store(tmp_path / "absent")
    (tmp_path / RESULTS_FILE).unlink()
    with pytest.raises(ResultsError, match=f"{tmp_path}: no results.json"):
        read_store(tmp_path)


def test_schema_problems_are_listed_on_read(tmp_path):
    doc = {"schema_version": 2, "systems": {"s": {"metrics": {"mcc": {"value": None}, "kld": {"value": "big"}}}}}
    (tmp_path / RESULTS_FILE).write_text(json.dumps(doc))
    f = tmp_path / RESULTS_FILE
    assert read_store(tmp_path).problems == [
        f"{f}: 'kind' must name the command that wrote the store",
        f"{f}: systems.s.metrics.mcc.value is null without a 'reason'",
        f"{f}: systems.s.metrics.kld.value must be a number or null, got 'big'",
        f"{tmp_path}: no per_clip.csv (per-clip views unavailable)",
    ]


def test_writer_refuses_bad_input_and_writes_nothing(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(ResultsError, match="kind must name"):
        write_store(out, "", {"a": {"mcc": 0.5}})
    with pytest.raises(ResultsError, match="no systems"):
        write_store(out, "fad", {})
    with pytest.raises(ResultsError, match=r"metric 'mcc' must be a MetricResult.*got str"):
        write_store(out, "fad", {"a": {"mcc": "high"}})
    with pytest.raises(ResultsError, match=r"ci95 must be \(low, high\)"):
        write_store(out, "fad", {"a": {"mcc": {"value": 0.5, "ci95": [1, 2, 3]}}})
    with pytest.raises(ResultsError, match="per_clip needs the column"):
        write_store(out, "fad", {"a": {"mcc": 0.5}}, per_clip=pd.DataFrame({"ytid": ["x"]}))
    with pytest.raises(ResultsError, match="must be a relative path inside the store"):
        write_store(out, "fad", {"a": {"mcc": 0.5}}, extra_files={"../escape.txt": "x"})
    assert not (out / RESULTS_FILE).exists()


def test_rewrite_removes_stale_tables_and_writes_extras(tmp_path):
    out = tmp_path / "s"
    write_store(out, "compare", {"a": {"mcc": MetricResult("mcc", 0.5, None, {"x": 0.5})}},
                pairwise=pd.DataFrame({"system_a": ["a"], "system_b": ["b"], "p": [0.01]}))
    assert (out / PER_CLIP_FILE).is_file() and (out / "pairwise.csv").is_file()
    matches = pd.DataFrame({"generated_id": ["x"], "generated_path": [str(tmp_path / "g/x.wav")]})
    doc = write_store(out, "memorization", {"gen": {"exact_rate": 0.0}},
                      extra_files={"memorization/matches.csv": matches, "memorization/summary.json": {"tau": float("nan")},
                                   "notes.txt": "hello\n", "blob.bin": b"\x00\x01"})
    assert not (out / PER_CLIP_FILE).exists() and not (out / "pairwise.csv").exists()
    assert doc["files"] == ["blob.bin", "memorization/matches.csv", "memorization/summary.json", "notes.txt"]
    assert pd.read_csv(out / "memorization/matches.csv")["generated_path"].tolist() == ["../g/x.wav"]
    assert strict_loads((out / "memorization/summary.json").read_text()) == {"tau": None, "tau_reason": "was NaN (undefined)"}
    assert (out / "blob.bin").read_bytes() == b"\x00\x01" and (out / "notes.txt").read_text() == "hello\n"
    assert read_store(out).problems == [f"{out}: no per_clip.csv (per-clip views unavailable)"]


def test_store_behind_a_symlink_keeps_paths_valid(tmp_path, monkeypatch):
    """`..` from a symlinked store must lead where the OS goes: paths are made from resolved directories."""
    save_audio(tmp_path / "audio/ytA.wav", tone(0), 8000)
    (tmp_path / "real/deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real/deep")
    write_store(tmp_path / "link", "fad", {"s": {"fad_mel": 1.0}},
                per_clip=pd.DataFrame({"system": ["s"], "ytid": ["ytA"], "audio_path": [str(tmp_path / "audio/ytA.wav")]}))
    monkeypatch.chdir(tmp_path / "real")
    assert Path(read_store(tmp_path / "link").per_clip.loc[0, "audio_path"]).is_file()


def test_path_on_another_drive_is_stored_absolute(tmp_path, monkeypatch):
    """Where no relative path exists (Windows: another drive, relpath raises ValueError) the store keeps it absolute."""
    save_audio(tmp_path / "audio/ytA.wav", tone(0), 8000)

    def no_relative_path(path, start=None):
        raise ValueError("path is on mount 'D:', start on mount 'C:'")

    monkeypatch.setattr(os.path, "relpath", no_relative_path)
    write_store(tmp_path / "s", "fad", {"s": {"fad_mel": 1.0}},
                per_clip=pd.DataFrame({"system": ["s"], "ytid": ["ytA"], "audio_path": [str(tmp_path / "audio/ytA.wav")]}))
    monkeypatch.undo()
    assert pd.read_csv(tmp_path / "s" / PER_CLIP_FILE)["audio_path"].tolist() == [str((tmp_path / "audio/ytA.wav").resolve())]
    assert Path(read_store(tmp_path / "s").per_clip.loc[0, "audio_path"]).is_file()


def test_full_form_systems_keep_their_creation_time_and_paths_relative_to_the_store(tmp_path, monkeypatch):
    save_audio(tmp_path / "ref/ytA.wav", tone(0), 8000)
    monkeypatch.chdir(tmp_path)
    write_store("out", "compare", {"s": {"dir": "ref", "metrics": {"mcc": {"value": 0.5, "ci95": (0.4, 0.6)}}}},
                per_clip=pd.DataFrame({"system": ["s"], "ytid": ["ytA"], "audio_path": ["ref/ytA.wav"]}),
                reference={"dir": "ref", "n_clips": 1}, created="2025-01-01T00:00:00Z")
    doc = strict_loads(Path("out/results.json").read_text())
    assert doc["created"] == "2025-01-01T00:00:00Z" and doc["reference"]["dir"] == "../ref"
    assert doc["systems"]["s"]["metrics"]["mcc"] == {"value": 0.5, "ci95": [0.4, 0.6]}


def test_report_reads_the_store(demo_like):
    from benchmarks.report import write_report

    _, store, _ = demo_like
    written = write_report(store)
    md = (store / "table.md").read_text()
    assert "| sys | — | — | 0.250 [0.100, 0.400] |" in md  # FAD_mel and KLD undefined, MCC with its CI
    assert store / "plots" / "mcc.png" in written


def test_add_metrics_extends_a_store_in_place(demo_like, tmp_path, monkeypatch):
    _, store, before = demo_like
    monkeypatch.chdir(tmp_path)  # another cwd: paths already in the store must stay valid
    wins = MetricResult("wins", 7, None, {"ytA": 3.0, "ytB": 4.0})
    doc = add_metrics(store, {"sys": {"wins": wins, "mcc": {"value": float("nan"), "ci95": None}}},
                      metadata={"ratings": {"db": "sqlite:///s.db"}})
    after = strict_loads((store / RESULTS_FILE).read_text())
    assert after == doc and after["systems"]["sys"]["dir"] == before["systems"]["sys"]["dir"] == "../systems/sys"
    assert after["systems"]["sys"]["metrics"]["wins"] == {"value": 7, "ci95": None, "n": 2}
    assert after["systems"]["sys"]["metrics"]["mcc"] == {"value": None, "ci95": None, "reason": "was NaN (undefined)"}
    assert after["metadata"]["ratings"] == {"db": "sqlite:///s.db"} and after["metadata"]["seeds"] == {"bootstrap": 0}
    res = read_store(store)
    pc = res.per_clip.set_index("ytid")
    assert pc["wins"].tolist()[:2] == [3.0, 4.0] and math.isnan(pc.loc["ytC", "wins"])
    assert all(Path(p).is_file() for p in res.per_clip["audio_path"])
    assert pd.read_csv(store / PER_CLIP_FILE)["audio_path"].tolist() == [f"../systems/sys/{y}.wav" for y in IDS]
    with pytest.raises(ResultsError, match="no system 'other'"):
        add_metrics(store, {"other": {"wins": 1}})


def test_file_sha256_equals_hashlib_over_the_whole_file(tmp_path):
    data = np.random.default_rng(0).bytes(3 << 20)  # spans several 1 MiB blocks
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    f = atomic_write_text(tmp_path / "a.txt", "old\r\n")
    assert f.read_bytes() == b"old\r\n"

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(f, "new")
    assert f.read_bytes() == b"old\r\n" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://me:s3cret@db:5432/study",
    "postgresql://me:p%40ss@db/study?sslmode=require",
    "mysql://user:pw@host/db",
    "sqlite:////tmp/study.db",
    "postgresql://db/study",
])
def test_redact_url_matches_sqlalchemy(url):
    from sqlalchemy.engine import make_url

    assert redact_url(url) == make_url(url).render_as_string(hide_password=True)


def test_redact_url_hides_a_password_with_an_unencoded_at_sign():
    # SQLAlchemy's parser stops the password at the first "@" and shows the rest; ours hides all of it
    assert redact_url("postgresql://me:p@ss@db:5432/st") == "postgresql://me:***@db:5432/st"
    assert redact_url("/data/study@2024.db") == "/data/study@2024.db"


def test_format_value_and_ci():
    assert format_value(4.123456) == "4.123" and format_value(8e-05) == "8e-05"
    assert format_value(None) == "—" and format_value(float("nan")) == "—" and format_value(12) == "12"
    assert format_value(1.23456, 3, "f") == "1.235" and format_value("n/a") == "n/a"
    assert format_ci([3.5, 4.9]) == "[3.5, 4.9]" and format_ci((0.1, 0.25), 3, "f") == "[0.100, 0.250]"
    assert format_ci(None) == "—" and format_ci([1.0, None]) == "—" and format_ci("wide") == "—"
    assert ci_list(None) is None and ci_list((np.float32(0.5), 2)) == [0.5, 2.0] and ci_list((1, float("inf"))) == [1.0, None]

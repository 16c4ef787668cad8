"""Bad input of every kind ends in one clear error naming the file and the problem (issue 27, item 4).

Captions CSVs, results stores, study databases, audio folders and checkpoint flags: through the CLI where a
command is the user's entry (exit 1, one ``Error:`` line naming the file, no traceback), through the
library otherwise (an ``EvalError`` whose message names the file). With ``--on-error skip`` a bad clip is
left out and reported instead. Each case is one a user meets: a copied CSV with a stray comma, a store
from a newer musiclm-eval, a symlink loop in a clip folder, the MuLan checkpoint given as the classifier.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.cli import main
from benchmarks.report import write_report
from dashboards.runs import load_run
from human_eval import db
from metrics.audio import AudioError, load_dir, save_audio, scan_dir
from metrics.errors import EvalError
from metrics.musiccaps import CaptionsError, captions_for, join_audio, load_captions
from metrics.store import ResultsError, read_store

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "musiclm_ref" / "checkpoints"
CLASSIFIER = ROOT / "metrics" / "checkpoints" / "classifier-tiny.pt"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(res, *names: object) -> str:
    """Exit 1, no traceback, the last line is the one ``Error:`` line, and it names every one of ``names``."""
    assert res.exit_code == 1, (res.exit_code, res.output, res.exception)
    assert isinstance(res.exception, SystemExit), res.exception  # a ClickException, not an escaped exception
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and res.output.rstrip().endswith(errors[0]), res.output
    for name in names:
        assert str(name) in errors[0], (name, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """gen/, ref/ and train/ with the same three 6 s noise clips' ids (c0, c1, c2), and their captions."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    for d in ("gen", "ref", "train"):
        for i in range(3):
            save_audio(root / d / f"c{i}.wav", rng.uniform(-0.3, 0.3, 16000 * 6), 16000)
    (root / "captions.csv").write_text("ytid,caption\nc0,calm piano\nc1,loud drums\nc2,a slow waltz\n")
    shutil.copy(root / "captions.csv", root / "train" / "captions.csv")
    return root


# ---------------------------------------------------------------------------------------------
# captions CSVs

HEADER = "ytid,caption\n"


@pytest.mark.parametrize("content, problem", [
    (b"ytid,text\nx,a\n", "missing column(s) caption"),
    (b"ytid,caption\nx,a\ny,b\nx,c\n", "duplicate ytid(s): x"),
    (b"ytid,caption\nx,a\n y ,b\ny,c\n", "duplicate ytid(s): y"),  # " y " is y: it names the same file
    (b"ytid,caption\nx,a,pop\n", "a row has more fields than the header"),  # was: ytid silently became the index
    (b"ytid,caption\n,a\n", "row 0: empty ytid"),
    (b"ytid,caption\nx,a\ny\n", "row 1: empty caption"),
    (b'ytid,caption\nx,"an unterminated\n', "unreadable CSV"),
    ("ytid,caption\nx,café\n".encode("latin-1"), "unreadable CSV (UnicodeDecodeError"),
    (b"", "unreadable CSV"),
    (b"ytid,caption\n", "no rows"),
    (b"ytid,start_s,caption\nx,ten,a\n", "row 0 (start_s): not a number: 'ten'"),
])
def test_malformed_captions_csv_is_an_error_naming_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "captions.csv"
    path.write_bytes(content)
    with pytest.raises(CaptionsError) as e:
        load_captions(path, require_all_columns=False)
    assert str(e.value).startswith(f"{path}: ") and problem in str(e.value)


@pytest.mark.parametrize("content", [
    b"\xef\xbb\xbfytid,caption\r\nx,calm piano\r\ny,\"two\r\nlines, one comma\"\r\n",  # BOM + CRLF (Excel's export)
    b"ytid,caption\nx,calm piano\ny,\"two\nlines, one comma\"\n",
    b"ytid,caption\r\nx,calm piano\r\ny,\"two\nlines, one comma\"",  # no final newline
])
def test_bom_crlf_and_quoted_newlines_parse_to_the_same_captions(tmp_path, content):
    path = tmp_path / "captions.csv"
    path.write_bytes(content)
    caps = load_captions(path, require_all_columns=False)
    assert list(caps.columns[:2]) == ["ytid", "caption"]  # the BOM is not part of the first column's name
    assert caps["caption"].to_dict() == {"x": "calm piano", "y": "two\nlines, one comma"}


def test_captions_that_match_no_audio_are_reported_or_refused(clips, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text(HEADER + "c0,calm piano\nzz1,a\nzz2,b\n")
    join = join_audio(load_captions(other, require_all_columns=False), clips / "gen")
    assert join.ids == ["c0"] and join.missing == ["zz1", "zz2"] and join.extra == ["c1", "c2"]
    with pytest.raises(CaptionsError, match=rf"^{other}: no caption for 2 clip id\(s\): c1, c2 "):
        captions_for(other, scan_dir(clips / "gen"))
    assert captions_for(clips / "captions.csv", ["c0", "c2"])["c2"] == "a slow waltz"


def test_score_refuses_captions_without_the_clips_before_any_model(clips, tmp_path, monkeypatch):
    other = tmp_path / "other.csv"
    other.write_text(HEADER + "zz1,a\n")

    def no_model(*a, **k):  # the check must come first: a model built here means minutes wasted on a big set
        raise AssertionError("a model was built before the captions were checked")

    monkeypatch.setattr("metrics.commands.evaluate", no_model)
    res = cli("score", "--generated", clips / "gen", "--reference", clips / "ref", "--captions", other,
              "--embedders", "", "--classifier", "none", "--bootstrap", "0", "--no-cache")
    assert "no caption for 3 clip id(s): c0, c1, c2" in assert_one_line_error(res, other)


def test_cli_names_a_malformed_captions_csv(clips, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "c0,calm piano,extra\n")
    res = cli("score", "--generated", clips / "gen", "--reference", clips / "ref", "--captions", bad,
              "--embedders", "", "--classifier", "none", "--bootstrap", "0", "--no-cache")
    assert "more fields than the header" in assert_one_line_error(res, bad)
    res = cli("musiccaps", "prepare", "--captions", bad, "--audio", clips / "gen", "--clips", tmp_path / "prep")
    assert_one_line_error(res, bad)


# ---------------------------------------------------------------------------------------------
# results stores (dashboard, report, compare --ratings)

GOOD = {"schema_version": 2, "kind": "compare", "files": ["per_clip.csv", "pairwise.csv"],
        "systems": {"a": {"metrics": {"fad_mel": {"value": 1.5, "ci95": [1.0, 2.0], "higher_is_better": False}}}}}


def store(tmp_path: Path, doc: object | str, per_clip: str | None = "ytid,system,fad_mel\nx,a,1.5\n",
          pairwise: bool = True) -> Path:
    d = tmp_path / "store"
    d.mkdir(exist_ok=True)
    (d / "results.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    if per_clip is not None:
        (d / "per_clip.csv").write_text(per_clip)
    if pairwise:
        (d / "pairwise.csv").write_text("metric,system_a,system_b\n")
    return d


def test_a_complete_store_reads_without_problems(tmp_path):
    res = read_store(store(tmp_path, GOOD))
    assert res.problems == [] and res.per_clip is not None and res.table().loc["a", "fad_mel"] == 1.5


@pytest.mark.parametrize("doc, problem", [
    (json.dumps(GOOD)[:60], "not valid JSON"),  # a truncated write (a copy cut short)
    ("", "not valid JSON"),
    ({**GOOD, "schema_version": 3}, "schema_version 3 is newer than this reader (2)"),
    ([GOOD], "top level must be an object"),
])
def test_unusable_store_is_an_error_for_every_reader(tmp_path, doc, problem):
    d = store(tmp_path, doc)
    f = d / "results.json"
    with pytest.raises(ResultsError, match=rf"^{re.escape(str(f))}: .*{re.escape(problem)}"):
        read_store(d)
    with pytest.raises(ResultsError, match=re.escape(problem)):  # the Table-1 report
        write_report(d)
    assert not (d / "table.md").exists()
    run = load_run(d)  # the dashboard: the run is listed with why it shows nothing
    assert run.results is None and any(str(f) in p and problem in p for p in run.problems), run.problems


def test_missing_per_clip_files_are_named_and_the_rest_still_reads(tmp_path):
    d = store(tmp_path, GOOD, per_clip=None, pairwise=False)
    res = read_store(d)
    assert res.per_clip is None and res.table().loc["a", "fad_mel"] == 1.5
    assert f"{d}: no per_clip.csv (per-clip views unavailable)" in res.problems
    assert any(p.startswith(f"{d / 'pairwise.csv'}: listed in results.json but missing") for p in res.problems)
    d = store(tmp_path, GOOD, per_clip="clip,value\nx,1\n")
    res = read_store(d)
    assert res.per_clip is None
    assert f"{d / 'per_clip.csv'}: no 'system', 'ytid' column (per-clip views unavailable)" in res.problems
    write_report(d)  # a store without per-clip rows still gives Table 1
    assert "1.500" in (d / "table.md").read_text()


@pytest.mark.parametrize("metric, problem", [
    ({"value": "1.5"}, "value must be a number or null, got '1.5'"),
    ({"value": 1.5, "ci95": [1.0, "2.0"]}, "ci95 must be [low, high]"),
    ({"value": 1.5, "ci95": [1.0]}, "ci95 must be [low, high]"),
])
def test_report_refuses_a_malformed_entry_instead_of_printing_it(tmp_path, metric, problem):
    d = store(tmp_path, {**GOOD, "systems": {"a": {"metrics": {"fad_mel": metric}}}})
    with pytest.raises(ResultsError) as e:
        write_report(d)
    assert str(d / "results.json") in str(e.value) and problem in str(e.value)
    assert not (d / "table.md").exists()
    assert any(problem in p for p in read_store(d).problems)  # the dashboard still opens it and says why


def test_an_unreadable_results_file_is_a_results_error(tmp_path, monkeypatch):
    d = store(tmp_path, GOOD)
    real = Path.read_text

    def read_text(self, *a, **k):
        if self.name == "results.json":
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)  # tests run as root: chmod 000 would not stop a read
    with pytest.raises(ResultsError, match=rf"^{d / 'results.json'}: cannot read \(Permission denied\)"):
        read_store(d)


# ---------------------------------------------------------------------------------------------
# study databases

def study_db(tmp_path: Path, version: int | None = db.SCHEMA_VERSION) -> Path:
    path = tmp_path / "study.db"
    db.init_db(str(path)).dispose()
    if version != db.SCHEMA_VERSION:
        with sqlite3.connect(path) as c:
            c.execute("UPDATE schema_info SET version = ?", (version,))
    return path


@pytest.mark.parametrize("version", [1, db.SCHEMA_VERSION + 1])
def test_study_database_of_another_schema_version(tmp_path, version):
    path = study_db(tmp_path, version)
    res = cli("rate", "analyze", "--db", path, "--bootstrap", "0")
    assert f"schema version [{version}]; this musiclm-eval reads version {db.SCHEMA_VERSION}" in assert_one_line_error(res, path)


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "study.db"
    path.write_bytes(b"not an SQLite file " * 64)
    res = cli("rate", "analyze", "--db", path, "--bootstrap", "0")
    assert "cannot read the study database (file is not a database)" in assert_one_line_error(res, path)
    with pytest.raises(db.StudyDBError, match="nosuchdriver://h/d: not a usable database URL"):
        db.open_db("nosuchdriver://h/d")


def test_compare_ratings_of_another_version_fails_before_scoring(clips, tmp_path, monkeypatch):
    path = study_db(tmp_path, 1)

    def no_scoring(*a, **k):
        raise AssertionError("compare scored the systems before checking --ratings")

    monkeypatch.setattr("metrics.evaluate.evaluate", no_scoring)
    res = cli("compare", "--system", f"g={clips / 'gen'}", "--reference", clips / "ref", "--captions", clips / "captions.csv",
              "--out", tmp_path / "out", "--embedders", "mel", "--classifier", "none", "--joint", "none",
              "--ratings", path, "--bootstrap", "0", "--no-cache")
    assert "schema version [1]" in assert_one_line_error(res, path)
    assert not (tmp_path / "out" / "results.json").exists()


# ---------------------------------------------------------------------------------------------
# audio folders

def bad_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """One good clip and one of each bad kind; → (folder, file name → the problem its error must say)."""
    d = tmp_path / "clips"
    save_audio(d / "good.wav", np.random.default_rng(1).uniform(-0.3, 0.3, 16000 * 2), 16000)
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("these are not the samples you are looking for\n" * 20)
    (d / "folder.flac").mkdir()
    os.symlink(d / "loop_b.wav", d / "loop_a.wav")
    os.symlink(d / "loop_a.wav", d / "loop_b.wav")
    os.symlink(d / "gone.wav", d / "dangling.ogg")
    os.symlink(d, d / "self")  # a loop back to the folder, not named like audio: not a clip, not scanned
    return d, {"empty.wav": "empty file (0 bytes)", "text.wav": "unreadable or corrupt audio",
               "folder.flac": "is a directory, not an audio file", "loop_a.wav": "symbolic link loop",
               "loop_b.wav": "symbolic link loop", "dangling.ogg": "broken symbolic link"}


def test_every_bad_file_is_named_or_skipped_with_its_reason(tmp_path):
    d, problems = bad_folder(tmp_path)
    assert set(scan_dir(d)) == {"good", *(Path(n).stem for n in problems)}  # none silently left out
    with pytest.raises(AudioError) as e:
        load_dir(d, sr=16000)
    assert e.value.path == str(d / "dangling.ogg") and e.value.problem == problems["dangling.ogg"]  # first by id
    report = load_dir(d, sr=16000, on_error="skip")
    assert [c.id for c in report.clips] == ["good"]
    got = {Path(s.path).name: s.reason for s in report.skipped}
    assert got.keys() == problems.keys()
    for name, problem in problems.items():
        assert got[name].startswith(problem), (name, got[name])
        assert f"skipped {d / name}: {got[name]}" in report.summary()


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    d = tmp_path / "clips"
    for name in ("a.wav", "b.wav"):
        save_audio(d / name, np.full(16000, 0.1), 16000)
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "b.wav":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)  # tests run as root, so chmod 000 would not stop a read
    with pytest.raises(AudioError, match=rf"^{d / 'b.wav'}: cannot read file \(Permission denied\)$"):
        load_dir(d)
    assert [s.path for s in load_dir(d, on_error="skip").skipped] == [str(d / "b.wav")]


def test_fad_cli_names_the_bad_clip_or_skips_it(tmp_path, clips):
    gen = tmp_path / "gen"
    shutil.copytree(clips / "gen", gen)
    (gen / "c1.wav").write_bytes(b"")
    args = ("fad", "--generated", gen, "--reference", clips / "ref", "--embedder", "mel", "--bootstrap", "0", "--no-cache")
    assert "empty file (0 bytes)" in assert_one_line_error(cli(*args), gen / "c1.wav")
    res = cli(*args, "--on-error", "skip", "--json", tmp_path / "fad.json")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "fad.json").read_text())
    assert str(gen / "c1.wav") in json.dumps(doc) and "empty file (0 bytes)" in json.dumps(doc)


# ---------------------------------------------------------------------------------------------
# checkpoints of the wrong kind, flag by flag

@pytest.fixture(scope="module")
def wrong_set(tmp_path_factory) -> Path:
    """A copy of the shipped tiny set whose codec.pt is really the MuLan checkpoint."""
    d = tmp_path_factory.mktemp("wrong-set")
    for f in (SHIPPED / "tiny").glob("*.pt"):
        shutil.copy(f, d / f.name)
    shutil.copy(SHIPPED / "mulan-tiny.pt", d / "codec.pt")
    return d


MULAN_FMT, CODEC_FMT = "musiclm-eval/mulan/1", "musiclm-eval/codec/1"
CASES = {
    "score --joint": (lambda c, w, t: ["score", "--generated", c / "gen", "--reference", c / "ref", "--captions", c / "captions.csv",
                                       "--embedders", "", "--classifier", "none", "--joint", CLASSIFIER, "--bootstrap", "0",
                                       "--no-cache"], CLASSIFIER, "not a MuLan checkpoint"),
    "score --classifier": (lambda c, w, t: ["score", "--generated", c / "gen", "--reference", c / "ref", "--embedders", "",
                                            "--classifier", SHIPPED / "mulan-tiny.pt", "--joint", "none", "--bootstrap", "0",
                                            "--no-cache"], SHIPPED / "mulan-tiny.pt", "not a LEAF classifier checkpoint"),
    "fad --embedder torch:": (lambda c, w, t: ["fad", "--generated", c / "gen", "--reference", c / "ref", "--embedder",
                                               f"torch:{SHIPPED / 'tiny' / 'codec.pt'}", "--bootstrap", "0", "--no-cache"],
                              SHIPPED / "tiny" / "codec.pt", "not a musiclm-eval embedder checkpoint"),
    "memorization audit --tokenizer": (lambda c, w, t: ["memorization", "audit", "--generated", c / "gen", "--train", c / "train",
                                                        "--tokenizer", SHIPPED / "mulan-tiny.pt", "--out", t / "audit"],
                                       SHIPPED / "mulan-tiny.pt", "not a semantic tokenizer checkpoint"),
    "memorization sweep --checkpoint": (lambda c, w, t: ["memorization", "sweep", "--checkpoint", w, "--train", c / "train",
                                                         "--out", t / "sweep"], None, "not a codec checkpoint"),
    "generate --checkpoint": (lambda c, w, t: ["generate", "--checkpoint", w, "--text", "a waltz", "--seconds", "1",
                                               "--clips", t / "gen"], None, "not a codec checkpoint"),
    "train codec --init": (lambda c, w, t: ["train", "codec", "--data", c / "train", "--checkpoint", t / "codec", "--init",
                                            SHIPPED / "mulan-tiny.pt", "--steps", "1"], SHIPPED / "mulan-tiny.pt",
                           "not a codec checkpoint"),
    "train stage --mulan": (lambda c, w, t: ["train", "stage", "--stage", "semantic", "--data", c / "train", "--checkpoint",
                                             t / "stage", "--mulan", SHIPPED / "tiny" / "codec.pt", "--steps", "1"],
                            SHIPPED / "tiny" / "codec.pt", "not a MuLan checkpoint"),
    "train stage --components": (lambda c, w, t: ["train", "stage", "--stage", "semantic", "--data", c / "train",
                                                  "--checkpoint", t / "stage", "--components", w, "--steps", "1"],
                                 None, "not a codec checkpoint"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_checkpoint_of_the_wrong_kind_for_a_flag(case, clips, wrong_set, tmp_path):
    build, named, problem = CASES[case]
    line = assert_one_line_error(cli(*build(clips, wrong_set, tmp_path)), named or wrong_set / "codec.pt")
    assert problem in line and "format '" in line, line


def test_a_resume_state_of_the_wrong_kind_is_refused_not_overwritten(clips, tmp_path):
    out = tmp_path / "codec"
    out.mkdir()
    shutil.copy(SHIPPED / "mulan-tiny.pt", out / "codec_last.pt")
    before = (out / "codec_last.pt").read_bytes()
    line = assert_one_line_error(cli("train", "codec", "--data", clips / "train", "--checkpoint", out, "--steps", "1"),
                                 out / "codec_last.pt")
    assert "not a codec resume state" in line
    assert (out / "codec_last.pt").read_bytes() == before


def test_every_error_here_is_an_eval_error():
    """The classes the cases above raise are EvalErrors: the CLI shows them as one line by that rule alone."""
    from metrics.artifacts import CheckpointError, ManifestError
    from metrics.io import JSONFormatError

    for cls in (CaptionsError, ResultsError, AudioError, db.StudyDBError, CheckpointError, ManifestError, JSONFormatError):
        assert issubclass(cls, EvalError), cls

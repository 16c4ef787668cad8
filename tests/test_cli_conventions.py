"""One CLI convention, checked on every command of the click tree (README, "CLI conventions").

The walk loads every lazy command and subcommand, so a new command that spells ``--json``, ``--out``,
``--bootstrap`` or ``--embedder-path`` its own way fails here. ``--json -`` is also run for real on
fad, score and compare (stdout must parse as JSON), and the error contract of the top-level group is
exercised: a project error is one ``Error:`` line naming the file, any other exception keeps its traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.cli import COMMANDS, DEBUG_ENV, main
from benchmarks.cli.options import BOOTSTRAP, ConventionOption, parse_paths
from metrics.audio import load_dir, save_audio
from metrics.errors import EvalError

ROOT = Path(__file__).resolve().parents[1]
# top-level commands that share a module named after their family rather than after themselves
FAMILIES = {"stats": "fad", "cache": "fad", "synth": "data", "degrade": "data"}
OTHER_BOOTSTRAP_SPELLINGS = {"--n-boot", "--n-bootstrap", "--boot", "--bootstraps", "--n-resamples"}


def walk(group: click.Group = main, path: tuple[str, ...] = ()):
    """(command path, command) for every command and subcommand, lazy ones loaded."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"{' '.join(path + (name,))}: listed but cannot be loaded"
        yield path + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from walk(cmd, path + (name,))


ALL = list(walk())
OPTIONS = [(" ".join(p), o) for p, c in ALL for o in c.params if isinstance(o, click.Option)]


def with_flag(flag: str):
    return [(p, o) for p, o in OPTIONS if flag in o.opts]


def test_the_walk_reaches_every_command_and_subcommand():
    names = {" ".join(p) for p, _ in ALL}
    assert set(COMMANDS) <= names
    assert {"train stage", "train semantic", "train codec", "train melody", "train mulan", "train classifier",
            "rate analyze", "memorization audit", "musiccaps prepare", "cache info"} <= names


def test_every_json_flag_is_the_shared_path_option_with_dash_for_stdout():
    found = with_flag("--json")
    assert len(found) >= 10  # fad, score, compare, generate, train *, memorization *, rate *, tag, protocols, cache info
    for where, opt in found:
        assert isinstance(opt, ConventionOption) and opt.convention == "json", where
        assert opt.name == "json_out" and isinstance(opt.type, click.Path) and opt.type.allow_dash, where
        assert not opt.multiple and opt.default is None, where


def test_every_out_flag_is_a_results_store_directory():
    found = with_flag("--out")
    assert {p for p, _ in found} == {"fad", "score", "compare", "memorization sweep", "memorization audit", "rate analyze",
                                      "agreement"}
    for where, opt in found:
        assert isinstance(opt, ConventionOption) and opt.convention == "out", where
        assert isinstance(opt.type, click.Path) and not opt.type.file_okay and opt.name == "out_dir", where
        assert "results store" in opt.help.lower(), where


def test_bootstrap_has_one_spelling_and_one_default():
    found = with_flag("--bootstrap")
    assert {"fad", "score", "compare", "rate analyze", "dashboard"} <= {p for p, _ in found}
    for where, opt in found:
        assert isinstance(opt, ConventionOption) and opt.convention == "bootstrap", where
        assert opt.default == BOOTSTRAP == 1000, where
    others = [(p, o.opts) for p, o in OPTIONS if OTHER_BOOTSTRAP_SPELLINGS & set(o.opts)]
    assert others == []


def test_embedder_path_is_name_eq_path_everywhere():
    found = with_flag("--embedder-path")
    assert {"stats", "fad", "score", "compare"} <= {p for p, _ in found}
    for where, opt in found:
        assert isinstance(opt, ConventionOption) and opt.convention == "embedder-path", where
        assert opt.multiple and opt.metavar == "NAME=PATH", where


def test_captions_is_always_a_csv_file_path():
    found = with_flag("--captions")
    assert {"score", "compare", "generate", "rate create", "musiccaps prepare"} == {p for p, _ in found}
    for where, opt in found:
        assert isinstance(opt.type, click.Path) and opt.type.file_okay and not opt.type.dir_okay, where


def test_convention_options_are_only_used_under_their_own_flag():
    flag = {"json": "--json", "out": "--out", "bootstrap": "--bootstrap", "embedder-path": "--embedder-path"}
    for where, opt in OPTIONS:
        if isinstance(opt, ConventionOption):
            assert opt.opts == [flag[opt.convention]], where


def test_parse_paths_name_eq_path_and_a_bare_path_for_one_embedder():
    assert parse_paths(["vggish=/m/vggish", "trill=/m/trill"], ["vggish", "trill"]) == {
        "vggish": "/m/vggish", "trill": "/m/trill"}
    assert parse_paths(["/models/vggish_1"], ["vggish"]) == {"vggish": "/models/vggish_1"}
    assert parse_paths(["/models/a=b"], ["mel"]) == {"mel": "/models/a=b"}  # a NAME has no path separator
    with pytest.raises(click.BadParameter, match="expected NAME=PATH, got '/m/x'.*2 embedders are in play"):
        parse_paths(["/m/x"], ["vggish", "trill"])
    with pytest.raises(click.BadParameter, match="vggish given twice"):
        parse_paths(["/m/a", "vggish=/m/b"], ["vggish"])


def test_stats_and_fad_reject_an_embedder_path_for_another_model(tmp_path):
    res = CliRunner().invoke(main, ["stats", "--audio", str(tmp_path), "--stats", str(tmp_path / "s.npz"),
                                    "--embedder", "mel", "--embedder-path", "vggish=/m/vggish"])
    assert res.exit_code == 2 and "names vggish, but this command embeds with mel" in res.output


def test_each_cli_module_is_one_command_group():
    """``train stage`` lives in cli/train.py, ``demo`` in cli/demo.py, …: a command's module is named after its
    top-level command (or that command's family), and a group's subcommands live in the group's module."""
    for path, cmd in ALL:
        module = cmd.callback.__module__
        assert module == f"benchmarks.cli.{FAMILIES.get(path[0], path[0])}", (" ".join(path), module)
    leftovers = {p.stem for p in (ROOT / "benchmarks" / "cli").glob("*.py")} - {
        "__init__", "__main__", "options", *(FAMILIES.get(n, n) for n in COMMANDS)}
    assert leftovers == set()


# --- --json - on real data: fad, score, compare --------------------------------------------------------

N = 6


@pytest.fixture(scope="module")
def pair(small_corpus, tmp_path_factory):
    """The first N corpus clips as reference, lightly noised copies (same ids) as generated, and their captions."""
    ref, gen = tmp_path_factory.mktemp("ref"), tmp_path_factory.mktemp("gen")
    rng = np.random.default_rng(3)
    for clip in load_dir(small_corpus).clips[:N]:
        save_audio(ref / f"{clip.id}.wav", clip.wave, clip.sr)
        save_audio(gen / f"{clip.id}.wav", clip.wave + 0.01 * rng.standard_normal(len(clip.wave)).astype(np.float32),
                   clip.sr)
    return ref, gen, small_corpus / "captions.csv"


def stdout_json(args: list[str]) -> dict:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # nothing but the document on standard output


def test_fad_json_dash_prints_the_document(pair, tmp_path):
    ref, gen, _ = pair
    doc = stdout_json(["fad", "--reference", ref, "--generated", gen, "--embedder", "mel", "--no-cache",
                       "--bootstrap", "20", "--json", "-"])
    assert doc["n_reference"] == doc["n_generated"] == N and doc["fad"] > 0 and len(doc["ci95"]) == 2
    assert not (Path.cwd() / "-").exists()


def test_score_json_dash_prints_the_document(pair, tmp_path):
    ref, gen, captions = pair
    doc = stdout_json(["score", "--generated", gen, "--reference", ref, "--embedders", "mel", "--classifier", "none",
                       "--joint", "none", "--no-cache", "--bootstrap", "20", "--json", "-"])
    assert doc["n_pairs"] == N and np.isfinite(doc["fad_mel"])


def test_compare_json_dash_prints_the_document_and_out_is_a_store(pair, tmp_path):
    from metrics.store import read_store

    ref, gen, captions = pair
    doc = stdout_json(["compare", "--system", f"noisy={gen}", "--reference", ref, "--captions", captions,
                       "--embedders", "mel", "--classifier", "none", "--joint", "none", "--no-cache", "--no-progress",
                       "--bootstrap", "20", "--out", tmp_path / "store", "--json", "-"])
    assert doc["systems"]["noisy"]["metrics"]["fad_mel"]["value"] > 0
    store = read_store(tmp_path / "store")
    assert store.data["systems"]["noisy"]["metrics"]["fad_mel"]["value"] == doc["systems"]["noisy"]["metrics"]["fad_mel"]["value"]


# --- errors: a project error is one line; anything else keeps its traceback ------------------------------

def test_a_project_error_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["fad", "--reference", str(tmp_path / "empty"), "--generated", str(tmp_path / "empty"),
                                    "--embedder", "mel"])
    assert res.exit_code == 1
    assert res.stderr.startswith("Error: ") and str(tmp_path / "empty") in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


@pytest.mark.parametrize("debug", [["--debug"], []])
def test_debug_shows_project_errors_with_their_traceback(tmp_path, monkeypatch, debug):
    if not debug:
        monkeypatch.setenv(DEBUG_ENV, "1")
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, [*debug, "fad", "--reference", str(tmp_path / "empty"), "--generated",
                                    str(tmp_path / "empty"), "--embedder", "mel"])
    assert isinstance(res.exception, EvalError) and "Error:" not in res.output  # raised, not turned into a line


def test_any_other_exception_keeps_its_traceback(tmp_path):
    """A bug inside a command (here a RuntimeError from the FAD computation) is not turned into a user error."""
    (tmp_path / "a").mkdir()
    code = ("import sys, benchmarks.cli.fad as f\n"
            "def broken(*a, **k):\n"
            "    raise RuntimeError('shape mismatch deep inside torch')\n"
            "f.compute_fad = broken\n"
            "from benchmarks.cli import main\n"
            f"main(['fad', '--reference', {str(tmp_path / 'a')!r}, '--generated', {str(tmp_path / 'a')!r}, "
            "'--embedder', 'mel'])\n")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    env.pop(DEBUG_ENV, None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "in broken" in proc.stderr
    assert proc.stderr.rstrip().endswith("RuntimeError: shape mismatch deep inside torch")
    assert not any(line.startswith("Error: ") for line in proc.stderr.splitlines())  # not a one-line user error

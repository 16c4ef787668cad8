"""Malformed CSV and JSON thrown at every reader of a user's file (issue 27, item 4), property-based.

The property, for each reader: it returns a valid parse, or it raises an ``EvalError`` whose message names
the file; never any other exception. The strategies mix plain garbage with near-valid documents (a store
whose fields have the wrong types, a CSV with quotes, commas, CR/LF and a BOM in odd places, a file cut
short), because those reach the reader's later checks where garbage stops at the parser.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboards.runs import load_run
from metrics.artifacts import manifest_entries
from metrics.classifier_training import read_tag_labels
from metrics.errors import EvalError
from metrics.io import loads_json
from metrics.memorization.io import read_outputs
from metrics.musiccaps import load_audioset_labels, load_captions
from metrics.store import read_store

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)  # seeded: CI sees the same 150 inputs per reader every run

# ---------------------------------------------------------------------------------------------
# strategies

# cell text with the characters that break CSV readers: separators, quotes, CR/LF, a BOM, non-ASCII
CELL = st.text(alphabet=st.sampled_from(list("ab yz09_-.,;\"'\r\n[]\ufeffé\t")), max_size=12)
CSV_ROWS = st.lists(st.lists(CELL, min_size=0, max_size=5), min_size=0, max_size=6)


def csv_text(header: list[str]) -> st.SearchStrategy[bytes]:
    """A CSV whose header is ``header`` shuffled/cut, rows of random cells (quoted or not), CRLF or LF, maybe a
    BOM, maybe cut short, maybe not UTF-8; or plain random bytes."""

    @st.composite
    def build(draw) -> bytes:
        cols = draw(st.lists(st.sampled_from([*header, "extra", ""]), min_size=0, max_size=len(header) + 1))
        rows = draw(CSV_ROWS)
        quote = draw(st.booleans())
        sep = draw(st.sampled_from(["\n", "\r\n"]))

        def line(cells: list[str]) -> str:
            return ",".join('"' + c.replace('"', '""') + '"' if quote else c for c in cells)

        text = sep.join([line(cols), *(line(r) for r in rows)]) + draw(st.sampled_from(["", sep]))
        data = (("\ufeff" if draw(st.booleans()) else "") + text).encode(draw(st.sampled_from(["utf-8", "latin-1"])),
                                                                          errors="replace")
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
        return data

    return st.one_of(build(), st.binary(max_size=200))


JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                        st.text(max_size=6))
ANY_JSON = st.recursive(JSON_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                        max_leaves=12)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """The field's plausible value or anything JSON."""
    return st.one_of(strategy, ANY_JSON)


METRIC = st.fixed_dictionaries({}, optional={
    "value": maybe(st.floats(-5, 5)), "ci95": maybe(st.lists(st.floats(-5, 5), min_size=2, max_size=2)),
    "higher_is_better": maybe(st.booleans()), "reason": maybe(st.text(max_size=5)), "number": maybe(st.just("kld")),
})
STORE_DOC = st.fixed_dictionaries({}, optional={
    "schema_version": maybe(st.integers(0, 3)), "kind": maybe(st.sampled_from(["compare", "score", ""])),
    "systems": maybe(st.dictionaries(st.sampled_from(["a", "b", "ground truth"]),
                                     maybe(st.fixed_dictionaries({"metrics": maybe(st.dictionaries(
                                         st.sampled_from(["fad_mel", "kld_musiclm", "mcc", "wins"]), maybe(METRIC),
                                         max_size=3))})), max_size=3)),
    "metadata": maybe(st.fixed_dictionaries({}, optional={"pairwise": ANY_JSON})),
    "pairwise": ANY_JSON, "files": maybe(st.lists(st.sampled_from(["per_clip.csv", "pairwise.csv", "x.png"]))),
    "reference": ANY_JSON,
})
MEMO_DOC = st.fixed_dictionaries({}, optional={
    "tau": maybe(st.floats(0, 1)), "fpr": maybe(st.floats(0, 1)), "exact_rate": ANY_JSON, "approx_rate": ANY_JSON,
    "rows": maybe(st.lists(st.dictionaries(st.sampled_from(["prompt_tokens", "exact_rate", "exact_ci95"]), ANY_JSON))),
    "matchers": maybe(st.dictionaries(st.text(max_size=4), ANY_JSON, max_size=2)),
    "detection": maybe(st.dictionaries(st.text(max_size=4), ANY_JSON, max_size=2)),
})


@st.composite
def json_text(draw, doc: st.SearchStrategy) -> str:
    """``doc`` (or any JSON) as text: whole, cut short, or with bare NaN/Infinity tokens; or random text."""
    text = json.dumps(draw(st.one_of(doc, ANY_JSON)))  # json.dumps writes NaN/Infinity for non-finite floats
    cut = draw(st.one_of(st.none(), st.integers(0, len(text))))
    return draw(st.one_of(st.just(text if cut is None else text[:cut]), st.text(max_size=40)))


# ---------------------------------------------------------------------------------------------
# the property


def parses_or_names_the_file(read: Callable[[], object], path: Path) -> object | None:
    """``read()``'s value, or None when it raised an EvalError naming ``path``; any other exception fails."""
    try:
        return read()
    except EvalError as e:
        assert str(path) in str(e), f"error does not name {path}: {e}"
        return None


def _tmp() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="bad-input-")


@SETTINGS
@given(data=csv_text(["ytid", "caption", "start_s", "end_s", "aspect_list", "audioset_positive_labels",
                      "is_balanced_subset", "is_audioset_eval", "author_id"]),
       all_columns=st.booleans())
def test_captions_csv(data, all_columns):
    with _tmp() as d:
        path = Path(d) / "captions.csv"
        path.write_bytes(data)
        df = parses_or_names_the_file(lambda: load_captions(path, require_all_columns=all_columns), path)
        if df is not None:  # a valid parse: one row per distinct, non-empty, stripped id, each with a caption
            ids = list(df["ytid"])
            assert ids and len(set(ids)) == len(ids) and all(i and i == i.strip() for i in ids)
            assert all(isinstance(c, str) and c for c in df["caption"])
            assert list(df.index) == ids


@SETTINGS
@given(data=csv_text(["index", "mid", "display_name"]))
def test_audioset_labels_csv(data):
    with _tmp() as d:
        path = Path(d) / "class_labels_indices.csv"
        path.write_bytes(data)
        names = parses_or_names_the_file(lambda: load_audioset_labels(path), path)
        assert names is None or all(isinstance(n, str) for n in names)


@SETTINGS
@given(data=csv_text(["ytid", "tags"]))
def test_corpus_labels_csv(data):
    with _tmp() as d:
        (Path(d) / "labels.csv").write_bytes(data)
        rows = parses_or_names_the_file(lambda: read_tag_labels(d), Path(d) / "labels.csv")
        assert rows is None or all(split in ("train", "eval") for _, split, _ in rows)


@SETTINGS
@given(doc=json_text(STORE_DOC), per_clip=st.one_of(st.none(), csv_text(["ytid", "system", "fad_mel", "path"])))
def test_results_store(doc, per_clip):
    from benchmarks.report import write_report

    with _tmp() as d:
        store = Path(d)
        (store / "results.json").write_text(doc)
        if per_clip is not None:
            (store / "per_clip.csv").write_bytes(per_clip)
        res = parses_or_names_the_file(lambda: read_store(store), store)
        if res is not None:
            assert isinstance(res.problems, list) and all(isinstance(p, str) for p in res.problems)
            assert isinstance(res.table(), pd.DataFrame)
            assert res.per_clip is None or {"ytid", "system"} <= set(res.per_clip.columns)
        # the report refuses what it cannot show (strict); what it writes, it wrote from a valid store
        if parses_or_names_the_file(lambda: write_report(store), store) is not None:
            assert res is not None and (store / "table.md").is_file()
        run = load_run(store)  # the dashboard never raises: it lists the problems
        assert (run.results is None) == (res is None) or run.problems


@SETTINGS
@given(doc=json_text(MEMO_DOC), matches=st.one_of(st.none(), csv_text(["generated_id", "train_id", "cost", "exact"])))
def test_memorization_outputs(doc, matches):
    with _tmp() as d:
        out = Path(d)
        (out / "memorization.json").write_text(doc)
        if matches is not None:
            (out / "matches.csv").write_bytes(matches)
        res = read_outputs(out)  # never raises: each unreadable part is a sentence in problems
        assert isinstance(res.summary, dict) and all(str(out) in p for p in res.problems)
        assert isinstance(res.matchers, dict) and isinstance(res.detection, dict)
        assert res.rows is None or isinstance(res.rows, list)


@SETTINGS
@given(doc=json_text(st.dictionaries(st.sampled_from(["codec.pt", "command", "train_splits", "x"]),
                                     maybe(st.fixed_dictionaries({"command": st.text(max_size=4)})), max_size=3)))
def test_manifest(doc):
    with _tmp() as d:
        path = Path(d) / "manifest.json"
        path.write_text(doc)
        entries = parses_or_names_the_file(lambda: manifest_entries(path), path)
        assert entries is None or all(isinstance(v, dict) for v in entries.values())


@SETTINGS
@given(text=json_text(ANY_JSON))
def test_json_helper(text):
    parses_or_names_the_file(lambda: loads_json(text, "some/file.json"), Path("some/file.json"))

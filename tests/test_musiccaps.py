"""The MusicCaps loader on the real CSV (when present) and on small CSVs written here."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.audio import save_audio
from metrics.musiccaps import (
    COLUMNS,
    CaptionsError,
    join_audio,
    load_audioset_labels,
    load_captions,
    write_captions,
)

HEADER = ",".join(COLUMNS)
ROWS = [
    'aaa,30,40,"/m/0140xf,/m/04rlf","[\'low quality\', \'sad\']","A sad song.\r\nWith a newline inside.",4,True,False',
    "bbb,0,10,/m/04rlf,\"['rock']\",A rock song.,1,False,True",
    "ccc,10,20,,[],Quiet.,2,true,true",
]


def write_csv(path, rows=ROWS, header=HEADER):
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode())
    return path


def test_small_csv_parses_lists_newlines_and_crlf(tmp_path):
    df = load_captions(write_csv(tmp_path / "c.csv"))
    assert list(df.index) == ["aaa", "bbb", "ccc"]
    assert df.loc["aaa", "aspect_list"] == ["low quality", "sad"]
    assert df.loc["aaa", "audioset_positive_labels"] == ["/m/0140xf", "/m/04rlf"]
    assert df.loc["aaa", "caption"] == "A sad song.\nWith a newline inside."
    assert df.loc["ccc", "aspect_list"] == [] and df.loc["ccc", "audioset_positive_labels"] == []
    assert df["is_balanced_subset"].dtype == bool
    assert list(load_captions(tmp_path / "c.csv", "balanced").index) == ["aaa", "ccc"]
    assert list(load_captions(tmp_path / "c.csv", "eval").index) == ["bbb", "ccc"]


def test_round_trip_through_writer(tmp_path):
    df = load_captions(write_csv(tmp_path / "c.csv"))
    again = load_captions(write_captions(df, tmp_path / "out.csv"))
    assert again.drop(columns=[]).equals(df)


def test_bad_csvs_name_file_and_problem(tmp_path):
    with pytest.raises(CaptionsError, match=r"nope\.csv: captions file not found"):
        load_captions(tmp_path / "nope.csv")
    with pytest.raises(CaptionsError, match=r"missing column\(s\) aspect_list"):
        load_captions(write_csv(tmp_path / "m.csv", header=HEADER.replace("aspect_list", "aspects")))
    bad = [ROWS[0].replace("['low quality', 'sad']", "['unterminated"), *ROWS[1:]]
    with pytest.raises(CaptionsError, match=r"l\.csv: row 0 \(aspect_list\): not a list literal"):
        load_captions(write_csv(tmp_path / "l.csv", rows=bad))
    with pytest.raises(CaptionsError, match=r"duplicate ytid\(s\): aaa"):
        load_captions(write_csv(tmp_path / "d.csv", rows=[ROWS[0], ROWS[0]]))
    with pytest.raises(CaptionsError, match=r"row 1 \(is_balanced_subset\): not a boolean"):
        load_captions(write_csv(tmp_path / "b.csv", rows=[ROWS[0], ROWS[1].replace(",False,True", ",maybe,True")]))


def test_join_reports_missing_and_extra(tmp_path):
    df = load_captions(write_csv(tmp_path / "c.csv"))
    audio = tmp_path / "audio"
    for ytid in ["aaa", "ccc", "zzz"]:
        save_audio(audio / f"{ytid}.wav", np.zeros(160, np.float32) + 0.1, 16000)
    join = join_audio(df, audio)
    assert join.ids == ["aaa", "ccc"]
    assert join.missing == ["bbb"] and join.extra == ["zzz"]
    assert "1 captions without audio" in join.summary()


def test_official_musiccaps_counts(shared_data):
    path = shared_data / "musiccaps-public.csv"
    df = load_captions(path)
    assert len(df) == 5521
    assert len(load_captions(path, "balanced")) == 1000
    assert len(load_captions(path, "eval")) == 2858
    assert ((df["end_s"] - df["start_s"]) == 10).all()
    assert df["caption"].str.len().min() > 0
    assert all(isinstance(a, list) for a in df["aspect_list"])
    assert df["caption"].str.contains("\n").any()  # captions with newlines survive


def test_audioset_labels(shared_data, tmp_path):
    names = load_audioset_labels(shared_data / "class_labels_indices.csv")
    assert len(names) == 527 and names[0] == "Speech"
    (tmp_path / "gap.csv").write_text('0,/m/a,A\n2,/m/b,"B, b"\n')
    with pytest.raises(CaptionsError, match=r"gap\.csv: indices must run 0\.\.1 in order"):
        load_audioset_labels(tmp_path / "gap.csv")


@pytest.mark.parametrize("text", ["0", "0,/m/a\n", '0,/m/a,A\n1,,"B"\n'])
def test_audioset_labels_without_a_mid_or_name_are_an_error(tmp_path, text):
    """A row missing its mid or display name is named, never a label called "nan" (found by hypothesis: b"0")."""
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(CaptionsError, match=r"labels\.csv: row of index \d has no mid or display_name"):
        load_audioset_labels(tmp_path / "labels.csv")
    (tmp_path / "ok.csv").write_text('0,/m/a,A\n1,/m/b,"B, b"\n')
    assert load_audioset_labels(tmp_path / "ok.csv") == ["A", "B, b"]

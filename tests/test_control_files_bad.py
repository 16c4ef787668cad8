"""Malformed control files get an InputError naming the file (and line) and the problem, never a traceback
or a silent wrong control (issue 27's bad-input rule applied to ``metrics.control.controls``)."""

from __future__ import annotations

import pytest

from metrics.control.controls import read_control_files
from metrics.errors import InputError

CASES = {
    "c1.key.txt": ("H major\n", r"c1\.key\.txt: a key must look like"),
    "c2.tempo.txt": ("fast\n", r"c2\.tempo\.txt: expected a tempo in BPM"),
    "c3.tempo.txt": ("", r"c3\.tempo\.txt: expected a tempo in BPM"),
    "c4.beats.txt": ("0.5\nhalf past\n", r"c4\.beats\.txt:2: expected a time"),
    "c5.chords.lab": ("0.0 1.0 C:maj\n1.0 two G:maj\n", r"c5\.chords\.lab:2: expected 'start end label'"),
    "c6.mid": (b"not midi at all", r"c6\.mid: not a readable MIDI file"),
    "c7.jams": ("{ truncated", r"c7\.jams: not a readable JAMS file"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_malformed_control_file_is_an_error_naming_it(tmp_path, name):
    content, message = CASES[name]
    (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=message):
        read_control_files(tmp_path)


def test_well_formed_files_read_beside_nothing_else(tmp_path):
    """The same folder shapes, well formed, give the controls (so the cases above fail for the content)."""
    (tmp_path / "a.key.txt").write_text("Bb minor\n")
    (tmp_path / "a.tempo.txt").write_text("120\n")
    (tmp_path / "a.beats.txt").write_text("0.5\n1.0\n")
    got = read_control_files(tmp_path)
    assert set(got) >= {"key", "tempo", "beats"} and float(got["tempo"]["a"][0, 0]) == 120.0
    assert got["key"]["a"].tolist() == [[10.0, 1.0]]  # A# (= Bb) minor

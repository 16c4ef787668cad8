"""Control metrics through the pipeline and the CLI: ``score --controls DIR`` with controls extracted from
reference clips and read from files (MIDI, .lab chords, key, beats, JAMS), and the ``--control-metrics`` checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from metrics.audio import save_audio
from metrics.control import control_plan
from metrics.control.controls import chord_segment_frames, melody_frames, read_control_files
from metrics.errors import InputError

pytest.importorskip("mir_eval")
SR = 22050
FREQS = {"C": 261.63, "E": 329.63, "G": 392.0, "A": 220.0, "D": 293.66, "F#": 369.99}


def _chord(names, seconds=3.0, gain=None):
    t = np.arange(int(seconds * SR)) / SR
    x = 0.05 * sum(np.sin(2 * np.pi * FREQS[n] * k * t) / k for n in names for k in (1, 2, 3))
    return x * (gain if gain is not None else 1.0)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctl")
    ramp = np.linspace(0.05, 1.0, 3 * SR)
    clips = {"a": (["C", "E", "G"], ramp), "b": (["A", "C", "E"], ramp[::-1]), "c": (["D", "F#", "A"], ramp)}
    for sub in ("controls", "same", "other"):
        (root / sub).mkdir()
    for cid, (names, gain) in clips.items():
        save_audio(root / "controls" / f"{cid}.wav", _chord(names, gain=gain), SR)
        save_audio(root / "same" / f"{cid}.wav", _chord(names, gain=gain), SR)
        save_audio(root / "other" / f"{cid}.wav", _chord(["D", "F#", "A"] if cid != "c" else ["C", "E", "G"],
                                                         gain=gain[::-1]), SR)
    return root


def _score(dirs, generated, metrics="melody_accuracy,key_accuracy_ks,chord_majmin_template,dynamics_correlation"):
    from benchmarks.cli import main

    res = CliRunner().invoke(main, ["score", "--generated", str(dirs / generated), "--reference", str(dirs / "controls"),
                                    "--embedders", "", "--classifier", "none", "--joint", "none", "--no-cache",
                                    "--controls", str(dirs / "controls"), "--control-metrics", metrics,
                                    "--bootstrap", "20", "--json", "-"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_score_controls_a_clip_follows_its_own_controls_and_not_others(dirs):
    same, other = _score(dirs, "same"), _score(dirs, "other")
    for key in ("melody_accuracy", "key_accuracy_ks", "chord_majmin_template", "dynamics_correlation"):
        assert same[key] == pytest.approx(1.0), key
        assert other[key] < 0.5, (key, other[key])
    assert other["dynamics_correlation"] < 0  # every loudness ramp reversed


def test_file_controls_read_back_as_the_extractors_arrays(tmp_path):
    mido = pytest.importorskip("mido")
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000))  # 120 BPM: a beat is 0.5 s
    for pitch in (60, 64, 67):
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=480))
    mid.save(tmp_path / "x.mid")
    (tmp_path / "x.lab").write_text("0.0 1.0 C:maj\n1.0 2.0 A:min7\n")
    (tmp_path / "x.key.txt").write_text("A minor\n")
    (tmp_path / "x.beats.txt").write_text("0.5 1\n1.0 2\n1.5 1\n")
    (tmp_path / "y.jams").write_text(json.dumps({"annotations": [
        {"namespace": "key_mode", "data": [{"time": 0, "duration": 2, "value": "E:major"}]},
        {"namespace": "tempo", "data": [{"time": 0, "duration": 2, "value": 96.0}]}]}))
    got = read_control_files(tmp_path)
    rate = 22050 / 512
    np.testing.assert_array_equal(got["melody"]["x"], melody_frames([(0, .5, 60), (.5, .5, 64), (1, .5, 67)], rate))
    assert got["melody"]["x"][:, :12].argmax(1)[[5, 30, 60]].tolist() == [0, 4, 7]
    np.testing.assert_array_equal(got["chords"]["x"],
                                  chord_segment_frames([(0, 1, "C:maj"), (1, 2, "A:min7")], 22050 / 1024))
    assert got["key"]["x"].tolist() == [[9, 1]] and got["key"]["y"].tolist() == [[4, 0]]
    assert got["beats"]["x"].ravel().tolist() == [0.5, 1.0, 1.5]
    assert got["downbeats"]["x"].ravel().tolist() == [0.5, 1.5]
    assert got["tempo"]["y"].tolist() == [[96.0]]


def test_file_controls_override_extraction_in_the_pipeline(dirs, tmp_path):
    import shutil

    ctrl = tmp_path / "ctl"
    shutil.copytree(dirs / "controls", ctrl)
    (ctrl / "a.key.txt").write_text("F# major\n")  # the file wins over the clip it sits beside: a is C major
    from metrics.commands import compute_score

    doc = compute_score(dirs / "same", dirs / "controls", None, embedders=(), classifier=None, joint=None,
                        n_boot=0, controls=ctrl, control_metrics=["key_accuracy_ks"])
    assert doc["key_accuracy_ks"] == pytest.approx(2 / 3)


def test_control_plan_and_its_errors(tmp_path):
    assert control_plan(None, None) == ((), (), None, None)
    assert control_plan(None, tmp_path) == (("pitch", "chroma"), ("melody_accuracy",), tmp_path, tmp_path)
    melody, names, prompts, folder = control_plan(tmp_path, None, ["key_accuracy"])
    assert (melody, names, prompts, folder) == ((), ("key_accuracy",), None, tmp_path)
    with pytest.raises(InputError, match="--control-metrics: unknown nope"):
        control_plan(tmp_path, None, ["nope"])
    with pytest.raises(InputError, match="needs --controls"):
        control_plan(None, None, ["key_accuracy"])


def test_compare_reports_control_metrics_in_table_one_with_their_direction(dirs, tmp_path):
    from benchmarks.harness import compare
    from benchmarks.report import columns

    caps = tmp_path / "captions.csv"
    caps.write_text("ytid,caption\n" + "".join(f"{c},a chord\n" for c in "abc"))
    data = compare({"same": dirs / "same", "other": dirs / "other"}, dirs / "controls", caps, tmp_path / "out",
                   embedders=(), classifier=None, joint=None, n_boot=20, controls=dirs / "controls",
                   control_metrics=["key_accuracy_ks", "dynamics_correlation"])
    cols = dict(columns(data))
    assert cols["key_accuracy_ks"].endswith("↑") and cols["dynamics_correlation"].endswith("↑")
    same, other = (data["systems"][n]["metrics"] for n in ("same", "other"))
    assert same["dynamics_correlation"]["value"] > other["dynamics_correlation"]["value"]
    assert data["metadata"]["config"]["controls"] == ["key_accuracy_ks", "dynamics_correlation"]
    from dashboards.leaderboard import leaderboard  # the dashboard ranks them best first by the stored direction
    from dashboards.runs import higher_is_better, load_runs

    runs = load_runs([tmp_path / "out"])
    assert higher_is_better(runs, "dynamics_correlation")
    assert leaderboard(runs, sort_by="dynamics_correlation")["system"].tolist()[0] == "same"


def test_protocols_names_every_control_metrics_source():
    from benchmarks.cli import main
    from metrics.control import CONTROL_METRICS

    res = CliRunner().invoke(main, ["protocols", "--json", "-"], catch_exceptions=False)
    rows = {r["metric"]: r for r in json.loads(res.output)["control_metrics"]}
    assert set(CONTROL_METRICS) | {"melody_rca", "chroma_cosine"} == set(rows)
    assert all(r["source"] for r in rows.values()), [k for k, r in rows.items() if not r["source"]]
    assert "Music ControlNet" in rows["melody_accuracy"]["source"] and "mir_eval" in rows["chord_majmin"]["source"]

"""Study creation: a balanced, counterbalanced, reproducible design; an opaque store that names no system; errors."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner
from human_fixtures import SYSTEMS, make_sources, make_study
from sqlalchemy import select, text

from benchmarks.cli import main
from human_eval import db
from human_eval.design import DesignError, create_study
from metrics.audio import AudioError, PairingError, save_audio


def riff_chunks(data: bytes) -> list[bytes]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    out, i = [], 12
    while i + 8 <= len(data):
        size = int.from_bytes(data[i + 4:i + 8], "little")
        out.append(data[i:i + 4])
        i += 8 + size + (size & 1)
    return out


def design_rows(url: str) -> list[tuple]:
    engine = db.open_db(url)
    with db.sessions(engine)() as s:
        rows = [(t.clip_a.system.name, t.clip_b.system.name, t.item_id, t.a_on_left, t.kind)
                for t in s.scalars(select(db.Trial).order_by(db.Trial.id))]
    engine.dispose()
    return rows


def test_balanced_counterbalanced_design(tmp_path):
    url, c = make_study(tmp_path, n_items=6, ratings_per_pair=6, raters=3, attention_checks=1)
    assert c.pairs == [(SYSTEMS[0], SYSTEMS[1]), (SYSTEMS[0], "reference"), (SYSTEMS[1], "reference")]
    assert c.n_trials == 18 and len(c.tokens) == 3
    rows = design_rows(url)
    pair_rows = [r for r in rows if r[4] == "pair"]
    for a, b in c.pairs:
        mine = [r for r in pair_rows if (r[0], r[1]) == (a, b)]
        assert len(mine) == 6
        assert sorted(r[2] for r in mine) == [f"yt{i:04d}" for i in range(6)]  # every caption once per pair
        assert sum(r[3] for r in mine) == 3  # clip A on the left in exactly half
    engine = db.open_db(url)
    with db.sessions(engine)() as s:
        checks = s.scalars(select(db.AttentionCheck)).all()
        assert len(checks) == c.n_attention > 0
        for chk in checks:
            t = s.get(db.Trial, chk.trial_id)
            assert t.kind == "attention" and t.clip_a_id == chk.correct_clip_id
            assert t.clip_a.item_id == t.item_id and t.clip_b.item_id == chk.decoy_item_id != t.item_id
            assert t.clip_a.system.name == t.clip_b.system.name == "reference"  # ground truth vs another caption's
    engine.dispose()


def test_design_is_reproducible_from_the_seed_but_tokens_are_not(tmp_path):
    url1, c1 = make_study(tmp_path / "one", ratings_per_pair=4, raters=1, seed=11)
    url2, c2 = make_study(tmp_path / "two", ratings_per_pair=4, raters=1, seed=11)
    url3, _ = make_study(tmp_path / "three", ratings_per_pair=4, raters=1, seed=12)
    assert design_rows(url1) == design_rows(url2) != design_rows(url3)
    assert c1.tokens != c2.tokens and c1.admin_secret != c2.admin_secret


def test_store_is_opaque_untagged_and_at_one_rate(tmp_path):
    dirs, ref, captions = make_sources(tmp_path, n_items=3, seconds=0.5)
    for p in dirs[SYSTEMS[1]].glob("*.wav"):  # a system at another rate would be recognizable by its rate
        wave, sr = sf.read(p, dtype="float32")
        save_audio(p, wave[::2], sr // 2)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    c = create_study(url, dirs, captions, reference=ref, ratings_per_pair=3, sample_rate=16000, attention_checks=1)
    files = sorted(c.store.iterdir())
    assert len(files) == 9  # 3 sources × 3 captions
    for f in files:
        assert re.fullmatch(r"[0-9a-f]{32}\.wav", f.name)
        data = f.read_bytes()
        assert riff_chunks(data) == [b"fmt ", b"data"]  # no LIST/INFO/id3 tag chunk
        info = sf.info(f)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        for name in (*SYSTEMS, "reference", "ground_truth", "yt0000"):
            assert name.encode() not in data
    engine = db.open_db(url)
    with db.sessions(engine)() as s:
        opaque = {cl.opaque_id: cl.system.name for cl in s.scalars(select(db.Clip))}
    engine.dispose()
    assert set(opaque) == {f.stem for f in files}  # the mapping lives in the database only
    assert Counter(opaque.values()) == {SYSTEMS[0]: 3, SYSTEMS[1]: 3, "reference": 3}


def test_clip_longer_than_seconds_is_cropped(tmp_path):
    url, c = make_study(tmp_path, n_items=2, ratings_per_pair=2, seconds=0.5, attention_checks=0)
    for f in c.store.iterdir():
        assert sf.info(f).frames == 8000


def test_errors_name_the_input(tmp_path):
    dirs, ref, captions = make_sources(tmp_path, n_items=4)
    (dirs[SYSTEMS[0]] / "yt0003.wav").unlink()
    with pytest.raises(PairingError, match=f"{SYSTEMS[0]} lacks 1 id\\(s\\): yt0003"):
        create_study(f"sqlite:///{tmp_path / 'a.db'}", dirs, captions, reference=ref)
    dirs, ref, captions = make_sources(tmp_path / "b", n_items=4)
    pd.DataFrame({"ytid": ["yt0000"], "caption": ["x"]}).to_csv(captions, index=False)
    with pytest.raises(DesignError, match=re.escape(f"{captions}: no caption for 3 clip id(s): yt0001, yt0002, yt0003")):
        create_study(f"sqlite:///{tmp_path / 'b.db'}", dirs, captions, reference=ref)
    with pytest.raises(DesignError, match="at least two sources"):
        create_study(f"sqlite:///{tmp_path / 'c.db'}", {"only": dirs[SYSTEMS[0]]}, captions)
    with pytest.raises(DesignError, match="needs an explicit --store DIR"):
        create_study("postgresql+psycopg://u@127.0.0.1:1/x", dirs, captions, reference=ref)


def test_corrupt_clip_raises_or_is_skipped_and_reported(tmp_path):
    dirs, ref, captions = make_sources(tmp_path, n_items=4)
    bad = dirs[SYSTEMS[1]] / "yt0002.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(AudioError, match=re.escape(str(bad))):
        create_study(f"sqlite:///{tmp_path / 'a.db'}", dirs, captions, reference=ref, ratings_per_pair=4,
                     sample_rate=16000, seed=0)
    c = create_study(f"sqlite:///{tmp_path / 'b.db'}", dirs, captions, reference=ref, ratings_per_pair=4,
                     sample_rate=16000, seed=0, on_error="skip")
    assert len(c.skipped) == 1 and str(bad) in c.skipped[0]
    assert {r[2] for r in design_rows(f"sqlite:///{tmp_path / 'b.db'}")} == {"yt0000", "yt0001", "yt0003"}


def test_database_checks(tmp_path):
    url, _ = make_study(tmp_path, n_items=2, ratings_per_pair=1, attention_checks=0)
    with pytest.raises(db.StudyDBError, match="already holds a study"):
        db.init_db(url)
    with pytest.raises(db.StudyDBError, match="study database not found"):
        db.open_db(f"sqlite:///{tmp_path / 'nope.db'}")
    assert not (tmp_path / "nope.db").exists()
    engine = db.make_engine(url)
    with engine.begin() as c:
        c.execute(text("UPDATE schema_info SET version = 99"))
    engine.dispose()
    with pytest.raises(db.StudyDBError, match=rf"schema version \[99\]; this musiclm-eval reads version {db.SCHEMA_VERSION}"):
        db.open_db(url)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    e = db.make_engine(other)
    with e.begin() as c:
        c.execute(text("CREATE TABLE t (x INTEGER)"))
    e.dispose()
    with pytest.raises(db.StudyDBError, match="not a musiclm-eval study database"):
        db.open_db(other)
    engine = db.make_engine(url)
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_cli_create_invite_export_analyze(tmp_path):
    dirs, ref, captions = make_sources(tmp_path, n_items=3)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    runner = CliRunner()
    args = ["create", "--captions", str(captions), "--reference", str(ref), "--db", url, "--ratings-per-pair", "3",
            "--raters", "2", "--sample-rate", "16000", "--base-url", "https://rate.example.org"]
    for n, d in dirs.items():
        args += ["--system", f"{n}={d}"]
    r = runner.invoke(main, ["rate", *args])
    assert r.exit_code == 0, r.output
    assert "9 trials over 3 pairs" in r.output and "admin secret (shown once): " in r.output
    assert len(re.findall(r"^https://rate\.example\.org/\?token=[\w-]{22}$", r.output, flags=re.M)) == 2
    r = runner.invoke(main, ["rate", "invite", "--db", url, "-n", "3", "--json", "-"])
    assert r.exit_code == 0 and len([x for x in r.output.split('"') if "?token=" in x]) == 3
    r = runner.invoke(main, ["rate", "export", "--db", url])
    assert r.exit_code == 0 and r.output.startswith("rating_id,assignment_id,rater_id,trial_id,kind")
    r = runner.invoke(main, ["rate", "analyze", "--db", url, "--out", str(tmp_path / "out"), "--bootstrap", "10"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "analysis.json").is_file() and "primary test: wilcoxon_p_bonferroni" in r.output
    r = runner.invoke(main, ["rate", "analyze", "--db", url, "--out", str(tmp_path / "out"), "--bootstrap", "10", "--json", "-",
                             "--primary", "rater"])
    assert r.exit_code == 0 and json.loads(r.output)["primary_test"] == "rater"
    engine = db.open_db(url)
    with db.sessions(engine)() as s:  # the defaults: loudness matched, playback gated, no headphone check
        st = db.the_study(s)
        assert (st.loudness_target_lufs, st.true_peak_ceiling_dbtp, st.playback_min_fraction, st.headphone_check) == (
            -23.0, -1.0, 1.0, False)
    engine.dispose()
    url2 = f"sqlite:///{tmp_path / 'study2.db'}"
    r = runner.invoke(main, ["rate", *[a if a != url else url2 for a in args], "--loudness-target", "off",
                             "--playback-min-fraction", "0", "--headphone-check"])
    assert r.exit_code == 0, r.output
    engine = db.open_db(url2)
    with db.sessions(engine)() as s:
        st = db.the_study(s)
        assert (st.loudness_target_lufs, st.playback_min_fraction, st.headphone_check) == (None, 0.0, True)
        assert all(cl.stored_lufs is None for cl in s.scalars(select(db.Clip)))
    engine.dispose()
    r = runner.invoke(main, ["rate", *[a if a != url else f"sqlite:///{tmp_path / 'study3.db'}" for a in args],
                             "--loudness-target", "loud"])
    assert r.exit_code == 2 and "'loud': expected a number or 'off'" in r.output
    r = runner.invoke(main, ["rate", "create", "--system", "nodir", "--captions", str(captions), "--db", url])
    assert r.exit_code == 2 and "'nodir': expected NAME=DIR" in r.output
    r = runner.invoke(main, ["rate", "analyze", "--db", str(tmp_path / "missing.db"), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 1 and f"{tmp_path / 'missing.db'}: study database not found" in r.output
    assert not Path(tmp_path / "missing.db").exists()

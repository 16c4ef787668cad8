"""Published protocols (metrics/protocols.py, --protocol on score/compare, `musiclm-eval protocols`).

End to end on small audio with the loaders' tiny random-weight checkpoints (tests/loader_fixtures.py): the
numbers are meaningless as music metrics; what is checked is that each protocol selects its models,
conventions and clip length, runs, and records itself in results.json.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from loader_fixtures import clap_checkpoint, openl3_checkpoint, passt_checkpoint

from metrics import protocols as P


def test_apply_fills_only_what_the_user_did_not_give():
    got = P.apply("musicgen", {"embedders": None, "classifier": None, "joint": "mulan-ref", "kld_convention": None})
    assert got == {"embedders": ["vggish"], "classifier": "passt", "joint": "mulan-ref", "kld_convention": "audiocraft"}
    assert P.apply(None, {"classifier": "leaf-corpus", "joint": None}) == {"classifier": "leaf-corpus"}
    meta = P.metadata("musicgen", got)
    assert meta["protocol_name"] == "musicgen" and meta["protocol_settings"]["overridden"] == ["joint"]
    assert P.metadata(None, {}) == {"protocol_name": "custom", "protocol_settings": None}
    with pytest.raises(P.ProtocolError, match="unknown protocol 'audioldm'"):
        P.get("audioldm")


def test_every_protocol_names_registered_models_and_conventions():
    from metrics.embedders import EMBEDDERS
    from metrics.kld import KLD_CONVENTIONS
    from metrics.models import CLASSIFIERS, JOINT

    for p in P.PROTOCOLS.values():
        assert all(e in EMBEDDERS for e in p.embedders), p.name
        assert p.classifier in CLASSIFIERS and p.joint in JOINT and p.kld_convention in KLD_CONVENTIONS, p.name
        assert set(p.sample_rates) == {*p.embedders, p.classifier, p.joint}
        for key in ("embedders", "classifier", "joint", "clip_seconds"):
            assert p.sources.get(key), f"{p.name}: no source for {key}"


def test_published_tables_map_onto_the_keys_each_protocol_writes():
    """Each printed column maps to a result key that protocol's run produces (FAD per embedder, the
    convention's headline KLD key, mcc) — so the dashboard can put a run beside its tables."""
    from metrics.kld import kld_metrics

    tables = P.published_tables()["tables"]
    row = tables["musiclm"]["rows"][2]
    assert {k: row[k] for k in ("system", "FAD_TRILL", "FAD_VGG", "KLD", "MCC")} == {
        "system": "MusicLM", "FAD_TRILL": 0.44, "FAD_VGG": 4.0, "KLD": 1.01, "MCC": 0.51}
    assert P.get("musicgen").tables == ("musicgen", "musicgen-released")
    assert {t for p in P.PROTOCOLS.values() for t in p.tables} == set(tables)
    for name, p in P.PROTOCOLS.items():
        produced = {f"fad_{e}" for e in p.embedders} | {next(iter(kld_metrics(p.kld_convention)))} | {"mcc"}
        for t in (tables[n] for n in p.tables):
            assert set(t["columns"].values()) == produced, name
            assert set(t["decimals"]) == set(t["columns"]) and t["label"], name
            for row in t["rows"]:
                assert set(row) - {"cited", "note"} == {"system", *t["columns"]}
                assert all(row[c] is None or row[c] == "-" or isinstance(row[c], float) for c in t["columns"])
                assert all(row[c] is not None for c in t["columns"]) or t.get("null_reason"), f"{name}: nulls need a reason"
                assert all(row[c] != "-" for c in t["columns"]) or t.get("dash_reason"), f"{name}: '-' needs a reason"


def test_every_published_value_names_a_stored_source():
    """Only values that can be cited are transcribed: every number names its citation(s), each with where it
    was read and whether it is the authors' own document; a table is 'verified' only if all its citations are."""
    for name, t in P.published_tables()["tables"].items():
        cites = t["citations"]
        assert all(c["kind"] in ("primary", "secondary") and (c.get("url") or c.get("where")) and c["says"]
                   for c in cites.values()), name
        used = set()
        for row in t["rows"]:
            for col in t["columns"]:
                keys = row.get("cited", {}).get(col, [])
                if isinstance(row[col], float):
                    assert keys and set(keys) <= set(cites), f"{name} / {row['system']} / {col}: uncited value"
                    # the number appears in what the cited page says (as printed there, or to its decimals)
                    printed = {f"{row[col]:.{t['decimals'][col]}f}", f"{row[col]:g}"}
                    assert any(any(v in cites[k]["says"] for v in printed) for k in keys), (name, row["system"], col)
                else:
                    assert not keys, f"{name} / {row['system']} / {col}: a citation for an empty cell"
                used |= set(keys)
        assert used == set(cites), f"{name}: unused citations {set(cites) - used}"
        assert t["verified"] == all(c["kind"] == "primary" for c in cites.values()), name


def test_comparable_refuses_mixed_protocols_and_says_why():
    assert P.comparable({"run1": "musicgen", "run2": "musicgen"}) is None
    why = P.comparable({"run1": "musicgen", "run2": "stable-audio", "old": "custom"})
    assert "cannot be ranked in one column" in why and "stable-audio: run2" in why and "custom: old" in why
    assert P.run_protocol({"protocol": {"fad": {}}}) == "custom"
    assert P.run_protocol({"protocol_name": "musiclm"}) == "musiclm"


def test_protocols_command_lists_packages_and_weights(tmp_path, monkeypatch):
    from benchmarks.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    passt_checkpoint(tmp_path / "hub" / "checkpoints" / "passt-s-f128-p16-s10-ap.476-swa.pt")
    res = CliRunner().invoke(main, ["protocols", "--json", "-"])
    assert res.exit_code == 0, res.output
    docs = {d["name"]: d for d in json.loads(res.output)["protocols"]}
    assert set(docs) == {"musiclm", "musicgen", "stable-audio"}
    passt = next(m for m in docs["musicgen"]["models"] if m["model"] == "passt")
    assert passt["installed"] is True and passt["weights_present"] is True
    ol3 = next(m for m in docs["stable-audio"]["models"] if m["model"] == "openl3")
    assert ol3["weights_present"] is False and "torchopenl3_mel256_music_512.pth.tar" in ol3["download"]
    text = CliRunner().invoke(main, ["protocols"]).output
    assert "musicgen" in text and "download:" in text and "hear21passt installed" in text


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The demo's audio: clips of ``make run``'s own generator (musiclm_ref.data.synth.generate_corpus, 24 kHz
    mono, the held-out seed's eval split; 2 s here) — two as references, two others written under their ids as the
    system's output (another piece for the same caption), so every metric sees real mismatches."""
    import shutil

    import pandas as pd

    from musiclm_ref.data.synth import generate_corpus

    root = tmp_path_factory.mktemp("proto")
    generate_corpus(root / "demo", n=4, seconds=2.0, seed=1, split="eval")  # 10 s in the demo; 2 s keeps OpenL3 quick
    wavs = sorted((root / "demo").glob("*.wav"))
    assert len(wavs) == 4
    (root / "ref").mkdir()
    (root / "sys").mkdir()
    for ref, other in zip(wavs[:2], wavs[2:]):
        shutil.copy(ref, root / "ref" / ref.name)
        shutil.copy(other, root / "sys" / ref.name)
    caps = pd.read_csv(root / "demo" / "captions.csv").set_index("ytid")
    ids = [w.stem for w in wavs[:2]]
    caps.loc[ids].reset_index()[["ytid", "caption"]].to_csv(root / "captions.csv", index=False)
    hub = root / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    passt_checkpoint(hub / "passt-s-f128-p16-s10-ap.476-swa.pt")
    return root


def _compare(corpus, tmp, protocol, *extra):
    from benchmarks.cli import main

    out = tmp / f"out-{protocol}"
    res = CliRunner().invoke(main, ["compare", "--protocol", protocol, "--system", f"tiny={corpus / 'sys'}",
                                    "--reference", str(corpus / "ref"), "--captions", str(corpus / "captions.csv"),
                                    "--out", str(out), "--bootstrap", "0", "--no-cache", *extra])
    assert res.exit_code == 0, res.output
    return json.loads((out / "results.json").read_text()), res.output


@pytest.mark.slow
def test_compare_musicgen_protocol_end_to_end(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(corpus / "torch"))
    clap = clap_checkpoint(tmp_path / "clap")
    data, output = _compare(corpus, tmp_path, "musicgen", "--embedders", "", "--embedder-path", f"clap={clap}")
    md = data["metadata"]
    assert md["protocol_name"] == "musicgen" and md["protocol_settings"]["overridden"] == ["embedders"]
    assert md["config"]["classifier"] == "passt" and md["config"]["kld_convention"] == "audiocraft"
    assert md["protocol_settings"]["weights_used"]["clap"] == str(clap)
    metrics = data["systems"]["tiny"]["metrics"]
    assert {"kld_audiocraft", "mcc"} <= set(metrics) and np.isfinite(metrics["mcc"]["value"])
    # untrained PaSST: near-uniform softmaxes, so audiocraft's formula (eps inside the log of the generated side
    # only) gives KL(ref||gen) - sum ref*log(1 + eps/gen) ~ -527 * 1e-6 here, slightly below 0 as audiocraft's would
    assert -1e-3 < metrics["kld_audiocraft"]["value"] < 1.0
    assert md["models"]["classifier"].startswith("passt-") and md["models"]["joint"].startswith("clap-")
    assert "random-weight" in md["protocol_settings"]["weights_note"]


@pytest.mark.slow
def test_compare_with_the_muq_mulan_joint_end_to_end(corpus, tmp_path, monkeypatch):
    """MCC through MuQ-MuLan's audio and text towers (transformers 5, adapted) from the command line."""
    pytest.importorskip("muq", reason="muq is not installed (pip install 'musiclm-eval[muq]')")
    from loader_fixtures import muq_mulan_checkpoint

    monkeypatch.setenv("TORCH_HOME", str(corpus / "torch"))
    muq = muq_mulan_checkpoint(tmp_path / "muq")
    data, _ = _compare(corpus, tmp_path, "musicgen", "--embedders", "", "--joint", f"muq-mulan:{muq}")
    md = data["metadata"]
    assert md["protocol_settings"]["overridden"] == ["embedders", "joint"]
    assert md["models"]["joint"].startswith("muq-mulan-")
    mcc = data["systems"]["tiny"]["metrics"]["mcc"]["value"]
    assert np.isfinite(mcc) and -1.0 <= mcc <= 1.0


@pytest.mark.slow
def test_compare_stable_audio_protocol_end_to_end(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(corpus / "torch"))
    clap = clap_checkpoint(tmp_path / "clapf", fusion=True)
    ol3 = openl3_checkpoint(tmp_path / "openl3-tiny-random.pth.tar")
    data, _ = _compare(corpus, tmp_path, "stable-audio", "--embedder-path", f"openl3={ol3}",
                       "--embedder-path", f"clap-sam={clap}")
    md = data["metadata"]
    assert md["protocol_name"] == "stable-audio" and md["protocol_settings"]["overridden"] == []
    assert md["config"]["embedders"] == ["openl3"] and md["config"]["kld_convention"] == "stable-audio"
    assert md["protocol"]["fad"]["openl3"]["sample_rate"] == 44100 and md["protocol"]["fad"]["openl3"]["dim"] == 1024
    metrics = data["systems"]["tiny"]["metrics"]
    assert {"fad_openl3", "kld_stable_audio", "mcc"} <= set(metrics)
    assert "random-weight" in md["protocol_settings"]["weights_note"]


def test_docs_tables_are_what_the_artifact_renders(tmp_path):
    """docs/protocol.md's published tables are rendered from docs/published_tables.json, never edited by hand;
    changing a value in the artifact makes the check fail until the docs are re-rendered."""
    import shutil
    from pathlib import Path

    from benchmarks.figures_protocols import ROOT, rewrite

    assert rewrite(ROOT, check=True) == []
    (tmp_path / "docs").mkdir()
    for f in ("docs/protocol.md", "docs/published_tables.json"):
        shutil.copy(ROOT / f, tmp_path / f)
    p = Path(tmp_path / "docs/published_tables.json")
    p.write_text(p.read_text().replace('"MCC": 0.51', '"MCC": 0.52'))
    assert rewrite(tmp_path, check=True) == ["published-musiclm"]
    rewrite(tmp_path)
    assert "| MusicLM | 0.44 | 4.0 | 1.01 | 0.52 |" in (tmp_path / "docs/protocol.md").read_text()


def test_published_rows_use_the_suites_keys():
    rows = P.published_rows("musiclm")
    assert [r["system"] for r in rows] == ["Riffusion", "Mubert", "MusicLM"]
    assert rows[0] == {"run": rows[0]["run"], "system": "Riffusion", "fad_trill": 0.76, "fad_vggish": 13.4,
                       "kld_musiclm": 1.19, "mcc": 0.34}
    assert rows[0]["run"] == "published: MusicLM paper, Table 1 (musiclm)"
    mg = P.published_rows("musicgen")
    assert {r["run"] for r in mg} == {"published: MusicGen paper, Table 1 (musicgen)",
                                      "published: MusicGen model card (released checkpoints) (musicgen)"}
    by = {r["system"]: r for r in mg}
    assert by["MusicLM"]["kld_audiocraft"] is None and by["MusicGen 1.5B (no melody)"]["fad_vggish"] == 3.4
    assert by["facebook/musicgen-small"] == {"run": by["facebook/musicgen-small"]["run"], "system": "facebook/musicgen-small",
                                              "fad_vggish": 4.88, "kld_audiocraft": 1.42, "mcc": 0.27}


def _run_with_protocol(root, name, protocol):
    from dashboard_fixtures import make_results_dir

    from dashboards.runs import load_run

    out = make_results_dir(root, name, extras=False)
    doc = json.loads((out / "results.json").read_text())
    if protocol is not None:
        doc["metadata"]["protocol_name"] = protocol
    (out / "results.json").write_text(json.dumps(doc))
    return load_run(out, name)


def test_dashboard_never_ranks_two_protocols_in_one_column(tmp_path):
    from dashboards.leaderboard import comparability_warnings, leaderboard, protocol_refusal

    a, b = _run_with_protocol(tmp_path, "mg", "musicgen"), _run_with_protocol(tmp_path, "sa", "stable-audio")
    same = leaderboard([a, _run_with_protocol(tmp_path, "mg2", "musicgen")])
    assert "fad_mel" in same.columns and not any("[" in c for c in same.columns)
    table = leaderboard([a, b])
    assert "fad_mel" not in table.columns
    assert {"fad_mel [musicgen]", "fad_mel [stable-audio]"} <= set(table.columns)
    mg_rows = table["run"] == "mg"
    assert table.loc[mg_rows, "fad_mel [stable-audio]"].isna().all()  # a column holds one protocol only
    assert table.loc[~mg_rows, "fad_mel [musicgen]"].isna().all()
    warnings = comparability_warnings([a, b])
    assert "cannot be ranked in one column" in warnings[0] and "musicgen: mg" in warnings[0]
    old = _run_with_protocol(tmp_path, "old", None)  # a store written before protocols: 'custom'
    assert "custom: old" in protocol_refusal([a, old])


def test_dashboard_shows_a_run_beside_its_published_table(tmp_path):
    from dashboards.leaderboard import leaderboard

    run = _run_with_protocol(tmp_path, "ml", "musiclm")
    table = leaderboard([run], published=True)
    pub = table[table["run"].str.startswith("published:")]
    assert list(pub["system"]) == ["Riffusion", "Mubert", "MusicLM"] and "(musiclm)" in pub["run"].iloc[0]
    assert pub.set_index("system").loc["MusicLM", "mcc"] == 0.51
    assert set(table["run"]) == {"ml", pub["run"].iloc[0]}
    assert len(leaderboard([run])) == len(table) - 3

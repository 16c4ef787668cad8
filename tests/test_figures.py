"""Every figure in README.md and docs/ equals what its committed artifact renders (benchmarks/figures.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import figures
from benchmarks.figures import DOCS, RENDERERS, FigureError, render_doc, run, used_figures


def test_every_figure_matches_its_artifact():
    differs = run(figures.ROOT, write=False)
    assert not differs, "\n".join(differs) + "\nrun `make figures` (python -m benchmarks.figures)"


def test_every_renderer_is_used_by_a_document():
    assert used_figures(figures.ROOT) == set(RENDERERS)


@pytest.fixture
def copy_root(tmp_path):
    """The documents and artifacts in a scratch root, so a test may change them."""
    root = tmp_path / "repo"
    from benchmarks.figures_adherence import ARTIFACTS as ADHERENCE_ARTIFACTS
    from benchmarks.figures_agreement import ARTIFACTS as AGREEMENT_ARTIFACTS
    from benchmarks.figures_control import ARTIFACTS as CONTROL_ARTIFACTS
    from benchmarks.figures_coverage import ARTIFACTS as COVERAGE_ARTIFACTS
    from benchmarks.figures_hierarchy import ARTIFACTS as HIERARCHY_ARTIFACTS
    from benchmarks.figures_mad import ARTIFACTS as MAD_ARTIFACTS
    from benchmarks.figures_memo import ARTIFACTS as MEMO_ARTIFACTS
    from benchmarks.figures_perf import ARTIFACTS as PERF_ARTIFACTS
    from benchmarks.figures_real import ARTIFACTS
    from benchmarks.figures_training import ARTIFACTS as TRAINING_ARTIFACTS

    for rel in [*DOCS, figures.CODEC_MANIFEST, figures.CLASSIFIER_MANIFEST, figures.MULAN_MANIFEST,
                figures.COVERAGE, figures.DEMO, *ARTIFACTS, *CONTROL_ARTIFACTS, *PERF_ARTIFACTS, *MEMO_ARTIFACTS, *TRAINING_ARTIFACTS, *HIERARCHY_ARTIFACTS,
                *COVERAGE_ARTIFACTS, *AGREEMENT_ARTIFACTS, *ADHERENCE_ARTIFACTS, *MAD_ARTIFACTS]:
        src = figures.ROOT / rel
        if src.exists():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / rel)
    return root


def test_a_figure_edited_by_hand_fails_the_check(copy_root):
    readme = copy_root / "README.md"
    text = readme.read_text()
    start = text.index("<!-- figures:codec-summary -->") + len("<!-- figures:codec-summary -->")
    readme.write_text(text[:start] + "0.771 from level 1 alone, " + text[start:].split(", ", 1)[1])
    differs = run(copy_root, write=False)
    assert len(differs) == 1 and "codec-summary" in differs[0] and "README.md" in differs[0]
    assert figures.main(["--check", "--root", str(copy_root)]) == 1
    assert figures.main(["--root", str(copy_root)]) == 0  # make figures repairs it
    assert run(copy_root, write=False) == []


def test_an_artifact_change_reaches_the_document(copy_root):
    path = copy_root / figures.CODEC_MANIFEST
    manifest = json.loads(path.read_text())
    manifest["codec.pt"]["metrics"]["log_mel_distance_by_levels"]["12"] = 0.123456
    path.write_text(json.dumps(manifest))
    differs = run(copy_root, write=True)
    assert {d.split(":")[0] for d in differs} == {"README.md", "docs/protocol.md"}
    assert "0.123 from all 12" in (copy_root / "README.md").read_text()


def test_broken_markers_and_missing_artifacts_are_clear_errors(tmp_path):
    with pytest.raises(FigureError, match="unknown figure 'nope'"):
        render_doc("<!-- figures:nope --><!-- /figures:nope -->", tmp_path, "X.md")
    with pytest.raises(FigureError, match="never closed"):
        render_doc("<!-- figures:codec-summary -->0.8", tmp_path, "X.md")
    with pytest.raises(FigureError, match="manifest.json: artifact not found"):
        render_doc("<!-- figures:codec-summary --><!-- /figures:codec-summary -->", tmp_path, "X.md")


def test_demo_artifact_reads_a_results_store(tmp_path):
    from metrics.result import MetricResult
    from metrics.store import write_store

    store = tmp_path / "store"
    systems = {"a": {"fad_mel": MetricResult("fad_mel", 12.5, (10.0, 15.0)),
                     "kld_audiocraft": MetricResult("kld_audiocraft", 0.5, (0.4, 0.6), extra={"number": "kld"}),
                     "kld_audiocraft_both": MetricResult("kld_audiocraft_both", 1.1, (1.0, 1.2),
                                                         extra={"number": "kld_both"}),
                     "mcc": MetricResult("mcc", -0.25, (-0.3, -0.2))}}
    write_store(store, "compare", systems=systems, metadata={"config": {"kld_convention": "audiocraft"}})
    art = figures.demo_artifact(store)
    assert art["kld_convention"] == "audiocraft"
    assert art["systems"]["a"]["kld"] == {"value": 0.5, "ci95": [0.4, 0.6]}
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    (tmp_path / figures.DEMO).write_text(json.dumps(art))
    table = figures.demo_table(tmp_path)
    assert "| a | 12.5 [10.0, 15.0] | 0.50 [0.40, 0.60] | \u22120.250 [\u22120.300, \u22120.200] |" in table

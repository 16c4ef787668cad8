"""The whole demo (``make run``'s main job), step by step: issue #28's "a first run a newcomer does not wait for".

One round of ``benchmarks.demo.run_demo`` on the embedded default (the same arguments as ``make run``) into a
fresh folder — a cold cache, as a newcomer has it. The step times the demo records itself (``demo.json``:
corpus, generation, compare, melody, memorization, study, …) and the 1-minute load average at its start and
end go into the benchmark JSON's ``extra_info``; README's demo table renders the same record from ``make run``
(``python -m benchmarks.figures --from-demo results/demo``).

Correctness gate: the run produced a Table-1 document with every demo system and the demo's metric columns
(FAD per embedder that loaded, KLD, MCC), and its step times add up to the total.
"""

from __future__ import annotations

import json

from benchmarks.demo import run_demo


def test_whole_demo_step_by_step(benchmark, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    data = benchmark.pedantic(run_demo, args=(out,), kwargs={"log": lines.append}, rounds=1, iterations=1)
    summary = json.loads((out / "demo.json").read_text())
    steps = summary["steps_s"]
    benchmark.extra_info.update(steps_s=steps, elapsed_s=summary["elapsed_s"], loadavg_1min=summary["loadavg_1min"])

    generated = ("musiclm-ref", "musiclm-ref-no-semantic", "unconditional", "retrieval")
    assert set(generated) <= set(data["systems"])
    for name in generated:
        keys = set(data["systems"][name]["metrics"])
        for prefix in ("fad_mel", "kad_mel", "kld_musiclm", "mcc", "adherence_"):
            assert any(k.startswith(prefix) for k in keys), (name, prefix, sorted(keys))
    # the ground-truth row is the reference audio scored against its captions: MCC and adherence, no distances
    assert "mcc" in data["systems"]["ground truth"]["metrics"]
    assert steps and all(v > 0 for v in steps.values()), steps
    assert abs(sum(steps.values()) - summary["elapsed_s"]) <= max(2.0, 0.02 * summary["elapsed_s"]), summary

"""MAD's figures (docs/protocol.md, "MAD"), rendered from ``docs/figures/mad_check.json`` (``python -m benchmarks.mad_check``).

Registered into ``benchmarks.figures.RENDERERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.figures_format import get_field, load, num

MAD_CHECK = Path("docs/figures/mad_check.json")
ARTIFACTS = (MAD_CHECK,)


def mad_check(root: Path) -> str:
    d = load(root, MAD_CHECK)
    par = get_field(d, MAD_CHECK, "parity")
    rows = ["", f"Parity: the largest |MAD − (−log `mauve.compute_mauve`)| over {len(par['cases'])} seeded Gaussian sets "
            f"(30–300 clips a side, 8 or 64 dimensions, drifts 0–2 sd) is {par['max_abs_diff']:.1e}. The k-means seed "
            "(`mauve_seed`, not resampled by the intervals) against the bootstrap of one quantization "
            "(32 dimensions):", "",
            "| clips a side | drift (sd) | MAD, seed 25 | mean over seeds | sd over seeds | bootstrap sd | seed sd / bootstrap sd |",
            "|---|---|---|---|---|---|---|"]
    for r in get_field(d, MAD_CHECK, "noise"):
        rows.append(f"| {r['n']} | {num(r['shift'], 2)} | {num(r['mad_seed25'], 3)} | {num(r['seed_mean'], 3)} "
                    f"({r['n_seeds']} seeds) | {num(r['seed_sd'], 3)} | {num(r['bootstrap_sd'], 3)} ({r['n_boot']} resamples) | "
                    f"{num(r['seed_sd'] / r['bootstrap_sd'], 2)} |")
    cost = "; ".join(f"{c['clips_a_side']:,} clips a side ({c['d']} dimensions): point value {c['point_value_s']:.2f} s, "
                     f"{c['n_boot']:,} resamples {c['resamples_s']:.2f} s" for c in get_field(d, MAD_CHECK, "cost"))
    rows += ["", f"Cost per system and embedder once the embeddings exist: {cost} (load {d.get('loadavg_1min_at_start', '?')} "
             f"on {d.get('cpu_count', '?')} cores; `{d['command']}`, {d['elapsed_s']} s)."]
    return "\n".join(rows) + "\n"


MAD_RENDERERS: dict[str, Callable[[Path], str]] = {"mad-check": mad_check}

"""Plots: the paper's Figure 3 (sweep), per-clip best costs against τ (audit), the detection table."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_match_rate(result, out_dir: Path) -> Path:
    """The paper's Figure 3: exact and approximate match rate vs prompt length, with Wilson 95% CIs."""
    plt = _plt()
    x = [r["prompt_s"] for r in result.rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("exact", "exact"), ("approx", f"approximate (τ={result.tau:.3g})")):
        y = np.array([r[f"{key}_rate"] for r in result.rows])
        ci = np.array([r[f"{key}_ci95"] for r in result.rows])
        ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], marker="o", capsize=3, label=label)
    ax.set_xlabel("semantic prompt length (s)")
    ax.set_ylabel("fraction of matches")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out_dir) / "match_rate.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_audit(result, out_dir: Path) -> Path:
    """Per generated clip: best match cost (capped display for 'no match'), with τ."""
    plt = _plt()
    ids = sorted(result.best_cost)
    vals = np.array([result.best_cost[i] for i in ids])
    fig, ax = plt.subplots(figsize=(max(4, 0.25 * len(ids) + 2), 3.5))
    shown = np.where(np.isfinite(vals), vals, result.tau * 1.5 if result.tau > 0 else 1.0)
    colors = ["tab:red" if np.isfinite(v) else "tab:gray" for v in vals]
    ax.bar(range(len(ids)), shown, color=colors)
    ax.axhline(result.tau, color="k", ls="--", label=f"τ = {result.tau:.3g}")
    ax.set_xticks(range(len(ids)), ids if len(ids) <= 40 else [""] * len(ids), rotation=90, fontsize=6)
    ax.set_ylabel("best match cost (gray: none < τ)")
    ax.set_title(f"matched {result.approx_rate:.0%} of generated clips")
    ax.legend()
    fig.tight_layout()
    path = Path(out_dir) / "match_rate.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_detection(tables: dict[str, dict], out_dir: Path) -> Path:
    """The measured detection table: rate (right clip and lag) per alteration and matcher, with Wilson 95 % CIs."""
    plt = _plt()
    alts = list(dict.fromkeys(a for t in tables.values() for a in t))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(alts) * max(1, len(tables)) + 1.2))
    h = 0.8 / max(1, len(tables))
    for k, (name, t) in enumerate(tables.items()):
        y = np.arange(len(alts)) + k * h
        r = np.array([t.get(a, {}).get("rate", np.nan) for a in alts])
        ci = np.array([t.get(a, {}).get("ci95", [np.nan, np.nan]) for a in alts], dtype=float)
        err = np.clip([r - ci[:, 0], ci[:, 1] - r], 0, None)  # a Wilson bound equal to the rate can round past it
        ax.barh(y, r, height=h, xerr=err, capsize=2, label=name)
    ax.set_yticks(np.arange(len(alts)) + 0.4 - h / 2, alts)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("detected (right training clip and lag), Wilson 95% CI")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    path = Path(out_dir) / "detection.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

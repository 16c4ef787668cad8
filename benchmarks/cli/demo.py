"""``musiclm-eval demo``: the whole pipeline on the embedded default (``make run``)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--run-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("results/demo"), metavar="DIR",
              show_default=True, help="The demo's working folder (corpus, systems, cache, study.db); its results "
              "store is RUN_DIR/results.")
@click.option("--n", type=click.IntRange(min=10), default=100, show_default=True, help="Corpus size (20% becomes the eval set).")
@click.option("--seconds", type=float, default=10.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--memorization-n", type=int, default=16, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def demo(run_dir: Path, n: int, seconds: float, seed: int, memorization_n: int, device: str) -> None:
    """The whole pipeline on the embedded default: corpus → systems → compare → memorization → study."""
    from benchmarks.demo import run_demo
    from metrics.store.lock import store_lock

    with store_lock(run_dir / "results"):  # its results store: a second demo on one --run-dir refuses
        run_demo(run_dir, n=n, seconds=seconds, seed=seed, device=device, memorization_n=memorization_n,
                 log=click.echo)

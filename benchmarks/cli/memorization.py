"""``musiclm-eval memorization sweep|audit|real-set``: thin click layer over ``benchmarks.memorization_runs``
(the reference model's prompt-length sweep, the model-agnostic audit) and ``benchmarks.real_music``.
"""

from __future__ import annotations

import click

from benchmarks.cli.options import cache_options, emit_json, engine_options, json_option, make_cache, out_option
from benchmarks.memorization_runs import run_audit, run_sweep
from benchmarks.real_music import prepare_real_set
from metrics.engine import make_engine
from metrics.memorization import (
    DEFAULT_CLIP_FPR,
    DEFAULT_FPR,
    DEFAULT_TAU_CONFIDENCE,
    PROMPT_LENGTHS,
    WINDOW_TOKENS,
    LevelConfig,
)


def _lengths(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated token counts, got {value!r}") from None


def _echo(result: dict, json_out: str | None) -> None:
    if emit_json(json_out, {k: v for k, v in result.items() if k != "rows"}):
        return
    for name, r in result.get("matchers", {"": result}).items():
        cal = r.get("calibration", {})
        fa = (f"  per-clip false alarms {cal.get('clip_false_alarms')}/{cal.get('n_heldout')} held-out nulls"
              if "clip_false_alarms" in cal else f"  fpr(held-out)={result['fpr']}")
        click.echo(f"{name + ': ' if name else ''}tau={r['tau']:.4g}{fa}  exact_rate={r['exact_rate']:.3f}  "
                   f"approx_rate={r['approx_rate']:.3f}")
        for alt, t in r.get("detection", {}).items():
            click.echo(f"    detected {alt:>14}: {t['detected']}/{t['n']}")
        if p := r.get("detection_planted"):
            modes = ", ".join(f"{n} {m}" for m, n in p["modes"].items()) or "none"
            click.echo(f"    detection table: {p['planted']}/{p['requested']} copies planted ({modes})"
                       + (f"; empty: {p['why_empty']}" if p.get("why_empty") else ""))
    for w in result.get("warnings", []):
        click.echo(f"warning: {w}", err=True)
    click.echo(f"wrote {', '.join(result['files'].values())}")


@click.group()
def memorization() -> None:
    """Memorization: the paper's prompt-length sweep and a model-agnostic copy audit."""


@memorization.command()
@click.option("--checkpoint", type=click.Path(file_okay=False), default=None, help="MusicLM checkpoint dir (default: shipped tiny).")
@click.option("--train", "train", required=True, type=click.Path(exists=True, file_okay=False), help="Training clips folder.")
@click.option("--n", type=int, default=None, help="Number of training examples (seeded draw; default all).")
@click.option("--prompt-lengths", default=",".join(map(str, PROMPT_LENGTHS)), show_default=True, help="T values in tokens.")
@click.option("--n-new", type=int, default=WINDOW_TOKENS, show_default=True, help="Greedy continuation length in tokens.")
@click.option("--fpr", type=float, default=DEFAULT_FPR, show_default=True, help="False-positive rate τ is calibrated to.")
@click.option("--tokenizer", default=None, help="Tokenizer name or checkpoint (default: the model's, else semantic-ref).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@json_option("Write the summary as JSON to PATH ('-': standard output).")
@out_option("Results store to write (results.json, memorization.json, matches, the match-rate plot).", required=True)
@cache_options
def sweep(checkpoint, train, n, prompt_lengths, n_new, fpr, tokenizer, seed, on_error, device, json_out, out_dir,
          no_cache, cache_dir) -> None:
    """Prompt the semantic stage with T training tokens; match rate of its greedy continuation vs T.

    Every example's tokens and every greedy continuation go through the embedding cache: rerun the same
    command after a kill and it computes only the continuations that were not cached (--no-cache: neither
    read nor write it)."""
    res = run_sweep(checkpoint, train, out_dir, n, _lengths(prompt_lengths), fpr, n_new, tokenizer, seed, on_error, device,
                    cache=make_cache(no_cache, cache_dir))
    _echo(res, json_out)
    if c := res.get("cache"):
        click.echo(f"cache {c['root']}: {c['continuations_cached']} continuations read, "
                   f"{c['continuations_computed']} computed", err=True)


@memorization.command(name="audit")
@click.option("--generated", required=True, type=click.Path(exists=True, file_okay=False), help="Generated clips folder.")
@click.option("--train", "train", required=True, type=click.Path(exists=True, file_okay=False), help="Training clips folder.")
@click.option("--null", "null", default=None, type=click.Path(exists=True, file_okay=False),
              help="Audio known not to be in the training set, to calibrate τ per clip (default: leave-one-out "
              "excerpts of the training clips).")
@click.option("--tokenizer", default="semantic-ref", show_default=True, help="Tokenizer name or checkpoint path.")
@click.option("--embedder", "embedders", multiple=True, default=("mel",), show_default=True,
              help="Embedding matcher(s) beside the token matcher: any registered embedder; 'none' for none. Repeatable.")
@click.option("--fpr", type=float, default=DEFAULT_CLIP_FPR, show_default=True,
              help="Fraction of novel generated clips reported as copies (τ calibrated per clip on null clips).")
@click.option("--window-s", type=float, default=5.0, show_default=True)
@click.option("--gen-hop-s", type=float, default=1.0, show_default=True)
@click.option("--train-hop-s", type=float, default=0.04, show_default=True)
@click.option("--max-null", type=int, default=200, show_default=True, help="Null clips at most (seeded draw).")
@click.option("--heldout", type=float, default=0.5, show_default=True, help="Fraction of nulls that measure the false-alarm rate.")
@click.option("--tau-confidence", type=float, default=DEFAULT_TAU_CONFIDENCE, show_default=True,
              help="Probability, over the draw of calibration nulls, that the per-clip false-alarm rate is at most --fpr "
              "(0: the rate on average only, the earlier rule); docs/protocol.md, Memorization.")
@click.option("--search-correction/--no-search-correction", default=True, show_default=True,
              help="Scale τ's level for the training windows a leave-one-out null does not search (max-of-n; "
              "docs/protocol.md, Memorization).")
@click.option("--detect", type=int, default=20, show_default=True,
              help="Planted altered copies per alteration for the detection table (0: none).")
@click.option("--pooling", type=click.Choice(["centred", "frames", "mean"]), default="centred", show_default=True,
              help="Embedding matchers' window vector: per-window mean-normalized frames (centred), unit-norm frames "
              "(frames) or the mean embedding (mean); docs/protocol.md, Memorization.")
@click.option("--min-entropy-bits", type=float, default=1.0, show_default=True,
              help="Token windows below this entropy carry no evidence and are not compared (0: compare all).")
@click.option("--level", type=click.Choice(["agc", "rms", "none"]), default="agc", show_default=True,
              help="Loudness normalization before featurizing: short-term (agc), whole-clip RMS, or none.")
@click.option("--level-dbfs", type=float, default=LevelConfig.ref_dbfs, show_default=True, help="Reference level.")
@click.option("--level-window-s", type=float, default=LevelConfig.window_s, show_default=True, help="agc window.")
@click.option("--phases", type=int, default=4, show_default=True, help="Sub-frame phases of the generated clips.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@json_option("Write the summary as JSON to PATH ('-': standard output).")
@out_option("Results store to write (results.json, memorization.json, matches per matcher, detection table).",
            required=True)
@cache_options
@engine_options
def audit_cmd(generated, train, null, tokenizer, embedders, fpr, window_s, gen_hop_s, train_hop_s, max_null, heldout,
              tau_confidence, search_correction, detect,
              pooling, min_entropy_bits, level, level_dbfs, level_window_s, phases, seed, on_error, device, json_out, out_dir,
              no_cache, cache_dir, engine, ray_address) -> None:
    """Does any generated clip copy a training clip? Matches with ids, offsets and costs, per matcher.

    Every clip's features go through the embedding cache: rerun the same command after a kill and it
    recomputes only what was not cached (--no-cache: neither read nor write it)."""
    res = run_audit(generated, train, out_dir, tokenizer, fpr, window_s, gen_hop_s, train_hop_s, None, seed, on_error,
                    device, LevelConfig(level, level_dbfs, level_window_s), phases,
                    engine=make_engine(engine, ray_address), embedders=embedders, null=null, detect=detect,
                    max_null=max_null, heldout=heldout, min_entropy_bits=min_entropy_bits, pooling=pooling,
                    tau_confidence=tau_confidence, cache=make_cache(no_cache, cache_dir), search_correction=search_correction)
    _echo(res, json_out)


@memorization.command(name="real-set")
@click.option("--clips", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder to write the set into (train/, gen/, null/, truth.json).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--null-per-piece", type=int, default=None, help="Null excerpts per remaining piece (default: all).")
def real_set_cmd(clips, seed, null_per_piece) -> None:
    """Cut the real-music audit set (train/ gen/ null/, truth.json) from Debian's wesnoth-1.16-music."""
    info = prepare_real_set(clips, seed=seed, null_per_piece=null_per_piece)
    click.echo(f"wrote {clips}/train ({info['n_train']}), gen ({info['n_generated']}, {len(info['truth'])} planted copies "
               f"in truth.json), null ({info['n_null']})")

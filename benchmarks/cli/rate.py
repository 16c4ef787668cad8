"""``musiclm-eval rate``: plan a study, create it, invite raters, serve the rating app, analyze the ratings.

Each command is a thin layer over ``human_eval.design`` / ``assign`` / ``analysis``; tests call those.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from benchmarks.cli.options import bootstrap_option, emit_json, json_option, out_option
from human_eval import db
from human_eval.db import ENV_DB

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "human_eval" / "app.py"


@click.group()
def rate() -> None:
    """Blind A-vs-B listening study: plan, create, invite, serve, analyze."""


def _off_or_float(value: str, flag: str) -> float | None:
    if value.strip().lower() in ("off", "none"):
        return None
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a number or 'off'", param_hint=flag) from None


@rate.command()
@click.option("--system", "systems", multiple=True, required=True, metavar="NAME=DIR",
              help="A system's clips (<ytid>.wav …). Repeatable; at least two sources with --reference.")
@click.option("--reference", type=click.Path(path_type=Path), default=None, help="Ground-truth clips (system 'reference').")
@click.option("--captions", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="MusicCaps-format CSV (ytid, caption).")
@click.option("--db", "url", required=True, help="Database URL (sqlite:///study.db, postgresql+psycopg://…) or a path.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Opaque audio store directory [default: <db stem>_audio beside a SQLite file].")
@click.option("--ratings-per-pair", type=int, default=200, show_default=True)
@click.option("--ratings-per-trial", type=int, default=1, show_default=True, help="Raters per trial (>1 gives agreement).")
@click.option("--raters", type=int, default=0, show_default=True, help="Invite tokens to create now.")
@click.option("--trials-per-rater", type=int, default=None, help="[default: ratings needed / --raters, or 20]")
@click.option("--attention-checks", type=int, default=2, show_default=True, help="Gold trials per rater.")
@click.option("--sample-rate", type=int, default=24000, show_default=True, help="Common rate of the re-encoded clips.")
@click.option("--seconds", type=float, default=10.0, show_default=True, help="Clips are cropped to this length.")
@click.option("--loudness-target", default="-23", show_default=True, metavar="LUFS|off",
              help="Match every stimulus to this ITU-R BS.1770 integrated loudness ('off': store as received).")
@click.option("--true-peak-ceiling", type=float, default=-1.0, show_default=True, metavar="DBTP",
              help="True-peak ceiling of the matched stimuli (a look-ahead limiter keeps peaks under it).")
@click.option("--playback-min-fraction", default="1", show_default=True, metavar="F|off",
              help="Unlock the answer once both clips were heard to this fraction; 0 logs plays without gating; "
              "'off' shows plain players and logs nothing.")
@click.option("--headphone-check/--no-headphone-check", default=False, show_default=True,
              help="Woods et al. (2017) antiphase headphone test before the first trial.")
@click.option("--prolific-study-id", default=None, help="Accept Prolific participants of this study id.")
@click.option("--completion-code", default=None, help="Prolific completion code [default: random].")
@click.option("--name", default="", help="Study name shown to admins.")
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--base-url", default="http://127.0.0.1:8501", show_default=True, help="Prefix of the printed invite links.")
@json_option("Write the study's summary (admin secret and invite links included) as JSON to PATH ('-': print it).")
def create(systems, reference, captions, url, store, ratings_per_pair, ratings_per_trial, raters, trials_per_rater,
           attention_checks, sample_rate, seconds, loudness_target, true_peak_ceiling, playback_min_fraction,
           headphone_check, prolific_study_id, completion_code, name, on_error, seed, base_url, json_out) -> None:
    """Build a balanced study and its opaque audio store in a new database."""
    from human_eval.design import create_study, invite_link

    parsed = {}
    for spec in systems:
        if "=" not in spec:
            raise click.BadParameter(f"{spec!r}: expected NAME=DIR", param_hint="--system")
        n, d = spec.split("=", 1)
        if n in parsed:
            raise click.BadParameter(f"system {n!r} given twice", param_hint="--system")
        parsed[n] = Path(d)
    c = create_study(url, parsed, captions, reference=reference, store=store, ratings_per_pair=ratings_per_pair,
                     ratings_per_trial=ratings_per_trial, raters=raters, trials_per_rater=trials_per_rater,
                     attention_checks=attention_checks, seed=seed, sample_rate=sample_rate, seconds=seconds,
                     name=name, prolific_study_id=prolific_study_id, completion_code=completion_code,
                     on_error=on_error, loudness_target=_off_or_float(loudness_target, "--loudness-target"),
                     true_peak_ceiling=true_peak_ceiling,
                     playback_min_fraction=_off_or_float(playback_min_fraction, "--playback-min-fraction"),
                     headphone_check=headphone_check)
    links = [invite_link(base_url, t) for t in c.tokens]
    out = {"db": db.redact(url), "store": str(c.store), "pairs": [list(p) for p in c.pairs], "trials": c.n_trials,
           "attention_trials": c.n_attention, "admin_secret": c.admin_secret, "invites": links, "skipped": c.skipped}
    if emit_json(json_out, out):
        return
    click.echo(f"study created: {c.n_trials} trials over {len(c.pairs)} pairs, {c.n_attention} attention checks; store {c.store}")
    for s in c.skipped:
        click.echo(f"  skipped {s}")
    click.echo(f"admin secret (shown once): {c.admin_secret}")
    for link in links:
        click.echo(link)


@rate.command()
@click.option("--db", "url", required=True)
@click.option("-n", "--n", "n", type=int, default=1, show_default=True, help="How many invite links.")
@click.option("--base-url", default="http://127.0.0.1:8501", show_default=True)
@json_option("Write the invite links as a JSON list to PATH ('-': print it).")
def invite(url, n, base_url, json_out) -> None:
    """Create per-rater token links (each token is shown once; the database keeps only its hash)."""
    from human_eval.design import invite as make_invites
    from human_eval.design import invite_link

    links = [invite_link(base_url, t) for t in make_invites(url, n)]
    if not emit_json(json_out, links):
        click.echo("\n".join(links))


def serve_invocation(url: str, port: int = 8501, address: str = "127.0.0.1",
                     base_env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` argv and environment for the rating app (checked: the database must open)."""
    db.open_db(url).dispose()
    env = dict(os.environ if base_env is None else base_env)
    env[ENV_DB] = db.normalize_url(url)
    root = str(ROOT)
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    argv = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.address", address,
            "--server.headless", "true", "--server.runOnSave", "false", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal", "--server.enableXsrfProtection", "true"]
    return argv, env


@rate.command()
@click.option("--db", "url", required=True)
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 behind a proxy).")
def serve(url, port, address) -> None:
    """Start the rating app (raters: ?token=… or Prolific parameters; admin: ?admin=1)."""
    argv, env = serve_invocation(url, port, address)
    click.echo(f"rating app: http://{address}:{port}  (admin: /?admin=1)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # exec: Ctrl-C and a supervisor's SIGTERM reach Streamlit itself


@rate.command()
@click.option("--db", "url", required=True)
@out_option("Results store to write (results.json, pairwise.csv) with analysis.json, the CSV tables and plots.",
            required=True)
@click.option("--max-failures", type=int, default=0, show_default=True,
              help="Exclude raters with more failed attention checks than this.")
@click.option("--screening", type=click.Choice(["exclude", "report"]), default="exclude", show_default=True,
              help="Raters who failed the headphone check: excluded, or only reported.")
@click.option("--primary", type=click.Choice(["wilcoxon", "rater"]), default="wilcoxon", show_default=True,
              help="The test a report quotes (wilcoxon: pooled, as the MusicLM paper; rater: rater sign-flip). "
              "Both are always computed.")
@click.option("--effect", type=float, default=0.6, show_default=True,
              help="Planned win rate among decided ratings, for the power columns.")
@click.option("--looks", type=int, default=4, show_default=True,
              help="Planned interim looks (equal information fractions) for sequential stopping.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Family-wise level (Bonferroni over pairs).")
@bootstrap_option("Rater-bootstrap resamples.", dest="n_boot")
@click.option("--seed", type=int, default=0, show_default=True)
@json_option("Also write analysis.json to PATH ('-': print it).")
def analyze(url, out_dir, max_failures, screening, primary, effect, looks, alpha, n_boot, seed, json_out) -> None:
    """Wins, pooled and rater-aware tests, sequential looks and power, Bradley–Terry, agreement: JSON + CSV + PNG."""
    from human_eval.analysis import analyze as run_analysis
    from human_eval.analysis import write_outputs

    a = run_analysis(url, max_failures=max_failures, n_boot=n_boot, seed=seed, screening=screening,
                     primary=primary, effect=effect, looks=looks, alpha=alpha)
    write_outputs(a, out_dir)
    if emit_json(json_out, a.to_json()):
        return
    click.echo(a.wins.to_string(index=False))
    if len(a.pairs):
        click.echo(a.pairs[["system_a", "system_b", "wins_a", "ties", "wins_b", "n_raters", "wilcoxon_p_bonferroni",
                            "rater_p_bonferroni", "looks_done", "decided", "power_at_effect_planned"]]
                   .to_string(index=False))
    inf = a.inference
    click.echo(f"primary test: {inf['primary_column']} ({inf['primary_description']}); sequential: "
               f"{inf['sequential']['looks']} looks, {inf['sequential']['rule']}")
    click.echo(f"excluded raters: {len(a.exclusions['excluded_raters'])}; outputs in {out_dir}")


@rate.command()
@click.option("--systems", type=int, required=True, help="Sources compared (the reference counts as one).")
@click.option("--effect", type=float, default=0.6, show_default=True,
              help="Win rate of the better system among decided ratings, to be detected in every pair.")
@click.option("--power", "target_power", type=float, default=0.8, show_default=True)
@click.option("--raters", type=int, default=None,
              help="Plan for this many raters with the rater-aware test (default: pooled Wilcoxon, raters ignored).")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Family-wise level (Bonferroni over pairs).")
@click.option("--ties", type=float, default=0.2, show_default=True, help="Expected share of 'no preference'.")
@click.option("--strong", type=float, default=0.5, show_default=True, help="Share of decided answers that are strong.")
@click.option("--rater-sd", type=float, default=0.3, show_default=True,
              help="Spread of the raters' own leanings (SD on the logit scale) when --raters is given.")
@click.option("--looks", type=int, default=1, show_default=True, help="Interim looks (O'Brien-Fleming-type spending).")
@click.option("--simulations", "n_sim", type=int, default=1000, show_default=True)
@click.option("--agreement", "agreement", type=float, default=None, metavar="A",
              help="Also simulate a metric whose pair-level agreement with the listeners is A (in (0.5, 1)): the power "
              "of `musiclm-eval agreement` to tell it from chance at --agreement-raters and --agreement-captions, and its interval width.")
@click.option("--agreement-captions", "captions", type=int, default=30, show_default=True,
              help="Captions of the study (with --agreement).")
@click.option("--agreement-raters", type=int, default=12, show_default=True,
              help="Raters of the study (with --agreement; --raters plans the pairwise tests).")
@click.option("--ratings-per-trial", type=int, default=1, show_default=True,
              help="Raters per caption x pair trial (with --agreement).")
@click.option("--seed", type=int, default=0, show_default=True)
@json_option("Write the plan as JSON to PATH ('-': print it).")
def plan(systems, effect, target_power, raters, alpha, ties, strong, rater_sd, looks, n_sim, agreement, captions,
         agreement_raters, ratings_per_trial, seed, json_out) -> None:
    """Ratings per pair (and per rater) that detect EFFECT with POWER, by simulating the study's own analysis."""
    from human_eval.agreement_plan import agreement_power
    from human_eval.planning import plan as make_plan

    p = make_plan(systems, effect, target_power, raters, alpha, ties, strong, rater_sd, looks, n_sim, seed)
    ag = None
    if agreement is not None:
        ag = agreement_power(agreement, systems, captions, agreement_raters, ratings_per_trial, alpha, rater_sd,
                             n_sim=min(n_sim, 200), seed=seed)
    if emit_json(json_out, {**p.to_dict(), **({"agreement": ag} if ag else {})}):
        return
    click.echo(f"{p.systems} systems, {p.pairs} pairs, effect {p.effect} (win rate among decided ratings), "
               f"alpha {p.alpha} -> {p.alpha_per_pair:.4g} per pair; analysis: {p.analysis}")
    click.echo(f"ratings per pair: {p.ratings_per_pair}   total: {p.ratings_total}"
               + (f"   per rater: {p.ratings_per_rater} ({p.raters} raters)" if p.raters else ""))
    click.echo(f"simulated power: {p.power:.3f} ± {p.power_se:.3f} (target {p.power_target})"
               + (f"; {p.looks} looks" if p.looks > 1 else ""))
    click.echo(f"create it with: musiclm-eval rate create ... --ratings-per-pair {p.ratings_per_pair}"
               + (f" --raters {p.raters} --trials-per-rater {p.ratings_per_rater}" if p.raters else ""))
    if ag:
        click.echo(f"metric-human agreement {ag['agreement']} (simulated; per-clip rho {ag['rho']:.2f}): with {ag['raters']} "
                   f"raters, {ag['captions']} captions, {ag['ratings_per_trial']} rating(s) per trial ({ag['ratings']} "
                   f"ratings), power {ag['power']:.2f} ± {ag['power_se']:.2f} at alpha {ag['alpha']}; mean 95% CI "
                   f"width {ag['mean_ci95_width']:.3f}, coverage {ag['ci95_coverage']:.2f} ({ag['n_sim']} simulations)")


@rate.command()
@click.option("--db", "url", required=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True,
              metavar="PATH", help="CSV file to write ('-': standard output).")
def export(url, csv_path) -> None:
    """Every rating with systems, rater, orientation and timing as CSV."""
    from human_eval.analysis import export_ratings_csv

    text = export_ratings_csv(url)
    if csv_path == "-":
        click.echo(text, nl=False)
    else:
        Path(csv_path).write_text(text)

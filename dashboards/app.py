"""The results explorer: ``musiclm-eval dashboard`` runs this script with ``streamlit run``.

One script with a sidebar page picker (rather than ``st.navigation``) so that every page can be driven
by Streamlit's AppTest. Inputs come from the environment the CLI sets: ``MUSICLM_EVAL_RESULTS``
(``os.pathsep``-joined results directories) and ``MUSICLM_EVAL_DB`` (ratings database URL). All numbers
come from the ``dashboards`` modules (``runs``, ``leaderboard``, ``per_clip``, ``clips``, ``memorization``,
``study``); this file only lays them out and turns every gap into a sentence.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

try:
    import dashboards  # noqa: F401  (installed, or started from the repository root)
except ModuleNotFoundError:  # `streamlit run dashboards/app.py` from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboards.clips import clip_view, scores_table  # noqa: E402
from dashboards.formatting import fmt  # noqa: E402
from dashboards.leaderboard import (  # noqa: E402
    comparability_warnings,
    leaderboard,
    metadata_table,
    metric_long,
    outside_interval,
    pairwise,
    skipped_files,
)
from dashboards.memorization import match_audio, memo_detection, memo_false_alarms  # noqa: E402
from dashboards.per_clip import (  # noqa: E402
    aspect_counts,
    clip_choices,
    filter_clips,
    metric_columns,
    per_clip_histogram,
    per_clip_summary,
    worst_clips,
)
from dashboards.runs import (  # noqa: E402
    DEGRADATION_FILE,
    ENV_RESULTS,
    Run,
    cache_key,
    higher_is_better,
    load_run,
    results_dirs_from_env,
    run_names,
)
from dashboards.study import ENV_DB, HumanStudy, agreement_views, human_n_boot, load_human_study  # noqa: E402
from metrics.intervals import VALUE_OUTSIDE_INTERVAL_NOTE  # noqa: E402
from metrics.memorization.io import MATCHES_FILE  # noqa: E402
from metrics.store import arrow  # noqa: E402

PAGES = ("Leaderboard", "Plots", "Clips", "Memorization", "Human study")


@st.cache_data(show_spinner="Loading results…", max_entries=64)
def _load_run(path: str, name: str, key: tuple) -> Run:
    """Cached on (path, name, mtimes): reruns and page switches never re-read an unchanged run."""
    del key  # only part of the cache key
    return load_run(path, name=name)


def load_runs(paths: list[Path]) -> list[Run]:
    names = run_names(paths)
    return [_load_run(str(p), n, cache_key(p)) for p, n in zip(paths, names)]


@st.cache_data(show_spinner="Reading the ratings database…", ttl=60)
def _load_study(url: str, max_failures: int, n_boot: int) -> HumanStudy:
    """Cached for a minute: a running study keeps collecting ratings, so the page refreshes itself."""
    return load_human_study(url, max_failures=max_failures, n_boot=n_boot)


def audio(path: Path | None, raw: str | None, label: str) -> None:
    """Play a clip, or say which file is missing (never a traceback)."""
    if path is not None:
        st.audio(str(path))
    elif raw:
        st.warning(f"{label}: audio file not found: {raw}")
    else:
        st.info(f"{label}: no audio path recorded")


# ---------------------------------------------------------------------------------------------
# pages


def page_leaderboard(runs: list[Run]) -> None:
    st.header("Leaderboard")
    have = [r for r in runs if r.results is not None]
    if not have:
        st.info("None of the selected runs has a usable results.json (see the problems listed above).")
        return
    for w in comparability_warnings(have):
        st.warning(w, icon="⚠️")
    table = leaderboard(have)
    numeric = [c for c in table.columns if c not in ("run", "system", "missing", "skipped") and not c.endswith("95% CI")]
    c1, c2 = st.columns([3, 1])
    sort_by = c1.selectbox("Sort by", ["run", "system", *numeric], index=0)
    worst_first = c2.toggle("Worst first", value=False,
                            help="Metrics sort best first in the direction each run's store records (↑ / ↓)")
    beside = st.toggle("Beside the published table of each run's protocol", value=False,
                       help="docs/published_tables.json: the paper's numbers, named by paper and protocol")
    table = leaderboard(have, sort_by=sort_by, best_first=not worst_first, published=beside)
    arrows = {c: arrow(higher_is_better(have, c.split(" [", 1)[0])) for c in numeric if c not in ("n_clips",)}
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(f"{c} {arrows[c]}" if c in arrows else c, format="%.4g")
                                for c in numeric})
    st.caption("↓ lower is better, ↑ higher is better: the direction each metric declares, as the run's store "
               "records it. Click a column header to sort in place.")
    if outside_interval(metric_long(have)):
        st.caption(VALUE_OUTSIDE_INTERVAL_NOTE)
    pairs = pairwise(have)
    if len(pairs):
        st.subheader("Paired comparisons")
        st.dataframe(pairs, hide_index=True, width="stretch")
        st.caption("A − B over the clip ids both systems share, clip-paired: the jackknife t-test of the "
                   "bias-corrected difference for FAD, KAD, KLD and MCC, the BCa bootstrap (same resampled ids for "
                   "the reference and both systems) otherwise; Holm-corrected across the pairs of each metric; "
                   "significant = p (Holm) < 0.05.")
    skipped = skipped_files(have)
    if len(skipped):
        with st.expander(f"{len(skipped)} clip(s) left out of the metrics (missing or skipped)"):
            st.dataframe(skipped, hide_index=True, width="stretch")
    st.subheader("Run metadata")
    meta = metadata_table(have)
    if meta.empty:
        st.info("The selected runs record no metadata (versions, checkpoints, embedders, protocol).")
    else:
        st.dataframe(meta, hide_index=True, width="stretch")


def page_plots(runs: list[Run]) -> None:
    st.header("Metric plots")
    long = metric_long(runs)
    if long.empty:
        st.info("No metric values in the selected runs.")
    else:
        metric = st.selectbox("Metric", list(dict.fromkeys(long["metric"])), key="plot_metric")
        sub = long[long["metric"] == metric].copy()
        sub["label"] = sub["run"] + " · " + sub["system"]
        base = alt.Chart(sub).encode(y=alt.Y("label:N", title=None, sort=None))
        points = base.mark_point(filled=True, size=80).encode(
            x=alt.X("value:Q", title=metric, scale=alt.Scale(zero=False)), color="run:N",
            tooltip=["run", "system", "value", "lo", "hi"])
        bars = base.mark_rule().encode(x="lo:Q", x2="hi:Q", color="run:N")
        st.altair_chart(bars + points, width="stretch")
        if sub["lo"].isna().any():
            st.caption("Systems without an error bar have no recorded 95% CI.")
        if outside_interval(sub):
            st.caption(VALUE_OUTSIDE_INTERVAL_NOTE)
    st.subheader("Per-clip distributions")
    with_clips = [r for r in runs if r.per_clip is not None and metric_columns(r.per_clip)]
    if not with_clips:
        st.info("No per-clip metrics in the selected runs (per_clip.csv missing or without metric columns).")
    else:
        run = _pick_run(with_clips, "dist_run")
        metric = st.selectbox("Per-clip metric", metric_columns(run.per_clip), key="dist_metric")
        st.dataframe(per_clip_summary(run.per_clip, metric), hide_index=True, width="stretch")
        hist = per_clip_histogram(run.per_clip, metric)
        chart = alt.Chart(hist).mark_bar(opacity=0.6).encode(
            x=alt.X("lo:Q", bin="binned", title=metric), x2="hi:Q", y=alt.Y("count:Q", stack=None), color="system:N")
        st.altair_chart(chart, width="stretch")
    st.subheader("FAD vs degradation")
    curves = [r for r in runs if r.degradation is not None]
    if not curves:
        st.info(f"No {DEGRADATION_FILE} in the selected runs (the degradation sweep was not run).")
    for run in curves:
        emb = f" ({run.degradation_embedder})" if run.degradation_embedder else ""
        st.markdown(f"**{run.name}**{emb}")
        chart = alt.Chart(run.degradation).mark_line(point=True).encode(
            x="severity:Q", y=alt.Y("fad:Q", title=f"FAD{emb}"), color="kind:N", tooltip=["kind", "severity", "fad"])
        st.altair_chart(chart, width="stretch")


def page_clips(runs: list[Run]) -> None:
    st.header("Clips")
    with_clips = [r for r in runs if r.per_clip is not None]
    if not with_clips:
        st.info("No per_clip.csv in the selected runs: per-clip audio and scores are unavailable.")
        return
    run = _pick_run(with_clips, "clip_run")
    df = run.per_clip
    counts = aspect_counts(df)
    c1, c2 = st.columns([2, 1])
    aspects = c1.multiselect("MusicCaps aspects (all of)", list(counts.index),
                             format_func=lambda a: f"{a} ({counts[a]})", key="aspects")
    text = c2.text_input("Caption or ytid contains", key="clip_text")
    if "aspect_list" not in df.columns:
        st.caption("This run's per_clip.csv has no aspect_list column; aspect filtering is unavailable.")
    shown = filter_clips(df, aspects, text)
    choices = clip_choices(shown)
    st.caption(f"{len(choices)} of {df['ytid'].nunique()} clips match.")
    if choices:
        captions = dict(choices)
        ytid = st.selectbox("Caption", [y for y, _ in choices], key="clip_pick",
                            format_func=lambda y: f"{y} — {captions[y][:90]}")
        view = clip_view(run, ytid)
        st.markdown(f"> {view.caption}")
        if view.aspects:
            st.caption("Aspects: " + ", ".join(view.aspects))
        cols = st.columns(1 + len(view.systems))
        with cols[0]:
            st.markdown("**Reference**")
            audio(view.reference, view.reference_raw, "reference")
        for col, s in zip(cols[1:], view.systems):
            with col:
                st.markdown(f"**{s['system']}**")
                audio(s["audio"], s["audio_raw"], s["system"])
        if any(s["scores"] for s in view.systems):
            # one static table below the players: a scrolling grid in each narrow player column showed only
            # the metric names, its values scrolled off-screen
            st.table(scores_table(run, view).set_index("metric"))
    st.subheader("Worst clips")
    metrics = metric_columns(df)
    if not metrics:
        st.info("This run's per_clip.csv has no per-clip metric columns (mcc, kld, fad_<embedder>).")
        return
    c1, c2, c3 = st.columns(3)
    system = c1.selectbox("System", sorted(df["system"].unique()), key="worst_system")
    metric = c2.selectbox("Metric", metrics, key="worst_metric")
    n = c3.number_input("How many", min_value=1, max_value=500, value=10, key="worst_n")
    higher = higher_is_better([run], metric)
    st.caption(f"The {n} clips with the {'lowest' if higher else 'highest'} {metric} for {system} "
               f"({arrow(higher)}: {'higher' if higher else 'lower'} is better).")
    st.dataframe(worst_clips(df, system, metric, int(n), higher_is_better=higher), hide_index=True, width="stretch")


def page_memorization(runs: list[Run]) -> None:
    st.header("Memorization")
    have = [r for r in runs if r.memorization is not None]
    if not have:
        st.info("No memorization outputs (memorization/memorization.json, matches.csv) in the selected runs. "
                "Run `musiclm-eval memorization` to produce them.")
        return
    run = _pick_run(have, "memo_run")
    memo = run.memorization
    d = memo.data
    fa = memo_false_alarms(memo)
    c = st.columns(4)
    c[0].metric("τ (match threshold)", fmt(d.get("tau")))
    if fa is not None:
        r0 = fa.iloc[0]
        c[1].metric("Per-clip false-alarm rate (held-out nulls)", fmt(r0["clip_false_alarm_rate"]),
                    help=f"{r0['false_alarms']} of {r0['n_null_heldout']} held-out null clips reported; "
                         f"95% CI [{fmt(r0['ci95_lo'])}, {fmt(r0['ci95_hi'])}]")
    else:
        c[1].metric("FPR on held-out negatives", fmt(d.get("fpr")))
    c[2].metric("Exact match rate", fmt(d.get("exact_rate")))
    c[3].metric("Reported clips (approximate match rate)", fmt(d.get("approx_rate")))
    if fa is not None:
        st.subheader("False alarms per generated clip, by matcher")
        st.caption("τ is calibrated on null clips (audio not in the training set): the share of novel clips the "
                   "audit reports. 'certified': the Wilson upper bound is within the target.")
        st.dataframe(fa, hide_index=True, width="stretch")
    det = memo_detection(memo)
    if det is not None:
        st.subheader("Detection of planted altered copies")
        st.caption("Altered excerpts of the training clips, audited at the calibrated τ; detected = reported "
                   "against the right training clip at the right lag. Bars: Wilson 95% CI.")
        base = alt.Chart(det).encode(y=alt.Y("alteration:N", sort=None, title=None), color="matcher:N",
                                     yOffset="matcher:N")
        bars = base.mark_bar().encode(x=alt.X("rate:Q", title="detected", scale=alt.Scale(domain=[0, 1])),
                                      tooltip=["matcher", "alteration", "detected", "n", "rate", "ci95_lo", "ci95_hi"])
        err = base.mark_rule().encode(x="ci95_lo:Q", x2="ci95_hi:Q")
        st.altair_chart(bars + err, width="stretch")
        st.dataframe(det, hide_index=True, width="stretch")
    if memo.rows is not None:
        st.subheader("Match rate vs prompt length")
        long = pd.concat([
            memo.rows.assign(kind=k, rate=memo.rows[f"{k}_rate"], lo=memo.rows[f"{k}_lo"], hi=memo.rows[f"{k}_hi"])
            for k in ("exact", "approx")], ignore_index=True)[["prompt_length", "kind", "rate", "lo", "hi"]]
        base = alt.Chart(long).encode(x=alt.X("prompt_length:Q", title="prompt length (semantic tokens)"), color="kind:N")
        band = base.mark_area(opacity=0.2).encode(y="lo:Q", y2="hi:Q")
        line = base.mark_line(point=True).encode(y=alt.Y("rate:Q", title="match rate"),
                                                 tooltip=["prompt_length", "kind", "rate", "lo", "hi"])
        st.altair_chart(band + line, width="stretch")
        st.dataframe(memo.rows, hide_index=True, width="stretch")
    st.subheader("Matches")
    if memo.matches is None:
        st.info(f"No {MATCHES_FILE} in {memo.path}.")
        return
    m = memo.matches
    st.caption(f"{len(m)} matches.")
    st.dataframe(m, hide_index=True, width="stretch")
    if len(m):
        i = st.selectbox("Listen to match", list(range(len(m))), key="match_pick",
                         format_func=lambda i: f"{m.iloc[i]['generated_id']} ↔ {m.iloc[i]['train_id']}")
        row = m.iloc[int(i)]
        gen, train = match_audio(memo, row)
        c1, c2 = st.columns(2)
        with c1:
            st.markdown(f"**Generated** `{row['generated_id']}`")
            audio(gen, _str(row.get("generated_path")), "generated clip")
        with c2:
            st.markdown(f"**Training** `{row['train_id']}`")
            audio(train, _str(row.get("train_path")), "training clip")


def page_human_study(db_url: str | None, runs: list[Run]) -> None:
    st.header("Human study")
    if not db_url:
        st.info(f"No ratings database given. Start with `musiclm-eval dashboard --db URL` (or set {ENV_DB}).")
        section_agreement(runs)
        return
    max_failures = st.number_input("Attention-check failures allowed per rater", min_value=0, max_value=100,
                                   value=0, key="max_failures")
    study = _load_study(db_url, int(max_failures), human_n_boot())
    st.caption(f"Database: {study.url}")
    for p in study.problems:
        st.warning(p)
    if study.wins is None:
        return
    p = study.progress
    if p:
        st.subheader("Progress")
        wanted, got = p.get("ratings_wanted") or 0, p.get("ratings_collected") or 0
        c = st.columns(3)
        c[0].metric("Ratings collected", f"{got} / {wanted}")
        c[1].metric("Raters completed", f"{p.get('raters_completed', 0)} / {p.get('raters', 0)}")
        c[2].metric("Excluded raters", str(len(study.exclusions.get("excluded_raters", []))))
        if wanted:
            st.progress(min(1.0, got / wanted))
        if study.progress_by_pair is not None:
            st.dataframe(study.progress_by_pair, hide_index=True, width="stretch")
    st.subheader("Wins")
    st.dataframe(study.wins, hide_index=True, width="stretch")
    if study.wins_matrix is not None and len(study.wins_matrix):
        st.caption("Wins matrix (row beat column)")
        st.dataframe(study.wins_matrix, width="stretch")
    if study.pairs is not None and len(study.pairs):
        st.caption("Per-pair tests: pooled (Wilcoxon signed-rank, sign test) and rater-aware (rater sign-flip p, "
                   "rater-bootstrap CIs of mean score and win rate), Bonferroni/Holm-corrected; sequential looks "
                   "and power at the planned effect")
        st.dataframe(study.pairs, hide_index=True, width="stretch")
        inf = study.inference
        if inf.get("primary_column"):
            seq = inf.get("sequential") or {}
            st.info(f"Primary test: `{inf['primary_column']}` — {inf.get('primary_description', '')}. "
                    f"Also shown: {', '.join(inf.get('also_reported', []))}. Sequential stopping: "
                    f"{seq.get('looks')} looks, {seq.get('rule', '')}.")
    st.subheader("Bradley–Terry strengths (95% CI, raters resampled)")
    bt = study.strengths
    if bt is None or not len(bt):
        st.info("No decided comparisons yet: Bradley–Terry strengths need at least one preference.")
    else:
        st.dataframe(bt, hide_index=True, width="stretch")
        points = alt.Chart(bt).mark_point(filled=True, size=80).encode(
            x=alt.X("log_strength:Q", title="log-strength"), y=alt.Y("system:N", sort=None, title=None))
        bars = alt.Chart(bt).mark_rule().encode(x="ci_low:Q", x2="ci_high:Q", y=alt.Y("system:N", sort=None))
        st.altair_chart(bars + points, width="stretch")
    st.subheader("Agreement")
    ag = study.agreement
    c = st.columns(2)
    c[0].metric("Krippendorff's α (interval)", fmt(ag.get("krippendorff_alpha_interval")))
    c[1].metric("Pairwise direction agreement", fmt(ag.get("pairwise_direction_agreement")))
    st.caption(f"{ag.get('trials_rated_more_than_once', 0)} trial(s) rated more than once. "
               + str(study.exclusions.get("rule", "")))
    if study.raters is not None and len(study.raters):
        st.dataframe(study.raters, hide_index=True, width="stretch")
    section_agreement(runs)


def section_agreement(runs: list[Run]) -> None:
    """The `musiclm-eval agreement` stores among the runs: which metric agrees with the listeners."""
    views = agreement_views(runs)
    if not views:
        return
    st.subheader("Metric–human agreement")
    for v in views:
        st.markdown(f"**{v.name}**")
        if v.problem:
            st.warning(v.problem)
            continue
        for note in v.notes:
            (st.warning if note.startswith(("SIMULATED", "only")) else st.caption)(note)
        st.dataframe(v.table, hide_index=True, width="stretch")
        for metric, path in v.plots.items():
            st.image(str(path), caption=f"{metric}: oriented metric difference vs the raters' mean score")


def _pick_run(runs: list[Run], key: str) -> Run:
    if len(runs) == 1:
        return runs[0]
    names = [r.name for r in runs]
    return runs[names.index(st.selectbox("Run", names, key=key))]


def _str(v: object) -> str | None:
    return None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)


# ---------------------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="musiclm-eval results", page_icon="🎼", layout="wide")
    paths = results_dirs_from_env()
    db_url = os.environ.get(ENV_DB) or None
    page = st.sidebar.radio("Page", PAGES, key="page")
    runs = load_runs(paths)
    if runs:
        names = [r.name for r in runs]
        chosen = st.sidebar.multiselect("Runs", names, default=names, key="runs")
        runs = [r for r in runs if r.name in chosen]
    for run in runs:
        if run.problems:
            with st.sidebar.expander(f"⚠️ {run.name}: {len(run.problems)} problem(s)", expanded=run.results is None):
                for p in run.problems:
                    st.markdown(f"- {p}")
    if page != "Human study":
        if not paths:
            st.info(f"No results directories given. Start with `musiclm-eval dashboard --results DIR` "
                    f"(or set {ENV_RESULTS}).")
            return
        for r in runs:
            if r.results is None and r.memorization is None:
                st.error(f"Run {r.name!r} has no usable results: {'; '.join(r.problems[:1])}")
            elif r.results is None and page != "Memorization":
                st.info(f"Run {r.name!r} has memorization outputs only ({'; '.join(r.problems[:1])}).")
        if not runs:
            st.info("No run selected.")
            return
    {
        "Leaderboard": page_leaderboard,
        "Plots": page_plots,
        "Clips": page_clips,
        "Memorization": page_memorization,
    }.get(page, lambda _runs: page_human_study(db_url, _runs))(runs)


main()

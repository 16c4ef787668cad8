"""The rating app: ``streamlit run human_eval/app.py`` with ``MUSICLM_EVAL_RATE_DB`` set (``musiclm-eval rate serve``).

Raters arrive with ``?token=…`` (from ``rate invite``) or Prolific's ``PROLIFIC_PID``/``STUDY_ID``/
``SESSION_ID``; without either the page shows no trial. Every state change goes through
``human_eval.assign`` and the database, so a reload or a server restart resumes the rater where
they were. Nothing a rater's page renders names a system: captions, "Clip A/B", and audio bytes
that are re-encoded, salted per assignment and served under Streamlit's content-hash URLs.
``?admin=1`` opens the admin view behind the study's admin secret.

When the study logs playback (``playback_min_fraction`` not None) the clips play in ``human_eval.player``,
whose reports are stored as play events; with a fraction > 0 the answer stays locked until both clips
were heard that far (``assign.submit_rating`` enforces the same rule). With ``headphone_check`` the rater
takes the antiphase test (``human_eval.screening``) before the first trial.
"""

from __future__ import annotations

import os
import re

import streamlit as st

from human_eval import analysis, assign, db, player, screening
from human_eval.db import ENV_DB

PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc={code}"
OPTIONS = {
    "Clip A fits the description much better": 2,
    "Clip A fits the description slightly better": 1,
    "No preference": 0,
    "Clip B fits the description slightly better": -1,
    "Clip B fits the description much better": -2,
}
INSTRUCTIONS = """
Each page shows a **text description** of a piece of music and **two music clips**, A and B.
Listen to both clips completely, then choose which clip the description fits better, and how strongly.

* Judge **only how well the music matches the description** (instruments, genre, mood, tempo, …).
* **Ignore audio quality**: noise, artifacts or low fidelity should not affect your answer.
* Use "No preference" only when both clips match the description equally well (or equally badly).
* Some pages are checks that one clip clearly matches; please answer every page carefully.
"""
DEVICES = ("Headphones (over-ear or on-ear)", "Earbuds / in-ear", "Laptop or phone speakers", "External speakers",
           "Other")
SCREENING_INTRO = """
**Before the study: a short sound check (6 questions).** Please put on **headphones** and set a comfortable volume.
Each sound has **three tones**. Tell us which tone was the **quietest**: the first, the second or the third.
"""


def md_escape(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|~$])", r"\\\1", text)


@st.cache_resource(show_spinner=False)
def _sessions(url: str):
    return db.sessions(db.open_db(url))


def _rater_id(Session_, qp) -> tuple[int | None, bool]:
    """(rater id, arrived via Prolific) from the URL; (None, False) when the link grants nothing."""
    with Session_.begin() as s:
        rater = assign.rater_by_token(s, qp.get("token"))
        if rater is not None:
            return rater.id, False
        rater = assign.rater_for_prolific(s, qp.get("PROLIFIC_PID"), qp.get("STUDY_ID"), qp.get("SESSION_ID"))
        return (rater.id, True) if rater is not None else (None, False)


def rater_page(Session_, url: str) -> None:
    rater_id, prolific = _rater_id(Session_, st.query_params)
    if rater_id is None:
        st.title("Listening study")
        st.error("This page needs your personal study link. Please open the link you were given "
                 "(it ends in `?token=…`), or start the study from Prolific.")
        return
    with Session_() as s:
        check = db.the_study(s).headphone_check
    if check:
        done, passed = screening.state(Session_, rater_id)
        if passed is None:
            screening_page(Session_, rater_id, done)
            return
    view = assign.view_for(Session_, rater_id)
    if view is None:
        finished_page(Session_, prolific)
        return
    st.title("Which clip fits the description better?")
    with st.expander("Instructions", expanded=view.done == 0):
        st.markdown(INSTRUCTIONS)
    st.progress(view.done / view.total, text=f"Trial {view.done + 1} of {view.total}")
    st.markdown("**Description**")
    st.info(md_escape(view.caption))
    with Session_() as s:
        store = db.the_study(s).store_dir
    ready = True
    if view.min_fraction is None:  # plain players: nothing is logged
        cols = st.columns(2)
        for col, side, opaque in ((cols[0], "A", view.left_opaque), (cols[1], "B", view.right_opaque)):
            with col:
                st.markdown(f"**Clip {side}**")
                st.audio(assign.trial_audio(store, opaque, view.salt, side), format="audio/wav")
    else:
        if view.done == 0:
            with Session_() as s:
                known = s.get(db.Rater, rater_id).device is not None
            if not known and st.radio("What are you listening on?", DEVICES, index=None, horizontal=True,
                                      key="device") is not None:
                with Session_.begin() as s:
                    assign.record_environment(s, rater_id, {"device": st.session_state["device"]})
        ready = logged_players(Session_, rater_id, view, store)
    with st.form(key=f"trial-{view.assignment_id}"):
        choice = st.radio("Which clip does the description fit better?", list(OPTIONS), index=None,
                          key=f"choice-{view.assignment_id}", disabled=not ready)
        submitted = st.form_submit_button("Submit", type="primary", disabled=not ready)
    if submitted:
        if choice is None:
            st.warning("Please choose one of the five answers before submitting.")
            return
        try:
            assign.submit_rating(Session_, rater_id, view.assignment_id, OPTIONS[choice])
        except assign.PlaybackError:
            st.warning("Please listen to both clips to the end before answering.")
            return
        st.rerun()


def logged_players(Session_, rater_id: int, view: assign.TrialView, store: str) -> bool:
    """The two clips in the logging player; stores its latest report. True when the answer may be given."""
    clips = [(side, f"Clip {side}", assign.trial_audio(store, opaque, view.salt, side))
             for side, opaque in (("A", view.left_opaque), ("B", view.right_opaque))]
    key = f"players-{view.assignment_id}"
    report = player.players(clips, key=key, min_fraction=view.min_fraction)
    device = st.session_state.get("device") or None
    if report and report.get("n", 0) > st.session_state.get(f"{key}-seen", 0):
        st.session_state[f"{key}-seen"] = report["n"]
        heard = assign.record_report(Session_, rater_id, view.assignment_id,
                                     {**report, "env": {**(report.get("env") or {}), "device": device}})
    else:
        with Session_() as s:
            heard = assign.heard(s, view.assignment_id)
    if not view.min_fraction:
        return True
    need = view.min_fraction - assign.PLAY_TOLERANCE
    missing = [side for side in ("A", "B") if heard.get(side, 0.0) < need]
    if missing:
        st.caption(f"Listen to {' and '.join('clip ' + m for m in missing)} "
                   f"{'to the end' if view.min_fraction >= 1 else f'(at least {view.min_fraction:.0%})'} "
                   "to unlock the answer.")
    return not missing


def screening_page(Session_, rater_id: int, done: int) -> None:
    """One trial of the headphone check (and, first, the listening-device question)."""
    with Session_() as s:
        study = db.the_study(s)
        seed, sr, device = study.seed, study.sample_rate, s.get(db.Rater, rater_id).device
    st.title("Sound check")
    st.markdown(SCREENING_INTRO)
    if device is None:
        choice = st.radio("What are you listening on?", DEVICES, index=None, key="device")
        if choice is None:
            return
        with Session_.begin() as s:
            assign.record_environment(s, rater_id, {"device": choice})
    orders = screening.trial_orders(seed, rater_id)
    st.progress(done / len(orders), text=f"Sound check {done + 1} of {len(orders)}")
    key = f"screen-{done}"
    report = player.players([("A", "Sound", screening.trial_wav(orders[done], sr))], key=key, min_fraction=1.0)
    if report and report.get("env"):
        with Session_.begin() as s:
            assign.record_environment(s, rater_id, report["env"])
    heard = bool(report and ((report.get("clips") or {}).get("A") or {}).get("fraction", 0) >= 1 - assign.PLAY_TOLERANCE)
    with st.form(key=f"screen-form-{done}"):
        ans = st.radio("Which tone was the quietest?", ("First", "Second", "Third"), index=None, horizontal=True,
                       key=f"screen-answer-{done}", disabled=not heard)
        submitted = st.form_submit_button("Next", type="primary", disabled=not heard)
    if not heard:
        st.caption("Play the sound to the end to answer.")
    if submitted and ans is not None:
        screening.answer(Session_, rater_id, done, ("First", "Second", "Third").index(ans) + 1)
        st.rerun()


def finished_page(Session_, prolific: bool) -> None:
    with Session_() as s:
        code = db.the_study(s).completion_code
    st.title("Thank you!")
    st.success("You have completed all trials of this study.")
    if prolific:
        st.markdown(f"Your Prolific completion code is **{code}**.")
        st.link_button("Return to Prolific", PROLIFIC_COMPLETE.format(code=code), type="primary")


def admin_page(Session_, url: str) -> None:
    st.title("Listening study — admin")
    if not st.session_state.get("admin_ok"):
        secret = st.text_input("Admin secret", type="password", key="admin_secret")
        if not secret:
            st.info("Enter the admin secret printed by `musiclm-eval rate create`.")
            return
        with Session_() as s:
            ok = db.check_secret(secret, db.the_study(s).admin_secret_hash)
        if not ok:
            st.error("Wrong admin secret.")
            return
        st.session_state["admin_ok"] = True
    a = analysis.analyze(url, n_boot=200)
    p = a.progress
    c = st.columns(3)
    c[0].metric("Ratings collected", f"{p['ratings_collected']} / {p['ratings_wanted']}")
    c[1].metric("Raters (completed)", f"{p['raters']} ({p['raters_completed']})")
    c[2].metric("Excluded raters", len(a.exclusions["excluded_raters"]))
    st.caption(study_settings(Session_, a))
    st.subheader("Progress per pair")
    st.dataframe([{"pair": k, **v} for k, v in p["by_pair"].items()], hide_index=True)
    st.subheader("Raters")
    st.dataframe(a.raters, hide_index=True)
    st.caption(a.exclusions["rule"])
    st.subheader("Wins")
    st.dataframe(a.wins, hide_index=True)
    st.download_button("Download ratings CSV", analysis.export_ratings_csv(url), file_name="ratings.csv",
                       mime="text/csv")


def study_settings(Session_, a: analysis.StudyAnalysis) -> str:
    """One line for the admin: loudness matching, the playback rule and what the play logs say, screening."""
    with Session_() as s:
        st_ = db.the_study(s)
        loud, ceiling, need, check = (st_.loudness_target_lufs, st_.true_peak_ceiling_dbtp, st_.playback_min_fraction,
                                      st_.headphone_check)
    parts = [f"stimuli matched to {loud:g} LUFS (true peak ≤ {ceiling:g} dBTP)" if loud is not None
             else "stimuli at their own loudness"]
    if need is None:
        parts.append("playback not logged")
    else:
        pair = a.ratings[a.ratings.kind == "pair"]
        full = int(((pair.heard_left >= 1 - assign.PLAY_TOLERANCE) & (pair.heard_right >= 1 - assign.PLAY_TOLERANCE)).sum())
        parts.append(f"playback logged, answer unlocked at {need:.0%} heard" if need else "playback logged, not gated")
        parts.append(f"{full} of {len(pair)} ratings given after hearing both clips to the end")
    parts.append("headphone check on" if check else "no headphone check")
    return "; ".join(parts) + "."


def main() -> None:
    st.set_page_config(page_title="Listening study", layout="centered")
    url = os.environ.get(ENV_DB)
    if not url:
        st.error(f"No study database: start the app with `musiclm-eval rate serve --db URL` (or set {ENV_DB}).")
        return
    try:
        Session_ = _sessions(url)
    except db.StudyDBError as e:
        st.error(str(e))
        return
    if st.query_params.get("admin") is not None:
        admin_page(Session_, url)
    else:
        rater_page(Session_, url)


main()

"""The Human study page: the study's progress, wins, Bradley–Terry strengths and agreement, read through
``human_eval``'s API only (the dashboard runs no SQL of its own)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from metrics.io import redact_url

ENV_DB = "MUSICLM_EVAL_DB"


@dataclass
class HumanStudy:
    """What the human-study page shows; ``problems`` explains every part that is missing."""

    url: str
    progress: dict[str, object] = field(default_factory=dict)
    progress_by_pair: pd.DataFrame | None = None
    wins: pd.DataFrame | None = None
    wins_matrix: pd.DataFrame | None = None
    strengths: pd.DataFrame | None = None
    pairs: pd.DataFrame | None = None
    raters: pd.DataFrame | None = None
    agreement: dict[str, object] = field(default_factory=dict)
    exclusions: dict[str, object] = field(default_factory=dict)
    inference: dict[str, object] = field(default_factory=dict)  # primary test, sequential rule, power settings
    problems: list[str] = field(default_factory=list)


def missing_sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (or plain path) when it does not exist; None for other URLs."""
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url if "://" in url else f"sqlite:///{url}")
    except Exception:
        return None
    if not u.drivername.startswith("sqlite") or not u.database or u.database == ":memory:":
        return None
    path = Path(u.database)
    return None if path.is_file() else path


# Bootstrap resamples for the Bradley–Terry CIs: human_eval.analysis.analyze's default, so the page
# shows the same intervals as `musiclm-eval rate analyze`.
HUMAN_N_BOOT = 1000
ENV_HUMAN_N_BOOT = "MUSICLM_EVAL_HUMAN_N_BOOT"


def human_n_boot(env: dict[str, str] | None = None) -> int:
    """Bootstrap resamples for the page (``dashboard --bootstrap``); the default when unset or invalid."""
    raw = (env if env is not None else os.environ).get(ENV_HUMAN_N_BOOT, "")
    try:
        return max(0, int(raw))
    except ValueError:
        return HUMAN_N_BOOT


def load_human_study(url: str, max_failures: int = 0, n_boot: int = HUMAN_N_BOOT, seed: int = 0) -> HumanStudy:
    """Progress, wins, Bradley–Terry strengths and agreement from ``human_eval.analysis.analyze``."""
    study = HumanStudy(url=redact_url(url))
    missing = missing_sqlite_file(url)
    if missing is not None:  # connecting would silently create an empty database file
        study.problems.append(f"Ratings database not found: {missing} (create a study with `musiclm-eval rate`).")
        return study
    try:
        from human_eval.analysis import analyze
    except ImportError as e:
        study.problems.append(f"Human-study analysis is unavailable (human_eval.analysis cannot be imported: {e}).")
        return study
    try:
        a = analyze(url, max_failures=max_failures, n_boot=n_boot, seed=seed)
    except Exception as e:  # StudyDBError, SQLAlchemy errors, …: the page says which and why
        study.problems.append(f"Cannot read the ratings database {study.url}: {type(e).__name__}: {e}")
        return study
    progress = dict(a.progress or {})
    by_pair = progress.pop("by_pair", None) or {}
    study.progress = progress
    if by_pair:
        study.progress_by_pair = pd.DataFrame([{"pair": k, **v} for k, v in by_pair.items()])
    study.wins, study.wins_matrix, study.strengths, study.pairs = a.wins, a.wins_matrix, a.strengths, a.pairs
    study.raters, study.agreement, study.exclusions = a.raters, dict(a.agreement), dict(a.exclusions)
    study.inference = dict(getattr(a, "inference", {}) or {})
    if not len(a.ratings):
        study.problems.append("The study has no ratings yet.")
    return study


@dataclass
class AgreementView:
    """One ``musiclm-eval agreement`` store among the dashboard's runs: its table, notes and per-metric plots."""

    name: str
    table: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)
    problem: str | None = None


def agreement_views(runs: list) -> list[AgreementView]:
    """The runs whose store is of kind "agreement" (``human_eval.agreement_report``), read for the human-study page."""
    from human_eval.agreement_report import STORE_KIND, read_agreement

    views = []
    for run in runs:
        if run.results is None or run.results.kind != STORE_KIND:
            continue
        try:
            table, notes, plots = read_agreement(run.path)
        except Exception as e:  # a store without its table, a malformed CSV: the page says which and why
            views.append(AgreementView(run.name, problem=f"{run.path}: {type(e).__name__}: {e}"))
            continue
        views.append(AgreementView(run.name, table, notes, plots))
    return views

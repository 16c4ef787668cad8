"""Everything the dashboard shows, computed without Streamlit so tests can check it directly.

The app (``dashboards/app.py``) only lays out what these functions return. Loading never raises on
a partial, older or malformed results directory: each piece that is missing or unreadable becomes a
sentence in ``Run.problems`` that the app shows instead of a traceback. Results are read through
``metrics.store.read_store`` (the one reader of the format; it resolves the store's audio
paths, which are relative to the store, so a run opens from any working directory); memorization outputs, the optional
``degradation.json`` and the ratings database are read here / through ``human_eval``'s API.
"""

from __future__ import annotations

import ast
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.io import as_float as _to_float
from metrics.io import format_ci, format_value, redact_url
from metrics.store import PER_CLIP_FILE, RESULTS_FILE, Results, ResultsError, read_store

ENV_RESULTS = "MUSICLM_EVAL_RESULTS"
ENV_DB = "MUSICLM_EVAL_DB"

DEGRADATION_FILE = "degradation.json"
MEMO_DIR = "memorization"
MEMO_FILE = "memorization.json"
MATCHES_FILE = "matches.csv"

# per_clip.csv columns that describe a clip rather than score it.
CLIP_COLUMNS = ("system", "ytid", "caption", "audio_path", "reference_path", "aspect_list", "_aspects")
# Metrics where a larger value is better; every other metric (FAD, KL) is a distance.
HIGHER_IS_BETTER = ("mcc",)
# Column added at load time: each clip's aspects as a frozenset (never written back).
ASPECTS_COLUMN = "_aspects"


# ---------------------------------------------------------------------------------------------
# formatting shared by the app and the tests (so "what is shown" is one written-down formula)


def fmt(value: object, digits: int = 4) -> str:
    """A metric value as the dashboard prints it: 4 significant digits, "—" when absent."""
    return format_value(value, digits)


def fmt_ci(ci: object) -> str:
    """``[lo, hi]`` with the same precision as ``fmt``; "—" when the run recorded no interval."""
    return format_ci(ci)


def higher_is_better(metric: str) -> bool:
    return metric.lower().startswith(HIGHER_IS_BETTER)


# ---------------------------------------------------------------------------------------------
# loading


@dataclass
class Memorization:
    """``memorization/memorization.json`` + ``matches.csv`` of one run (either may be absent)."""

    path: Path
    data: dict = field(default_factory=dict)
    rows: pd.DataFrame | None = None
    matches: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Run:
    """One results directory as the dashboard sees it: whatever parts it has, and what it lacks."""

    path: Path
    name: str
    results: Results | None = None
    memorization: Memorization | None = None
    degradation: pd.DataFrame | None = None
    degradation_embedder: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def data(self) -> dict:
        return self.results.data if self.results is not None else {}

    @property
    def metadata(self) -> dict:
        md = self.data.get("metadata")
        return md if isinstance(md, dict) else {}

    @property
    def per_clip(self) -> pd.DataFrame | None:
        return self.results.per_clip if self.results is not None else None

    @property
    def systems(self) -> list[str]:
        return self.results.systems if self.results is not None else []


def results_dirs_from_env(env: dict[str, str] | None = None) -> list[Path]:
    """The results directories the CLI hands the app (``os.pathsep``-joined, empty parts ignored)."""
    raw = (env if env is not None else os.environ).get(ENV_RESULTS, "")
    return [Path(p) for p in raw.split(os.pathsep) if p.strip()]


def cache_key(path: str | Path) -> tuple:
    """(name, mtime_ns, size) of every file a run is read from: a rewritten run reloads, others stay cached."""
    path = Path(path)
    files = [RESULTS_FILE, PER_CLIP_FILE, DEGRADATION_FILE, f"{MEMO_DIR}/{MEMO_FILE}", f"{MEMO_DIR}/{MATCHES_FILE}",
             MEMO_FILE, MATCHES_FILE]
    key = []
    for name in files:
        try:
            st = (path / name).stat()
            key.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            key.append((name, None, None))
    return tuple(key)


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read every part of a results directory that is there; never raises for bad content."""
    path = Path(path)
    run = Run(path=path, name=name or path.name or str(path))
    try:
        run.results = read_store(path)
        run.problems.extend(run.results.problems)
    except ResultsError as e:
        run.problems.append(str(e))
    except OSError as e:  # unreadable file (permissions, a directory named results.json, …)
        run.problems.append(f"{path}: cannot read results ({e})")
    if run.results is not None and not isinstance(run.results.data.get("systems"), dict):
        run.problems.append(f"{path / RESULTS_FILE}: 'systems' must be an object of system name → results")
        run.results = None
    if run.results is not None:
        run.results.per_clip = _clean_per_clip(run.results.per_clip, path, run.problems)
        _check_metric_values(run)
    if path.is_dir():
        run.memorization = load_memorization(path)
        if run.memorization is not None:
            run.problems.extend(run.memorization.problems)
        run.degradation, run.degradation_embedder = load_degradation(path, run.problems)
    return run


def run_names(paths: list[str | Path]) -> list[str]:
    """Unique display names: the directory name, or parent/name (then the full path) when two clash."""
    paths = [Path(p) for p in paths]
    names = [p.name or str(p) for p in paths]
    names = [f"{p.parent.name}/{p.name}" if names.count(n) > 1 and p.parent.name else n for p, n in zip(paths, names)]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Load several runs, each under its ``run_names`` display name."""
    return [load_run(p, name=n) for p, n in zip(paths, run_names(paths))]


def _clean_per_clip(df: pd.DataFrame | None, path: Path, problems: list[str]) -> pd.DataFrame | None:
    """Make per_clip.csv safe to show: required columns present, metric columns numeric."""
    if df is None:
        return None
    src = path / PER_CLIP_FILE
    missing = [c for c in ("system", "ytid") if c not in df.columns]
    if missing:
        problems.append(f"{src}: no {', '.join(repr(c) for c in missing)} column (per-clip views unavailable)")
        return None
    df = df.copy()
    df["system"] = df["system"].astype(str)
    df["ytid"] = df["ytid"].astype(str)
    for col in metric_columns(df, numeric_only=False):
        if not pd.api.types.is_numeric_dtype(df[col]):
            coerced = pd.to_numeric(df[col], errors="coerce")
            bad = int(coerced.isna().sum() - df[col].isna().sum())
            if bad:
                problems.append(f"{src}: column {col!r} has {bad} non-numeric value(s), shown as blank")
            df[col] = coerced
    if "caption" not in df.columns:
        problems.append(f"{src}: no 'caption' column (clips are listed by ytid)")
        df["caption"] = ""
    df["caption"] = df["caption"].fillna("").astype(str)
    # Parsed once here (and cached with the run): filtering 5,000 clips must not re-parse every rerun.
    if "aspect_list" in df.columns:
        parsed = {v: frozenset(parse_aspects(v)) for v in df["aspect_list"].dropna().unique()}
        df[ASPECTS_COLUMN] = df["aspect_list"].map(lambda v: parsed.get(v, frozenset()))
    return df


def _check_metric_values(run: Run) -> None:
    for system, sysd in run.data.get("systems", {}).items():
        metrics = sysd.get("metrics") if isinstance(sysd, dict) else None
        for metric, m in (metrics.items() if isinstance(metrics, dict) else ()):
            if isinstance(m, dict) and "value" in m and _to_float(m["value"]) is None and m["value"] is not None:
                run.problems.append(f"{run.path / RESULTS_FILE}: systems.{system}.metrics.{metric}.value "
                                    f"{m['value']!r} is not a number (shown as blank)")


def load_degradation(path: Path, problems: list[str]) -> tuple[pd.DataFrame | None, str | None]:
    """``degradation.json`` → long table (kind, severity, fad); absent file is not a problem."""
    f = Path(path) / DEGRADATION_FILE
    if not f.is_file():
        return None, None
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        problems.append(f"{f}: unreadable ({e}); FAD-vs-degradation curve not shown")
        return None, None
    curves = doc.get("curves") if isinstance(doc, dict) else None
    if not isinstance(curves, dict):
        problems.append(f"{f}: no 'curves' object; FAD-vs-degradation curve not shown")
        return None, None
    rows = []
    for kind, points in curves.items():
        if not isinstance(points, list):
            problems.append(f"{f}: curves.{kind} must be a list of {{severity, fad}} points")
            continue
        for i, p in enumerate(points):
            sev = _to_float(p.get("severity")) if isinstance(p, dict) else None
            val = _to_float(p.get("fad")) if isinstance(p, dict) else None
            if sev is None or val is None:
                problems.append(f"{f}: curves.{kind}[{i}] needs numeric 'severity' and 'fad'")
                continue
            rows.append({"kind": str(kind), "severity": sev, "fad": val})
    if not rows:
        return None, None
    embedder = doc.get("embedder")
    return pd.DataFrame(rows).sort_values(["kind", "severity"], ignore_index=True), (str(embedder) if embedder else None)


def load_memorization(path: str | Path) -> Memorization | None:
    """``<run>/memorization/`` (or a memorization output dir itself); None when neither is there."""
    path = Path(path)
    base = path / MEMO_DIR if (path / MEMO_DIR).is_dir() else path
    jf, mf = base / MEMO_FILE, base / MATCHES_FILE
    if not jf.is_file() and not mf.is_file():
        return None
    memo = Memorization(path=base)
    if jf.is_file():
        try:
            data = json.loads(jf.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            memo.problems.append(f"{jf}: unreadable ({e})")
            data = {}
        if not isinstance(data, dict):
            memo.problems.append(f"{jf}: top level must be an object")
            data = {}
        memo.data = data
        for key in ("tau", "fpr", "exact_rate", "approx_rate"):
            if data and key not in data:
                memo.problems.append(f"{jf}: no {key!r}")
        memo.rows = _memo_rows(data.get("rows"), jf, memo.problems) if data else None
    else:
        memo.problems.append(f"{base}: no {MEMO_FILE} (match-rate curve, τ and FPR unavailable)")
    if mf.is_file():
        try:
            m = pd.read_csv(mf, dtype={"generated_id": str, "train_id": str})
        except Exception as e:  # pandas raises several parser errors; all mean "unreadable"
            memo.problems.append(f"{mf}: unreadable ({type(e).__name__}: {e})")
        else:
            missing = [c for c in ("generated_id", "train_id") if c not in m.columns]
            if missing:
                memo.problems.append(f"{mf}: no {', '.join(repr(c) for c in missing)} column")
            else:
                memo.matches = m
    elif jf.is_file():
        memo.problems.append(f"{base}: no {MATCHES_FILE} (list of matches unavailable)")
    return memo


def memo_false_alarms(memo: Memorization) -> pd.DataFrame | None:
    """One row per matcher of an audit: τ, the measured per-clip false-alarm rate on held-out nulls (Wilson 95 %),
    how many nulls calibrated / measured it, whether they certify the target. None for a sweep (no nulls)."""
    per = memo.data.get("matchers") or ({memo.data.get("matcher", "audit"): memo.data} if "clip_false_alarm_rate" in memo.data else {})
    rows = []
    for name, m in per.items():
        if not isinstance(m, dict) or "clip_false_alarm_rate" not in m:
            continue
        cal = m.get("calibration") or {}
        lo, hi = (list(m.get("clip_false_alarm_ci95") or [None, None]) + [None, None])[:2]
        rows.append({"matcher": name, "tau": m.get("tau"), "fpr_target": m.get("fpr_target"),
                     "clip_false_alarm_rate": m.get("clip_false_alarm_rate"), "ci95_lo": lo, "ci95_hi": hi,
                     "false_alarms": cal.get("clip_false_alarms"), "n_null_calibration": m.get("n_null_calibration"),
                     "n_null_heldout": m.get("n_null_heldout"), "certified": m.get("certified"),
                     "nulls_needed": cal.get("nulls_needed"), "null_source": cal.get("source"),
                     "window_false_alarm_rate": m.get("window_false_alarm_rate"),
                     "exact_rate": m.get("exact_rate"), "approx_rate": m.get("approx_rate")})
    return pd.DataFrame(rows) if rows else None


def memo_detection(memo: Memorization) -> pd.DataFrame | None:
    """The measured detection table, long form: matcher, alteration, detected / n, rate and its Wilson 95 % CI."""
    det = memo.data.get("detection")
    if not isinstance(det, dict):
        return None
    rows = []
    for name, table in det.items():
        for alt, t in (table or {}).items():
            if isinstance(t, dict):
                lo, hi = (list(t.get("ci95") or [None, None]) + [None, None])[:2]
                rows.append({"matcher": name, "alteration": alt, "detected": t.get("detected"), "n": t.get("n"),
                             "rate": t.get("rate"), "ci95_lo": lo, "ci95_hi": hi, "reported": t.get("reported")})
    return pd.DataFrame(rows) if rows else None


def _memo_rows(rows: object, src: Path, problems: list[str]) -> pd.DataFrame | None:
    if rows is None:
        problems.append(f"{src}: no 'rows' (match rate vs prompt length unavailable)")
        return None
    if not isinstance(rows, list):
        problems.append(f"{src}: 'rows' must be a list")
        return None
    out = []
    for i, r in enumerate(rows):
        # `memorization sweep` writes `prompt_tokens` (T in semantic tokens); `prompt_length` is the older name
        length = _to_float(r.get("prompt_tokens", r.get("prompt_length"))) if isinstance(r, dict) else None
        if length is None:
            problems.append(f"{src}: rows[{i}] has no numeric prompt_tokens")
            continue
        rec = {"prompt_length": length}
        for kind in ("exact", "approx"):
            rec[f"{kind}_rate"] = _to_float(r.get(f"{kind}_rate"))
            ci = r.get(f"{kind}_ci95")
            ok = isinstance(ci, (list, tuple)) and len(ci) == 2
            rec[f"{kind}_lo"] = _to_float(ci[0]) if ok else None
            rec[f"{kind}_hi"] = _to_float(ci[1]) if ok else None
        out.append(rec)
    if not out:
        return None
    return pd.DataFrame(out).sort_values("prompt_length", ignore_index=True)


# ---------------------------------------------------------------------------------------------
# leaderboard and comparability


def metric_long(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, system, metric) with value and CI bounds: the source of table and plots."""
    rows = []
    for run in runs:
        for system, sysd in run.data.get("systems", {}).items():
            if not isinstance(sysd, dict) or not isinstance(sysd.get("metrics"), dict):
                continue
            for metric, m in sysd["metrics"].items():
                if not isinstance(m, dict):
                    continue
                ci = m.get("ci95")
                ok = isinstance(ci, list) and len(ci) == 2
                rows.append({
                    "run": run.name, "system": str(system), "metric": str(metric),
                    "value": _to_float(m.get("value")),
                    "lo": _to_float(ci[0]) if ok else None, "hi": _to_float(ci[1]) if ok else None,
                })
    df = pd.DataFrame(rows, columns=["run", "system", "metric", "value", "lo", "hi"])
    return df.astype({"value": float, "lo": float, "hi": float})


def leaderboard(runs: list[Run], sort_by: str | None = None, descending: bool = False,
                published: bool = False) -> pd.DataFrame:
    """The Table-1 view: a row per (run, system), a numeric column per metric and its 95% CI as text.

    Runs of different protocols (``metadata.protocol_name``; ``custom`` when none) never share a column:
    each metric column is split per protocol (``fad_vggish [musicgen]``), so no sort ranks them together
    (``protocol_refusal`` says why). ``published`` adds, for each protocol of the runs, the rows of the
    table it reproduces (docs/published_tables.json), named by paper and protocol.
    """
    from metrics.protocols import PROTOCOLS, published_rows

    long = metric_long(runs)
    base = []
    protocols = run_protocols(runs)
    extra: list[dict] = []
    if published:
        for p in dict.fromkeys(v for v in protocols.values() if v in PROTOCOLS):
            for row in published_rows(p):
                protocols[row["run"]] = p
                base.append({"run": row["run"], "system": row["system"], "n_clips": np.nan, "missing": np.nan,
                             "skipped": np.nan})
                extra += [{"run": row["run"], "system": row["system"], "metric": k, "value": v, "lo": np.nan,
                           "hi": np.nan} for k, v in row.items() if k not in ("run", "system") and v is not None]
    if extra:
        long = pd.concat([long, pd.DataFrame(extra).astype({"value": float, "lo": float, "hi": float})],
                         ignore_index=True)
    if len(set(protocols.values())) > 1:
        long = long.assign(metric=[f"{m} [{protocols.get(r, 'custom')}]" for r, m in zip(long["run"], long["metric"])])
    for run in runs:
        for system, sysd in run.data.get("systems", {}).items():
            sysd = sysd if isinstance(sysd, dict) else {}
            base.append({"run": run.name, "system": str(system), "n_clips": _to_float(sysd.get("n_clips")),
                         "missing": _count(sysd.get("missing_ids")), "skipped": _count(sysd.get("skipped"))})
    table = pd.DataFrame(base, columns=["run", "system", "n_clips", "missing", "skipped"])
    metrics = list(dict.fromkeys(long["metric"]))
    for metric in metrics:
        sub = long[long["metric"] == metric].set_index(["run", "system"])
        keys = list(zip(table["run"], table["system"]))
        table[metric] = [sub["value"].get(k, np.nan) for k in keys]
        table[f"{metric} 95% CI"] = [
            fmt_ci([sub["lo"].get(k), sub["hi"].get(k)]) if k in sub.index and not pd.isna(sub["lo"].get(k)) else "—"
            for k in keys
        ]
    if sort_by and sort_by in table.columns:
        table = table.sort_values(sort_by, ascending=not descending, na_position="last", kind="stable")
    return table.reset_index(drop=True)


PAIRWISE_COLUMNS = ["run", "metric", "system_a", "system_b", "diff", "diff 95% CI", "p", "p (Holm)", "significant", "n_pairs"]


def pairwise(runs: list[Run], alpha: float = 0.05) -> pd.DataFrame:
    """The runs' clip-paired comparisons (``metadata.pairwise`` of the store; metrics.intervals): one row per
    (run, metric, pair) with A − B, its 95% CI, the p-value and the Holm-corrected one."""
    rows = []
    for run in runs:
        for r in run.metadata.get("pairwise") or []:
            if not isinstance(r, dict):
                continue
            p_holm = _to_float(r.get("p_holm"))
            rows.append({"run": run.name, "metric": str(r.get("metric")), "system_a": str(r.get("system_a")),
                         "system_b": str(r.get("system_b")), "diff": _to_float(r.get("diff")),
                         "diff 95% CI": fmt_ci(r.get("ci95")) if r.get("ci95") else "—",
                         "p": _to_float(r.get("p_value")), "p (Holm)": p_holm,
                         "significant": bool(p_holm is not None and not math.isnan(p_holm) and p_holm < alpha),
                         "n_pairs": _to_float(r.get("n_pairs"))})
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)


def _count(v: object) -> float:
    return float(len(v)) if isinstance(v, list) else np.nan


def skipped_files(runs: list[Run]) -> pd.DataFrame:
    """Every clip a run left out (``missing_ids``, ``skipped``) with the reason the run recorded."""
    rows = []
    for run in runs:
        for system, sysd in run.data.get("systems", {}).items():
            if not isinstance(sysd, dict):
                continue
            for y in sysd.get("missing_ids") or []:
                rows.append({"run": run.name, "system": str(system), "item": str(y), "reason": "missing id"})
            for sk in sysd.get("skipped") or []:
                item = sk.get("path", "") if isinstance(sk, dict) else str(sk)
                reason = sk.get("reason", "") if isinstance(sk, dict) else ""
                rows.append({"run": run.name, "system": str(system), "item": str(item), "reason": str(reason)})
    return pd.DataFrame(rows, columns=["run", "system", "item", "reason"])


def flatten(d: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts → {"a.b.c": value}, so two metadata blocks can be diffed key by key."""
    if not isinstance(d, dict):
        return {prefix: d} if prefix else {}
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def run_protocols(runs: list[Run]) -> dict[str, str]:
    """Each run's published protocol (``metadata.protocol_name``; ``custom`` for runs that name none)."""
    from metrics.protocols import run_protocol

    return {r.name: run_protocol(r.metadata) for r in runs}


def protocol_refusal(runs: list[Run]) -> str | None:
    """Why these runs are not ranked in one column (None when they share a protocol)."""
    from metrics.protocols import comparable

    why = comparable(run_protocols(runs))
    return None if why is None else f"{why}. The leaderboard shows one column per protocol."


def comparability_facts(run: Run) -> dict[str, object]:
    """What must agree for two runs' numbers to be comparable: embedders, reference set, protocol."""
    md = run.metadata
    return {
        **flatten(md.get("embedders", {}), "embedders"),
        **flatten(run.data.get("reference", {}), "reference"),
        **flatten(md.get("protocol", {}), "protocol"),
    }


def comparability_warnings(runs: list[Run]) -> list[str]:
    """One sentence per run that differs from the first run in embedders, reference set or protocol
    (first, when their published protocols differ: the leaderboard then keeps their columns apart)."""
    runs = [r for r in runs if r.results is not None]
    if len(runs) < 2:
        return []
    refusal = protocol_refusal(runs)
    out = [refusal] if refusal else []
    first = runs[0]
    base = comparability_facts(first)
    for run in runs[1:]:
        facts = comparability_facts(run)
        if not facts or not base:
            lacking = run.name if not facts else first.name
            out.append(f"Runs {first.name!r} and {run.name!r} may not be comparable: {lacking!r} records no "
                       "embedders, reference set or protocol settings.")
            continue
        diffs = [f"{k}: {base.get(k, '(absent)')!r} vs {facts.get(k, '(absent)')!r}"
                 for k in sorted(set(base) | set(facts)) if base.get(k, "(absent)") != facts.get(k, "(absent)")]
        if diffs:
            groups = sorted({d.split(".", 1)[0] for d in diffs})
            what = {"embedders": "different embedders", "reference": "different reference sets",
                    "protocol": "different protocol settings"}
            out.append(f"Runs {first.name!r} and {run.name!r} are not comparable ("
                       + ", ".join(what[g] for g in groups) + "): " + "; ".join(diffs))
    return out


def metadata_table(runs: list[Run]) -> pd.DataFrame:
    """Flattened metadata (versions, checkpoints, embedders, protocol, …), a column per run, as text."""
    cols: dict[str, dict[str, object]] = {}
    for run in runs:
        if run.results is None:
            continue
        flat = flatten(run.metadata, "")
        flat.update(flatten(run.data.get("reference", {}), "reference"))
        for key in ("kind", "created", "schema_version"):
            if key in run.data:
                flat[key] = run.data[key]
        cols[run.name] = {k: json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else str(v))
                          for k, v in flat.items()}
    df = pd.DataFrame(cols)
    if df.empty:
        return df
    df.index.name = "key"
    df = df.sort_index().astype(object).fillna("(absent)")
    df["differs"] = df.nunique(axis=1) > 1 if len(cols) > 1 else False
    return df.reset_index()


# ---------------------------------------------------------------------------------------------
# per-clip views


def metric_columns(df: pd.DataFrame | None, numeric_only: bool = True) -> list[str]:
    """Per-clip metric columns: mcc, kld*, fad_* first, then any other numeric column."""
    if df is None:
        return []
    known = [c for c in df.columns if str(c).lower() in ("mcc", "kld") or str(c).lower().startswith(("fad_", "kld_"))]
    if numeric_only:
        known = [c for c in known if pd.api.types.is_numeric_dtype(df[c])]
    other = [c for c in df.columns if c not in known and c not in CLIP_COLUMNS
             and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    return [str(c) for c in known + other]


def parse_aspects(value: object) -> list[str]:
    """MusicCaps ``aspect_list`` ("['pop', 'mellow piano']") → ["pop", "mellow piano"]; junk → []."""
    if isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, str) and value.strip():
        try:
            items = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            items = [s for s in value.strip("[]").split(",")]
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, (list, tuple)):
            return []
    else:
        return []
    return [s.strip().strip("'\"").strip() for s in map(str, items) if s.strip().strip("'\"").strip()]


def _aspect_sets(df: pd.DataFrame) -> pd.Series:
    if ASPECTS_COLUMN in df.columns:
        return df[ASPECTS_COLUMN]
    return df["aspect_list"].map(lambda v: frozenset(parse_aspects(v)))


def aspect_counts(df: pd.DataFrame | None) -> pd.Series:
    """How many distinct clips carry each aspect, most frequent first (the filter's option order)."""
    if df is None or "aspect_list" not in df.columns:
        return pd.Series(dtype=int)
    per_clip = _aspect_sets(df.drop_duplicates("ytid"))
    counts = pd.Series([a for s in per_clip for a in s], dtype=object).value_counts()
    return counts.sort_index().sort_values(ascending=False, kind="stable")


def filter_clips(df: pd.DataFrame, aspects: list[str] | None = None, text: str = "") -> pd.DataFrame:
    """Rows whose clip has *all* chosen aspects and whose caption or ytid contains ``text`` (any case)."""
    out = df
    if aspects and "aspect_list" in df.columns:
        want = frozenset(aspects)
        out = out[_aspect_sets(out).map(want.issubset)]
    elif aspects:
        out = out.iloc[0:0]
    if text:
        hit = out["caption"].str.contains(text, case=False, regex=False) | out["ytid"].str.contains(text, case=False, regex=False)
        out = out[hit]
    return out


def clip_choices(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(ytid, caption) per distinct clip, in first-seen order: the caption picker's options."""
    first = df.drop_duplicates("ytid")
    return list(zip(first["ytid"], first["caption"]))


def resolve_audio(run_path: Path, value: object) -> Path | None:
    """An ``audio_path``/``reference_path`` cell → an existing file (absolute or relative to the run)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return None
    p = Path(str(value))
    if not p.is_absolute():
        p = Path(run_path) / p
    return p if p.is_file() else None


@dataclass
class ClipView:
    """One caption's reference and per-system clips, with their per-clip scores."""

    ytid: str
    caption: str
    aspects: list[str]
    reference: Path | None
    reference_raw: str | None
    systems: list[dict]  # {"system", "audio": Path|None, "audio_raw": str|None, "scores": {metric: float}}


def clip_view(run: Run, ytid: str) -> ClipView | None:
    df = run.per_clip
    if df is None:
        return None
    rows = df[df["ytid"] == str(ytid)]
    if rows.empty:
        return None
    metrics = metric_columns(df)
    ref_raw = next((str(v) for v in rows.get("reference_path", pd.Series(dtype=object)) if isinstance(v, str) and v), None)
    systems = []
    for _, r in rows.iterrows():
        raw = r.get("audio_path")
        systems.append({
            "system": r["system"],
            "audio": resolve_audio(run.path, raw),
            "audio_raw": None if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw),
            "scores": {m: _to_float(r[m]) for m in metrics},
        })
    first = rows.iloc[0]
    return ClipView(
        ytid=str(ytid), caption=str(first.get("caption", "")),
        aspects=parse_aspects(first.get("aspect_list")) if "aspect_list" in rows.columns else [],
        reference=resolve_audio(run.path, ref_raw) if ref_raw else None, reference_raw=ref_raw, systems=systems,
    )


def worst_clips(df: pd.DataFrame, system: str, metric: str, n: int = 10) -> pd.DataFrame:
    """A system's ``n`` worst clips on ``metric``: highest distance, or lowest score for MCC."""
    sub = df[(df["system"] == system) & df[metric].notna()]
    sub = sub.sort_values(metric, ascending=higher_is_better(metric), kind="stable").head(n)
    cols = [c for c in ("ytid", "caption", metric) if c in sub.columns]
    return sub[cols].reset_index(drop=True)


def per_clip_summary(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per system: n, mean, median, std, min, max of a per-clip metric (NaNs left out)."""
    g = df[df[metric].notna()].groupby("system", sort=True)[metric]
    out = g.agg(["count", "mean", "median", "std", "min", "max"]).reset_index()
    return out.rename(columns={"count": "n"})


def per_clip_histogram(df: pd.DataFrame, metric: str, bins: int = 30) -> pd.DataFrame:
    """Shared-bin histograms per system, precomputed so 5,000-clip runs chart as ~30 bars each."""
    x = df[df[metric].notna()]
    if x.empty:
        return pd.DataFrame(columns=["system", "lo", "hi", "count"])
    edges = np.histogram_bin_edges(x[metric].to_numpy(dtype=float), bins=bins)
    rows = []
    for system, sub in x.groupby("system", sort=True):
        counts, _ = np.histogram(sub[metric].to_numpy(dtype=float), bins=edges)
        rows += [{"system": system, "lo": float(lo), "hi": float(hi), "count": int(c)}
                 for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    return pd.DataFrame(rows)


def match_audio(memo: Memorization, row: pd.Series) -> tuple[Path | None, Path | None]:
    """Playable files of a match: ``generated_path``/``train_path`` relative to the memorization dir or its run."""
    out = []
    for col in ("generated_path", "train_path"):
        p = None
        for base in (memo.path, memo.path.parent):
            p = resolve_audio(base, row.get(col))
            if p is not None:
                break
        out.append(p)
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# human study (through human_eval's API only; the dashboard runs no SQL of its own)


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

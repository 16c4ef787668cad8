"""The one MusicCaps loader: the official CSV, its subsets, and the join to a folder of clips.

The CSV (Agostinelli et al. 2023, CC BY-SA 4.0) has captions with embedded newlines, CRLF line
ends, and list columns written as Python list literals (``"['pop', 'mellow']"``); those are parsed
with ``ast.literal_eval`` (never ``eval``) and any malformed cell is an error naming the row.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from metrics.audio import scan_dir
from metrics.errors import InputError
from metrics.io import read_csv_table

COLUMNS = [
    "ytid",
    "start_s",
    "end_s",
    "audioset_positive_labels",
    "aspect_list",
    "caption",
    "author_id",
    "is_balanced_subset",
    "is_audioset_eval",
]
LIST_COLUMNS = ("aspect_list", "audioset_positive_labels")
Subset = Literal["all", "balanced", "eval"]


class CaptionsError(InputError):
    """A captions CSV that cannot be used; the message names the file and the problem."""


def _parse_list(cell: object, path: Path, row: int, column: str) -> list[str]:
    if isinstance(cell, list):
        return [str(x) for x in cell]
    if cell is None or (isinstance(cell, float) and pd.isna(cell)) or cell == "":
        return []
    text = str(cell).strip()
    if not text.startswith("["):
        # audioset_positive_labels is a comma-separated list of AudioSet mids in the official CSV
        return [t.strip() for t in text.split(",") if t.strip()]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise CaptionsError(f"{path}: row {row} ({column}): not a list literal: {text[:60]!r} ({e})") from None
    if not isinstance(value, (list, tuple)):
        raise CaptionsError(f"{path}: row {row} ({column}): expected a list, got {type(value).__name__}")
    return [str(x) for x in value]


def _parse_bool(series: pd.Series, path: Path, column: str) -> pd.Series:
    mapping = {"true": True, "false": False, "1": True, "0": False}
    lowered = series.astype(str).str.strip().str.lower()
    bad = ~lowered.isin(mapping)
    if bad.any():
        row = int(bad.idxmax())
        raise CaptionsError(f"{path}: row {row} ({column}): not a boolean: {series[row]!r}")
    return lowered.map(mapping).astype(bool)


def load_captions(path: str | Path, subset: Subset = "all", require_all_columns: bool = True) -> pd.DataFrame:
    """Load a MusicCaps-format CSV; list columns become Python lists; index is ``ytid``.

    ``subset='balanced'`` keeps ``is_balanced_subset`` rows (1,000 in the official file),
    ``subset='eval'`` keeps ``is_audioset_eval`` rows (2,858).
    """
    path = Path(path)
    if not path.is_file():
        raise CaptionsError(f"{path}: captions file not found")
    # the C parser handles quoted newlines and CRLF; read_csv_table drops a BOM and refuses extra fields
    df = read_csv_table(path, CaptionsError, dtype={"ytid": str, "caption": str}, keep_default_na=False)
    df.columns = [str(c).strip() for c in df.columns]
    required = COLUMNS if require_all_columns else ["ytid", "caption"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CaptionsError(f"{path}: missing column(s) {', '.join(missing)}; expected MusicCaps columns {', '.join(COLUMNS)}")
    if df.empty:
        raise CaptionsError(f"{path}: no rows")
    df["ytid"] = df["ytid"].str.strip()  # " abc " would match no file abc.wav
    for col in ("ytid", "caption"):
        empty = df[col] == ""
        if empty.any():
            raise CaptionsError(f"{path}: row {int(empty.to_numpy().argmax())}: empty {col} "
                                f"({int(empty.sum())} row(s); a short row or a stray line break?)")
    dup = df["ytid"][df["ytid"].duplicated()]
    if len(dup):
        raise CaptionsError(f"{path}: duplicate ytid(s): {', '.join(dup.unique()[:10])}")
    for col in LIST_COLUMNS:
        if col in df.columns:
            df[col] = [_parse_list(v, path, i, col) for i, v in enumerate(df[col])]
    for col in ("is_balanced_subset", "is_audioset_eval"):
        if col in df.columns:
            df[col] = _parse_bool(df[col], path, col)
    for col in ("start_s", "end_s"):
        if col in df.columns:
            values = pd.to_numeric(df[col], errors="coerce")
            if values.isna().any():
                row = int(values.isna().to_numpy().argmax())
                raise CaptionsError(f"{path}: row {row} ({col}): not a number: {df[col].iloc[row]!r}")
            df[col] = values
    df["caption"] = df["caption"].astype(str).str.replace("\r\n", "\n")
    if subset == "balanced":
        df = df[df["is_balanced_subset"]]
    elif subset == "eval":
        df = df[df["is_audioset_eval"]]
    elif subset != "all":
        raise ValueError(f"subset must be 'all', 'balanced' or 'eval', not {subset!r}")
    return df.set_index("ytid", drop=False)


def captions_for(path: str | Path, ids: Iterable[str]) -> dict[str, str]:
    """ytid → caption from a captions CSV (``ytid``, ``caption``), checked to cover every id in ``ids``.

    Run before any model: an id with no caption row would otherwise fail MCC only after every clip was
    embedded, and without naming the CSV the user has to fix.
    """
    caps = load_captions(path, require_all_columns=False)["caption"].to_dict()
    lacking = sorted(set(ids) - set(caps))
    if lacking:
        raise CaptionsError(f"{path}: no caption for {len(lacking)} clip id(s): {', '.join(lacking[:20])}"
                            f"{' …' if len(lacking) > 20 else ''} (captions are matched to file stems)")
    return caps


def aspects_for(path: str | Path) -> dict[str, list[str]]:
    """ytid → ``aspect_list`` (parsed list literal) from a captions CSV; {} when the CSV has no such column."""
    df = load_captions(path, require_all_columns=False)
    return df["aspect_list"].to_dict() if "aspect_list" in df.columns else {}


@dataclass
class CaptionJoin:
    """Captions joined to a folder of clips: which ids have audio, which don't, which are extra."""

    captions: pd.DataFrame
    audio: dict[str, Path]
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return sorted(self.audio)

    def summary(self) -> str:
        return (
            f"{len(self.audio)} clips with captions; {len(self.missing)} captions without audio"
            f"{' (e.g. ' + ', '.join(self.missing[:5]) + ')' if self.missing else ''}; "
            f"{len(self.extra)} audio files without a caption"
        )


def join_audio(captions: pd.DataFrame, audio_dir: str | Path) -> CaptionJoin:
    """Match caption rows to ``<ytid>.<ext>`` files; missing clips are reported, not fatal."""
    files = scan_dir(audio_dir)
    ids = set(captions["ytid"])
    return CaptionJoin(
        captions=captions[captions["ytid"].isin(files)],
        audio={i: p for i, p in files.items() if i in ids},
        missing=sorted(ids - set(files)),
        extra=sorted(set(files) - ids),
    )


def write_captions(df: pd.DataFrame, path: str | Path) -> Path:
    """Write rows in the exact MusicCaps column order, list columns as list literals."""
    out = df.reset_index(drop=True)[COLUMNS].copy()
    # as in the official file: aspects as a list literal, AudioSet mids comma-joined
    out["aspect_list"] = [repr(list(v)) if isinstance(v, (list, tuple)) else v for v in out["aspect_list"]]
    out["audioset_positive_labels"] = [
        ",".join(v) if isinstance(v, (list, tuple)) else v for v in out["audioset_positive_labels"]
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False, lineterminator="\n")
    return path


def load_audioset_labels(path: str | Path) -> list[str]:
    """AudioSet ``class_labels_indices.csv`` (no header row: index, mid, display_name) → names by index.

    The official file has exactly 527 rows; indices must run 0..n-1 without gaps.
    """
    path = Path(path)
    if not path.is_file():
        raise CaptionsError(f"{path}: AudioSet label file not found")
    df = read_csv_table(path, CaptionsError, header=None, names=["index", "mid", "display_name"], dtype={"mid": str})
    if df.empty:
        raise CaptionsError(f"{path}: no rows")
    if str(df.iloc[0]["index"]).strip().lower() == "index":  # tolerate the header some copies carry
        df = df.iloc[1:].reset_index(drop=True)
    idx = pd.to_numeric(df["index"], errors="coerce")
    if idx.isna().any() or list(idx.astype(int)) != list(range(len(df))):
        raise CaptionsError(f"{path}: indices must run 0..{len(df) - 1} in order")
    blank = df[["mid", "display_name"]].isna().any(axis=1)
    if blank.any():  # a label without its name would be the string "nan" in every report
        raise CaptionsError(f"{path}: row of index {int(idx[blank].iloc[0])} has no mid or display_name "
                            "(rows are: index, mid, display_name)")
    return df["display_name"].astype(str).tolist()

"""The "Published protocols" tables of docs/protocol.md, rendered from docs/published_tables.json.

Same contract as ``benchmarks/figures.py`` (own ``<!-- protocols:NAME -->`` markers, so ``make figures``
can adopt ``PROTOCOL_RENDERERS`` without a name clash): the text between the markers is what
``PROTOCOL_RENDERERS[NAME](root)`` returns, nothing typed by hand (``tests/test_protocols.py`` checks it;
``python -m benchmarks.figures_protocols`` rewrites it). Values are printed as the papers print them;
``—`` where the paper prints none, ``n/t`` where this file has no transcription (with the reason below
the table), ``*`` after a value quoted from a secondary source only; the citations close each table.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from metrics.store import arrow, higher_is_better

ROOT = Path(__file__).resolve().parents[1]
TABLES = Path("docs/published_tables.json")
DOC = Path("docs/protocol.md")


def _cell(t: dict, row: dict, col: str) -> str:
    v = row[col]
    if v is None:
        return "n/t"
    if v == "-":
        return "—"
    text = f"{v:.{t['decimals'][col]}f}" if col in t.get("decimals", {}) else str(v)
    kinds = {t["citations"][c]["kind"] for c in row.get("cited", {}).get(col, [])}
    return text + ("" if "primary" in kinds else "*")


def render_table(root: Path, name: str) -> str:
    t = json.loads((root / TABLES).read_text(encoding="utf-8"))["tables"][name]
    cols = list(t["columns"])
    # the arrow of the suite's result key each column maps to: the direction the results store records
    arrows = [arrow(higher_is_better({}, t["columns"][c])) for c in cols]
    lines = [f"Source: {t['source']}." + ("" if t["verified"] else f" **Unverified**: {t['verification']}."), "",
             "| system | " + " | ".join(f"{c} {a}" for c, a in zip(cols, arrows)) + " |",
             "|---|" + "---:|" * len(cols)]
    lines += ["| " + " | ".join([row["system"], *(_cell(t, row, c) for c in cols)]) + " |" for row in t["rows"]]
    lines += ["", "Result keys of this suite: " + ", ".join(f"{c} = `{k}`" for c, k in t["columns"].items()) + "."]
    if any(_cell(t, row, c).endswith("*") for row in t["rows"] for c in cols):
        lines += ["*: quoted from a secondary source (a leaderboard page quoting the paper), not read in the paper."]
    if t.get("dash_reason"):
        lines += [f"—: {t['dash_reason']}."]
    if t.get("null_reason"):
        lines += [f"n/t: {t['null_reason']}."]
    lines += [f"{row['system']}: {row['note']}." for row in t["rows"] if row.get("note")]
    lines += ["Cited: " + "; ".join(f"[{k}] {c.get('url') or c.get('where')} ({c['kind']})"
                                     for k, c in t["citations"].items()) + "."]
    return "\n" + "\n".join(lines) + "\n"


PROTOCOL_RENDERERS: dict[str, Callable[[Path], str]] = {
    f"published-{n}": (lambda root, n=n: render_table(root, n)) for n in ("musiclm", "musicgen", "musicgen-released", "stable-audio")
}
MARKER = re.compile(r"<!-- protocols:(published-[a-z-]+) -->(.*?)<!-- /protocols:\1 -->", re.S)


def rewrite(root: Path = ROOT, check: bool = False) -> list[str]:
    """Rewrite (or, with ``check``, list the differing) published-table figures of docs/protocol.md."""
    path = root / DOC
    text = path.read_text(encoding="utf-8")
    stale = [m.group(1) for m in MARKER.finditer(text) if m.group(2) != PROTOCOL_RENDERERS[m.group(1)](root)]
    if not check and stale:
        new = MARKER.sub(lambda m: f"<!-- protocols:{m.group(1)} -->{PROTOCOL_RENDERERS[m.group(1)](root)}"
                                   f"<!-- /protocols:{m.group(1)} -->", text)
        path.write_text(new, encoding="utf-8")
    return stale


if __name__ == "__main__":
    stale = rewrite(check="--check" in sys.argv)
    if stale and "--check" in sys.argv:
        print("stale figures: " + ", ".join(stale))
        sys.exit(1)

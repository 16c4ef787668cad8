"""The study's audio players: a small bidirectional Streamlit component (``index.html``, plain JS, no build step).

Streamlit's own ``st.audio`` cannot say whether a clip was played. This component shows the same
players and sends back, on every play / pause / end, each player's share heard and number of plays,
plus the browser's user agent and audio output sample rate. The audio is served through Streamlit's
media file manager, exactly as ``st.audio`` serves it: under a content-hash URL that names no system.
"""

from __future__ import annotations

import base64
from pathlib import Path

_COMPONENT = None


def _component():
    global _COMPONENT
    if _COMPONENT is None:
        import streamlit.components.v1 as components

        _COMPONENT = components.declare_component("study_player", path=str(Path(__file__).resolve().parent))
    return _COMPONENT


def media_url(data: bytes, coordinates: str) -> str:
    """A URL the component's iframe can load ``data`` from (relative, so a proxy's base path still works)."""
    from streamlit import runtime

    if runtime.exists():
        url = runtime.get_instance().media_file_mgr.add(data, "audio/wav", coordinates)
        return f"../..{url}" if url.startswith("/") else url  # the iframe lives at <base>/component/<name>/
    return "data:audio/wav;base64," + base64.b64encode(data).decode()


def players(clips: list[tuple[str, str, bytes]], key: str, min_fraction: float) -> dict | None:
    """Render one player per ``(side, label, wav bytes)``; returns the latest report or None before the first.

    A report is ``{"n": count, "side", "kind": play|pause|ended, "clips": {side: {plays, fraction, ended}},
    "env": {user_agent, sample_rate}}``; ``n`` grows with every report of this page's component.
    """
    args = [{"side": side, "label": label, "url": media_url(data, f"{key}-{side}")} for side, label, data in clips]
    return _component()(clips=args, min_fraction=float(min_fraction), key=key, default=None)

"""The real-music audit set: excerpts of Debian's Wesnoth soundtrack (``wesnoth-1.16-music``, GPL-2+),
cut at run time (nothing is committed): training excerpts, planted altered copies of them, excerpts of
other pieces of the same genre, and null excerpts of the remaining pieces.

Shared by ``musiclm-eval memorization real-set`` and ``tests/test_memorization_real.py``; the musicnn
tests find the recordings with :func:`real_pieces` too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from metrics.memorization import MemorizationError

REAL_MUSIC = "/usr/share/games/wesnoth/*/data/core/music/*.ogg"  # Debian: wesnoth-1.16-music (GPL-2+)
REAL_SR = 16000
# planted copies in the generated set: id -> (index of the training piece, start s, gain dB, SNR dB or None)
REAL_COPIES = {
    "exact0": (0, 2.0, 0.0, None), "exact1": (1, 4.37, 0.0, None), "exact2": (2, 6.74, 0.0, None),  # on/off the 40 ms grid
    "gain_p6db": (3, 3.21, 6.0, None), "gain_m6db": (4, 10.5, -6.0, None),
    "noise_40db": (5, 1.55, 0.0, 40.0), "noise_30db": (6, 7.02, 0.0, 30.0), "noise_20db": (7, 9.9, 0.0, 20.0),
    "altered0": (3, 5.13, -6.0, 30.0), "altered1": (4, 5.13, -6.0, 30.0),  # −6 dB and 30 dB-SNR noise together
}


def real_pieces() -> list[str]:
    """Every piece of the installed soundtrack, sorted (empty when ``wesnoth-1.16-music`` is not installed)."""
    import glob

    return sorted(glob.glob(REAL_MUSIC))


def cut_excerpt(path: str, start: float, dur: float, sr: int = REAL_SR) -> tuple[np.ndarray, int]:
    """``dur`` seconds of a recording from ``start``, mono, at ``sr``: ``(wave, sr)``."""
    import soundfile as sf

    from metrics.audio import resample

    info = sf.info(path)
    w, s = sf.read(path, start=int(start * info.samplerate), frames=int(dur * info.samplerate), dtype="float32")
    return resample(w.mean(1) if w.ndim == 2 else w, s, sr), sr


def excerpt_starts(duration: float, clip_s: float, per_piece: int | None = None, edge_s: float = 2.0) -> np.ndarray:
    """Starts of the non-overlapping ``clip_s`` excerpts of a piece from ``edge_s`` to ``edge_s`` before its end:
    all of them, or ``per_piece`` evenly spaced ones."""
    starts = np.arange(edge_s, duration - edge_s - clip_s + 1e-9, clip_s)
    if per_piece is not None and len(starts) > per_piece:
        starts = starts[np.linspace(0, len(starts) - 1, per_piece).round().astype(int)]
    return starts


def real_set(sr: int = REAL_SR, seed: int = 0, n_train: int = 8, n_novel: int = 6, clip_s: float = 8.0,
             null_per_piece: int | None = None) -> tuple[dict, dict, dict, dict]:
    """The real-music audit set, in memory: ``(train, generated, null, truth)``, clips as ``{id: (wave, sr)}``.

    Pieces over 150 s, sorted: the even ones up to ``2·n_train`` give 20 s training excerpts (from 30 s);
    generated = the planted copies of :data:`REAL_COPIES` (``clip_s`` long; exact, ±6 dB, 40/30/20 dB-SNR
    white noise, both) and ``clip_s`` of ``n_novel`` *other* pieces (the odd ones); null = non-overlapping
    ``clip_s`` excerpts (from 2 s to 2 s before the end) of every remaining piece of the soundtrack, all of
    them or ``null_per_piece`` evenly spaced ones. ``truth``: copy id → (training id, start s)."""
    import soundfile as sf

    from metrics.memorization.alter import gain, noise

    files = real_pieces()
    long = [f for f in files if sf.info(f).duration > 150]
    if len(long) < 2 * max(n_train, n_novel):
        raise MemorizationError(f"{REAL_MUSIC}: {len(long)} pieces over 150 s, need {2 * max(n_train, n_novel)} "
                                "(apt-get install wesnoth-1.16-music)")
    train_f, novel_f = long[0 : 2 * n_train : 2], long[1 : 2 * n_novel : 2]

    def cut(path, start, dur):
        return cut_excerpt(path, start, dur, sr)

    stem = lambda f: Path(f).stem  # noqa: E731
    train = {stem(f): cut(f, 30, 20) for f in train_f}
    rng = np.random.default_rng(seed)
    n = int(round(clip_s * sr))
    gen, truth = {}, {}
    for gid, (k, start, db, snr) in REAL_COPIES.items():
        src = stem(train_f[k % len(train_f)])
        x = gain(db)(train[src][0][int(round(start * sr)) : int(round(start * sr)) + n], sr, rng)
        gen[gid] = ((noise(snr)(x, sr, rng) if snr is not None else x), sr)
        truth[gid] = (src, start)
    for f in novel_f:
        gen[f"novel_{stem(f)}"] = cut(f, 60, clip_s)
    null = {}
    for f in sorted(set(files) - set(train_f) - set(novel_f)):
        for s0 in excerpt_starts(sf.info(f).duration, clip_s, null_per_piece):
            null[f"null_{stem(f)}_{s0:05.1f}"] = cut(f, float(s0), clip_s)
    return train, gen, null, truth


def prepare_real_set(out: str | Path, sr: int = REAL_SR, seed: int = 0, null_per_piece: int | None = None) -> dict:
    """Folders train/ gen/ null/ of :func:`real_set` (16-bit WAV) and truth.json (planted copies' source and
    start); the same cut as tests/test_memorization_real.py, with every null excerpt unless ``null_per_piece``."""
    from metrics.audio import save_audio

    train, gen, null, truth = real_set(sr, seed, null_per_piece=null_per_piece)
    root = Path(out)
    for d, clips in (("train", train), ("gen", gen), ("null", null)):
        (root / d).mkdir(parents=True, exist_ok=True)
        for k, (w, s) in clips.items():
            save_audio(root / d / f"{k}.wav", w, s)
    (root / "truth.json").write_text(json.dumps({k: list(v) for k, v in truth.items()}, indent=2) + "\n")
    return {"truth": truth, "n_train": len(train), "n_generated": len(gen), "n_null": len(null)}

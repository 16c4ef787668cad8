"""How accurate is the rhythm estimator (``metrics.control.beats``: madmom's beat/downbeat RNNs + DBNs, comb-filter
tempo)? Measured where the truth is known, written to ``docs/figures/rhythm_accuracy.json``.

- **Procedural corpus** (``musiclm_ref.data``): every clip's spec knows its tempo and meter, and the renderer puts
  beat ``k`` at ``k · 60 / tempo`` s from 0 and a downbeat every ``meter`` beats. The tracker's beats, downbeats and
  tempo are scored against that with the rhythm metrics' own functions (beat/downbeat F-measure ±70 ms, tempo
  acc1/acc2 at 4 %), overall and split by whether the clip has drums.
- **Real recordings** (the Wesnoth soundtrack, ``benchmarks.real_music``): no annotated beats, so the check is the
  one a control metric needs: the tempo tracked on a time-stretched excerpt, against the tempo tracked on the
  original (the control), passes acc1 at a 1 % stretch and fails it at 6 %
  (``musiclm_ref.data.degrade.time_stretch``, overlap-add, pitch kept).

    python -m benchmarks.rhythm_accuracy                 # 48 corpus clips, every 2nd long Wesnoth piece
    python -m benchmarks.rhythm_accuracy --clips 8 --pieces 2 --out /tmp/r.json   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from metrics.control.beats import analyze, estimate_tempo
from metrics.control.rhythm import ACC2_FACTORS, F_WINDOW, TEMPO_TOLERANCE, f_measure, tempo_accuracy

OUT = Path("docs/figures/rhythm_accuracy.json")
STRETCHES = (1.01, 1.06)


def corpus_truth(tempo: float, meter: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """The rendered clip's beat and downbeat times (``musiclm_ref.data.render``: beat k at k·60/tempo from 0)."""
    beats = np.arange(0.0, seconds - 1e-9, 60.0 / tempo)
    return beats, beats[::meter]


def corpus_scores(n: int, seconds: float = 10.0, sample_rate: int = 24000, seed: int = 0) -> list[dict]:
    """One row per procedural clip: its truth (tempo, meter, drums) and the tracker's scores against it."""
    from musiclm_ref.data.render import render
    from musiclm_ref.data.specs import sample_spec

    rows = []
    for i in range(n):
        spec = sample_spec(seed, i)
        r = analyze(render(spec, seconds, sample_rate), sample_rate)
        beats, downbeats = corpus_truth(spec.tempo, spec.meter, seconds)
        rows.append({"index": i, "style": spec.style, "tempo": spec.tempo, "meter": spec.meter, "drums": spec.drums,
                     "tracked_tempo": round(r.tempo, 3), "beat_f": f_measure(beats, r.beats),
                     "downbeat_f": f_measure(downbeats, r.downbeats), "tempo_acc1": tempo_accuracy(spec.tempo, r.tempo),
                     "tempo_acc2": tempo_accuracy(spec.tempo, r.tempo, factors=ACC2_FACTORS)})
    return rows


def stretch_scores(pieces: list[str], start: float = 30.0, seconds: float = 10.0) -> list[dict]:
    """Per piece: tempo of an excerpt and of its 1 % / 6 % faster stretches, and acc1 of each against the original."""
    from benchmarks.real_music import cut_excerpt
    from musiclm_ref.data.degrade import time_stretch

    rows = []
    for path in pieces:
        wave, sr = cut_excerpt(path, start, seconds, 44100)
        control = estimate_tempo(wave, sr)
        row: dict = {"piece": Path(path).name, "tempo": round(control, 3)}
        for rate in STRETCHES:
            t = estimate_tempo(time_stretch(wave, sr, rate), sr)
            row[f"ratio_{rate:g}"] = round(t / control, 5) if control else None
            row[f"acc1_{rate:g}"] = tempo_accuracy(control, t) if control else None
        rows.append(row)
    return rows


def summary(rows: list[dict], keys: tuple[str, ...]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) if rows else None for k in keys}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=48, help="procedural clips (seed 0, indices 0..N-1)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pieces", type=int, default=None, help="Wesnoth pieces (default: every 2nd piece over 60 s)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = corpus_scores(a.clips, a.seconds, seed=a.seed)
    corpus_s = time.perf_counter() - t0
    keys = ("beat_f", "downbeat_f", "tempo_acc1", "tempo_acc2")
    import soundfile as sf

    from benchmarks.real_music import real_pieces

    long = [p for p in real_pieces() if sf.info(p).duration > 60][::2]
    stretched = stretch_scores(long[: a.pieces] if a.pieces is not None else long)
    out = {
        "command": "python -m benchmarks.rhythm_accuracy" + (" " + " ".join(argv) if argv else ""),
        "estimator": "madmom RNNBeatProcessor+DBNBeatTrackingProcessor, RNNDownBeatProcessor+DBNDownBeatTrackingProcessor"
                     " (3/4 beats per bar), comb-filter TempoEstimationProcessor (interpolated)",
        "window_s": F_WINDOW, "tempo_tolerance": TEMPO_TOLERANCE, "acc2_factors": ["1", "2", "3", "1/2", "1/3"],
        "corpus": {"clips": len(rows), "seconds": a.seconds, "seed": a.seed, **summary(rows, keys),
                   "with_drums": {"clips": sum(r["drums"] != "none" for r in rows),
                                  **summary([r for r in rows if r["drums"] != "none"], keys)},
                   "without_drums": {"clips": sum(r["drums"] == "none" for r in rows),
                                     **summary([r for r in rows if r["drums"] == "none"], keys)},
                   "wall_s_per_clip": round(corpus_s / max(len(rows), 1), 2), "per_clip": rows},
        "stretch": {"pieces": len(stretched), "excerpt": "10 s from 30 s, 44.1 kHz",
                    **{f"acc1_{r:g}": float(np.mean([s[f"acc1_{r:g}"] for s in stretched])) if stretched else None
                       for r in STRETCHES}, "per_piece": stretched},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    c = out["corpus"]
    print(f"corpus ({c['clips']} clips): beat F {c['beat_f']:.3f}, downbeat F {c['downbeat_f']:.3f}, "
          f"tempo acc1 {c['tempo_acc1']:.3f}, acc2 {c['tempo_acc2']:.3f}; stretch ({len(stretched)} pieces): "
          + ", ".join(f"acc1 at {r:g}x {out['stretch'][f'acc1_{r:g}']}" for r in STRETCHES) + f" -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

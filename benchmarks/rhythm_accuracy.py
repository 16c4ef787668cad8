"""How accurate is the rhythm estimator (``metrics.control.beats``: madmom's beat/downbeat RNNs + DBNs, comb-filter
tempo)? Measured where the truth is known.

- **Procedural corpus** (``musiclm_ref.data``): every clip's spec knows its tempo and meter, and the renderer puts
  beat ``k`` at ``k · 60 / tempo`` s from 0 and a downbeat every ``meter`` beats. ``rhythm_check`` scores the
  tracker's beats, downbeats and tempo against that with the rhythm metrics' own functions (beat/downbeat F-measure
  ±70 ms, tempo acc1/acc2 at 4 %); it is the ``rhythm`` entry of ``benchmarks.control_accuracy``, which writes it
  into ``docs/figures/control_accuracy.json`` beside the other control estimators.
- **Real recordings** (the Wesnoth soundtrack, ``benchmarks.real_music``): no annotated beats, so the check is the
  one a control metric needs: the tempo tracked on a time-stretched excerpt, against the tempo tracked on the
  original (the control), passes acc1 at a 1 % stretch and fails it at 6 %
  (``musiclm_ref.data.degrade.time_stretch``, overlap-add, pitch kept). Written to
  ``docs/figures/rhythm_accuracy.json``:

    python -m benchmarks.rhythm_accuracy                 # every 2nd Wesnoth piece over 60 s
    python -m benchmarks.control_accuracy --only rhythm  # the corpus half
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from metrics.control.beats import analyze, estimate_tempo
from metrics.control.rhythm import ACC2_FACTORS, TEMPO_TOLERANCE, f_measure, tempo_accuracy

OUT = Path("docs/figures/rhythm_accuracy.json")
STRETCHES = (1.01, 1.06)


def corpus_truth(tempo: float, meter: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """The rendered clip's beat and downbeat times (``musiclm_ref.data.render``: beat k at k·60/tempo from 0)."""
    beats = np.arange(0.0, seconds - 1e-9, 60.0 / tempo)
    return beats, beats[::meter]


def rhythm_check(spec, wave: np.ndarray, sr: int, seconds: float) -> dict[str, float | None]:
    """``benchmarks.control_accuracy``'s entry for the rhythm estimator: the tracker's beats, downbeats and tempo
    against one procedural clip's truth, scored by the rhythm metrics' own functions; tempo acc1 also split by
    whether the clip has drums (None where it does not apply, which the averaging skips)."""
    r = analyze(wave, sr)
    beats, downbeats = corpus_truth(spec.tempo, spec.meter, seconds)
    acc1 = tempo_accuracy(spec.tempo, r.tempo)
    drums = spec.drums != "none"
    return {"beat_f": f_measure(beats, r.beats), "downbeat_f": f_measure(downbeats, r.downbeats), "tempo_acc1": acc1,
            "tempo_acc2": tempo_accuracy(spec.tempo, r.tempo, factors=ACC2_FACTORS),
            "tempo_acc1_drums": acc1 if drums else None, "tempo_acc1_no_drums": None if drums else acc1}


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


def main(argv: list[str] | None = None) -> int:
    from metrics.io import write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pieces", type=int, default=None, help="Wesnoth pieces (default: every 2nd piece over 60 s)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    import soundfile as sf

    from benchmarks.real_music import real_pieces

    long = [p for p in real_pieces() if sf.info(p).duration > 60][::2]
    rows = stretch_scores(long[: a.pieces] if a.pieces is not None else long)
    out = {"command": "python -m benchmarks.rhythm_accuracy" + (" " + " ".join(argv) if argv else ""),
           "estimator": "madmom comb-filter tempo (TempoEstimationProcessor, interpolated) on RNNBeatProcessor activations",
           "tempo_tolerance": TEMPO_TOLERANCE, "excerpt": "10 s from 30 s, 44.1 kHz", "pieces": len(rows),
           **{f"acc1_{r:g}": float(np.mean([row[f"acc1_{r:g}"] for row in rows])) if rows else None for r in STRETCHES},
           "per_piece": rows}
    write_json(a.out, out)
    print(f"{len(rows)} pieces: " + ", ".join(f"acc1 at {r:g}x {out[f'acc1_{r:g}']}" for r in STRETCHES) + f" -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

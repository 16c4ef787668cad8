"""Per-aspect caption adherence judged by estimators: tempo words and BPM numbers, major / minor key.

No tagger has a label for "120 bpm" or "in A minor", but the control metrics' estimators measure exactly these
(``metrics/control``): madmom's tempo (``madmom-tempo``), madmom's CNN key classifier (``key-madmom``, real weights)
and the Krumhansl–Schmuckler key finder (``key-ks``, a non-learned baseline; same output layout). So
for the clips whose caption states a tempo or a key, ``EstimatorAdherence`` scores each clip by how well the
estimate matches the statement and averages over those clips (an accuracy, not an AUC: the estimate is a value
to compare, not a score to rank):

- tempo (``adherence_tempo_madmom``): a stated BPM number counts when the estimate is within 4 % of it (acc1,
  ``metrics.control.rhythm.tempo_accuracy``, Gouyon et al. 2006); a stated tempo word counts when the estimate
  falls in its class — slow < 90 ≤ medium ≤ 130 < fast bpm (the procedural corpus' classes,
  ``musiclm_ref.data.specs.tempo_class``); a number wins over a word.
- key (``adherence_key_madmom`` / ``adherence_key_ks``): a named key ("C# minor", "in A major") is scored by the MIREX weighted score
  (``metrics.control.tonal.key_weighted_score``: 1 same key, 0.5 a fifth, 0.3 relative, 0.2 parallel); a mode
  alone ("minor key", "in major") counts when the estimated mode is that mode.

Clips that state nothing of the aspect are left out (listed as skipped). Reference side: the statement as a
vector (``encode``); generated side: the estimator's output. ``shuffled_control`` permutes the statements across
the clips (chance: the base rate of the estimates).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from metrics.adherence_lexicon import CONCEPTS, NEGATION, Concept, clauses, stated
from metrics.control.rhythm import TEMPO_TOLERANCE, _MeanOverPairs, tempo_accuracy
from metrics.control.tonal import PITCH_CLASSES, key_weighted_score
from metrics.result import MetricResult

ESTIMATORS = {"madmom-tempo": "tempo", "key-madmom": "key", "key-ks": "key"}  # --adherence judge -> aspect
KEYS = {"madmom-tempo": "adherence_tempo_madmom", "key-madmom": "adherence_key_madmom", "key-ks": "adherence_key_ks"}
TEMPO_CLASSES = ("slow", "medium", "fast")
SLOW_BELOW, FAST_ABOVE = 90.0, 130.0  # musiclm_ref.data.specs.tempo_class
MEDIUM = Concept("medium", "tempo", None, None, ("medium tempo", "moderate tempo", "mid tempo", "midtempo",
                                                 "medium pace", "moderate pace", "medium paced", "moderately paced"))
BPM = re.compile(r"(?<![\d.])(\d{2,3}(?:\.\d+)?)\s*(?:bpm|b\.p\.m\.?|beats per minute)(?![\w])", re.I)
NAMED_KEY = re.compile(r"(?<![\w#])([A-G])(?:\s*(#|♯|b|♭)|[\s-]+(sharp|flat))?[\s-]+((?i:major|minor))(?![\w])")
MODE_ONLY = re.compile(r"(?<![\w-])(?:(major|minor)[\s-]+(?:key|tonality|scale|mode)|in\s+(?:a\s+)?(major|minor))(?![\w])",
                       re.I)


def tempo_class(bpm: float) -> int:
    """0 slow, 1 medium, 2 fast (``SLOW_BELOW`` / ``FAST_ABOVE``); -1 for no tempo."""
    if not np.isfinite(bpm) or bpm <= 0:
        return -1
    return 0 if bpm < SLOW_BELOW else (1 if bpm <= FAST_ABOVE else 2)


def _unnegated(pattern: re.Pattern, cut: Sequence[str]) -> list[re.Match]:
    return [m for c in cut for m in pattern.finditer(c) if not NEGATION.search(c[: m.start()])]


def stated_tempo(texts: Sequence[str]) -> tuple[float, int]:
    """(stated bpm or 0, stated class 0/1/2 or -1) of a clip's aspects and caption; an ambiguous class is -1."""
    cut = clauses(texts)
    numbers = [float(m.group(1)) for m in _unnegated(BPM, cut) if 30 <= float(m.group(1)) <= 300]
    by_name = {c.name: c for c in CONCEPTS}
    classes = [k for k, c in enumerate((by_name["slow"], MEDIUM, by_name["fast"])) if stated(c, texts, cut)]
    return (numbers[0] if numbers else 0.0), (classes[0] if len(classes) == 1 else -1)


def stated_key(texts: Sequence[str]) -> tuple[int, int]:
    """(tonic pitch class or -1, mode 0 major / 1 minor or -1) of a clip's aspects and caption (first statement)."""
    cut = clauses(texts)
    for m in _unnegated(NAMED_KEY, cut):
        letter, accidental, word, mode = m.groups()
        shift = 1 if (accidental in ("#", "♯") or word == "sharp") else -1 if (accidental in ("b", "♭") or word == "flat") else 0
        return (PITCH_CLASSES.index(letter) + shift) % 12, int(mode.lower() == "minor")
    for m in _unnegated(MODE_ONLY, cut):
        return -1, int((m.group(1) or m.group(2)).lower() == "minor")
    return -1, -1


class EstimatorAdherence(_MeanOverPairs):
    """Mean per-clip agreement of an estimator's tempo or key with what each caption states (see module doc)."""

    def __init__(self, estimator: str, n_boot: int = 1000, seed: int = 0):
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown adherence estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
        self.estimator, self.aspect = estimator, ESTIMATORS[estimator]
        self.name = estimator_key(estimator)
        self.output = estimator
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        if self.aspect == "tempo":
            return {"estimator": self.estimator, "bpm_tolerance": TEMPO_TOLERANCE, "classes_bpm": [SLOW_BELOW, FAST_ABOVE]}
        return {"estimator": self.estimator, "named_key": "MIREX weighted score", "mode_only": "mode accuracy"}

    def encode(self, texts: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
        """``{clip id: aspects and caption}`` → ``{clip id: statement}`` for the clips that state the aspect."""
        parse = stated_tempo if self.aspect == "tempo" else stated_key
        out = {cid: np.array(parse(t), np.float64) for cid, t in texts.items()}
        return {cid: v for cid, v in out.items() if v[1] >= 0 or (self.aspect == "tempo" and v[0] > 0)}

    def score(self, control: np.ndarray, generated: np.ndarray) -> float | None:
        said, est = np.asarray(control, np.float64).reshape(-1), np.asarray(generated, np.float64).reshape(-1)
        if self.aspect == "tempo":
            if said[0] > 0:
                return tempo_accuracy(said[0], est[0])
            return None if said[1] < 0 else float(tempo_class(est[0]) == said[1])
        if said[1] < 0:
            return None
        if said[0] >= 0:
            return key_weighted_score((int(said[0]), int(said[1])), (int(est[0]), int(est[1])))
        return float(est[0] >= 0 and int(est[1]) == int(said[1]))

    def compute(self) -> MetricResult:
        r = super().compute()
        r.extra["shuffled_control"] = shuffled_estimator_control(self, self.seed)
        return r


def shuffled_estimator_control(metric: EstimatorAdherence, seed: int = 0, n_perm: int = 20) -> float | None:
    """Chance: the mean score with the statements permuted across the scored clips (``n_perm`` seeded permutations)."""
    ids = [i for i in metric.paired_ids() if metric.score(metric.outputs["reference"][i], metric.outputs["generated"][i])
           is not None]
    if len(ids) < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_perm):
        perm = rng.permutation(len(ids))
        values.append(np.mean([metric.score(metric.outputs["reference"][ids[p]], metric.outputs["generated"][i])
                               for i, p in zip(ids, perm)]))
    return round(float(np.mean(values)), 4)


def estimator_key(estimator: str) -> str:
    """The result key of an estimator's aspect: ``adherence_tempo_madmom``, ``adherence_key_madmom``, ``adherence_key_ks``."""
    return KEYS[estimator]

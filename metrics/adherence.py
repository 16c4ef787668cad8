"""Per-aspect caption adherence: does a system's audio have what its caption asked for, aspect by aspect?

A judge that did not condition the generator (musicnn's MTT / MSD taggers, ``metrics.embedders.musicnn``)
listens to each clip; the lexicon (``metrics.adherence_lexicon``) says which clips' captions (MusicCaps
``aspect_list`` and caption text) state each concept and which tag hears it. For one aspect (instrument,
genre, mood, vocals, tempo) and one tagger, ``AspectAdherence`` is the mean over the aspect's concepts of the
Mann–Whitney AUC of the concept's tag probability for separating the clips whose caption states the concept
from the other clips (1 = the tag ranks every asked-for clip first, 0.5 = chance). A concept with an empty
class (no clip, or every clip, states it) is left out of the mean, on the point value and on each resample.

Why an AUC and not a threshold accuracy: a tag probability is not calibrated across concepts or systems,
and the AUC needs no threshold. Why per clip: the unit of every interval and paired test is the caption
(``metrics.run_statistics``), so the AUC is recomputed on resampled clip ids with multiplicity weights
(``value_on_counts``, O(clips) per concept and resample after one sort). The per-clip value a store keeps is
the clip's mean *placement* (the share of the concept's negatives its tag score beats, ties ½) over the
concepts its caption states: averaged over a concept's positives, the placements are that concept's AUC.

Controls: the reference audio scored as a system gives the ceiling (``compare``'s ground-truth row), and
``shuffled_control`` gives the chance level (the same scores against captions permuted across clips).
Estimator aspects (key words, BPM numbers) are not covered here: see docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from metrics.adherence_lexicon import ASPECTS, TAGGERS, Concept, caption_vector, concepts_for
from metrics.errors import InputError
from metrics.metric import MetricError, PerClipOutputs
from metrics.result import MetricResult


def mann_whitney_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """AUC of ``scores`` for ``positive`` (ties count ½) by the pairwise definition; None when a class is empty."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The AUC of each row of clip ``weights`` [B, n] (a clip drawn k times counts k times): NaN where a class
    weighs nothing. Sorted once; each row is then cumulative sums, so a resample costs O(n)."""
    s, pos = np.asarray(scores, np.float64), np.asarray(positive, bool)
    w = np.atleast_2d(np.asarray(weights, np.float64))
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    start = np.searchsorted(s_sorted, s_sorted, side="left")  # first sorted position of each item's tie group
    end = np.searchsorted(s_sorted, s_sorted, side="right")
    wp, wn = (w * pos)[:, order], (w * ~pos)[:, order]
    cum = np.concatenate([np.zeros((len(w), 1)), np.cumsum(wn, axis=1)], axis=1)
    below, tied = cum[:, start], cum[:, end] - cum[:, start]
    denom = wp.sum(1) * wn.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (wp * (below + 0.5 * tied)).sum(1) / denom, np.nan)


def probabilities(output: np.ndarray) -> np.ndarray:
    """A tagger output as tag probabilities: window logits [windows, labels] → mean sigmoid over windows
    (musicnn's output layer and its ``tag``), a vector [labels] is taken as probabilities already."""
    z = np.asarray(output, np.float64)
    if z.ndim == 1:
        return z
    if z.ndim != 2 or not len(z):
        raise MetricError(f"tag output of shape {z.shape}: expected [windows, labels] logits")
    return (1.0 / (1.0 + np.exp(-z))).mean(axis=0)


def adherence_key(aspect: str, tagger: str) -> str:
    """The result key of one aspect judged by one tagger: ``adherence_<aspect>_<mtt|msd>``."""
    return f"adherence_{aspect}_{tagger.rsplit('-', 1)[-1]}"


class AspectAdherence(PerClipOutputs):
    """Mean per-concept AUC of one aspect: captions' stated concepts (reference side, ``[concepts]`` of 0/1 from
    ``encode``) against the tagger's outputs on the audio (generated side, ``[windows, labels]`` logits)."""

    output = "tags"
    higher_is_better = True  # an AUC: the asked-for clips ranked above the others
    bounds = (0.0, 1.0)

    def __init__(self, aspect: str, tagger: str, labels: Sequence[str], n_boot: int = 1000, seed: int = 0):
        self.aspect, self.tagger, self.labels = aspect, tagger, tuple(labels)
        self.concepts: list[Concept] = concepts_for(aspect, tagger)
        if not self.concepts:
            raise MetricError(f"{tagger} has no tag for any {aspect} concept of the lexicon")
        missing = [c.tag(tagger) for c in self.concepts if c.tag(tagger) not in self.labels]
        if missing:
            raise MetricError(f"{tagger}: labels {missing} of the lexicon are not among the model's labels")
        self.columns = [self.labels.index(c.tag(tagger)) for c in self.concepts]  # type: ignore[arg-type]
        self.name = adherence_key(aspect, tagger)
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        return {"aspect": self.aspect, "tagger": self.tagger,
                "concepts": {c.name: c.tag(self.tagger) for c in self.concepts}}

    def encode(self, texts: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
        """``{clip id: aspects and caption}`` → the reference side ``{clip id: [concepts] of 0/1}``."""
        return {cid: np.array(caption_vector(t, self.concepts)) for cid, t in texts.items()}

    def ids(self, side: str) -> list[str]:
        self._check_side(side)
        return self.paired_ids()

    def matrices(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(paired ids, stated [n, concepts] bool, tag probability [n, concepts])."""
        ids = self.paired_ids()
        if not ids:
            raise MetricError(f"{self.name}: no clip has both a caption and tagger outputs")
        stated = np.stack([np.asarray(self.outputs["reference"][i], np.float64) > 0.5 for i in ids])
        if stated.shape[1] != len(self.concepts):
            raise MetricError(f"{self.name}: caption vectors have {stated.shape[1]} entries, "
                              f"the aspect has {len(self.concepts)} concepts")
        scores = np.stack([probabilities(self.outputs["generated"][i])[self.columns] for i in ids])
        return ids, stated, scores

    def concept_aucs(self, weights: np.ndarray) -> np.ndarray:
        """[B, concepts] AUCs of each row of clip weights (aligned with ``ids``)."""
        _, stated, scores = self.matrices()
        return np.stack([weighted_auc(scores[:, j], stated[:, j], weights) for j in range(len(self.concepts))], axis=1)

    def value_on_counts(self, ref_counts: np.ndarray, gen_counts: np.ndarray) -> np.ndarray:
        a = self.concept_aucs(gen_counts)
        with np.errstate(invalid="ignore"):
            count = np.isfinite(a).sum(1)
            return np.where(count > 0, np.nansum(a, 1) / np.maximum(count, 1), np.nan)

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float:
        pos = {cid: k for k, cid in enumerate(self.paired_ids())}
        unknown = set(gen_ids) - set(pos)
        if unknown:
            raise MetricError(f"{self.name}: unknown clip ids {sorted(unknown)[:3]}")
        w = np.bincount([pos[c] for c in gen_ids], minlength=len(pos))[None]
        return float(self.value_on_counts(w, w)[0])

    def placements(self) -> dict[str, float]:
        """Per clip: mean over the concepts its caption states of the share of that concept's negatives whose
        tag score it beats (ties ½); clips that state none of the aspect's concepts have no value."""
        ids, stated, scores = self.matrices()
        out = {}
        for k, cid in enumerate(ids):
            values = [float(np.mean((scores[~stated[:, j], j] < scores[k, j])
                                    + 0.5 * (scores[~stated[:, j], j] == scores[k, j])))
                      for j in np.flatnonzero(stated[k]) if (~stated[:, j]).any()]
            if values:
                out[cid] = float(np.mean(values))
        return out

    def compute(self) -> MetricResult:
        ids, stated, scores = self.matrices()
        aucs = self.concept_aucs(np.ones((1, len(ids))))[0]
        value = float(self.value_on_counts(np.ones((1, len(ids))), np.ones((1, len(ids))))[0])
        if not np.isfinite(value):
            raise MetricError(f"{self.name}: no concept of the aspect has both clips that state it and clips that do "
                              f"not ({len(ids)} clips; concepts {', '.join(c.name for c in self.concepts)})")
        concepts = {c.name: {"tag": c.tag(self.tagger), "auc": None if not np.isfinite(a) else round(float(a), 4),
                             "positives": int(stated[:, j].sum())}
                    for j, (c, a) in enumerate(zip(self.concepts, aucs))}
        extra = {**self.config(), "concepts": concepts, "n_clips": len(ids),
                 "shuffled_control": shuffled_control(self, self.seed),
                 "unpaired": sorted(set(self.outputs["reference"]) ^ set(self.outputs["generated"]))}
        return self.result(value, self.placements(), extra)


def shuffled_control(metric: AspectAdherence, seed: int = 0, n_perm: int = 20) -> float | None:
    """The chance level: the metric's mean value over ``n_perm`` seeded permutations of the caption vectors across
    its clips, so every tag score is judged against another clip's caption (one permutation of a few dozen clips
    scatters by ±0.1). None where no concept has both classes."""
    ids = metric.paired_ids()
    rng = np.random.default_rng(seed)
    ones = np.ones((1, len(ids)))
    values = []
    for _ in range(n_perm):
        perm = rng.permutation(len(ids))
        other = AspectAdherence(metric.aspect, metric.tagger, metric.labels, n_boot=0, seed=seed)
        other.update("reference", {ids[k]: metric.outputs["reference"][ids[p]] for k, p in enumerate(perm)})
        other.update("generated", {i: metric.outputs["generated"][i] for i in ids})
        values.append(other.value_on_counts(ones, ones)[0])
    finite = [v for v in values if np.isfinite(v)]
    return round(float(np.mean(finite)), 4) if finite else None


def caption_texts(captions: Mapping[str, str] | None, aspects: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """``{clip id: [aspect, …, caption]}``: what the lexicon reads for each clip (its MusicCaps ``aspect_list``
    where the CSV has one, and its caption text; a concept is stated when either states it)."""
    if captions is None and aspects is None:
        raise InputError("per-aspect adherence needs captions (a MusicCaps-format CSV with ytid, caption, and "
                         "optionally aspect_list)")
    captions, aspects = captions or {}, aspects or {}
    return {i: [*aspects.get(i, ()), *([captions[i]] if i in captions else [])] for i in sorted({*captions, *aspects})}


def aspects_of(tagger: str) -> list[str]:
    """The aspects ``tagger`` has a tag for (the metrics ``compare --adherence`` adds for it)."""
    return [a for a in ASPECTS if concepts_for(a, tagger)]


def adherence_metrics(tagger: str, labels: Sequence[str], n_boot: int = 1000, seed: int = 0) -> dict[str, AspectAdherence]:
    """``{result key: metric}`` for every aspect ``tagger`` covers."""
    if tagger not in TAGGERS:
        raise MetricError(f"adherence: unknown tagger {tagger!r}; expected one of {', '.join(TAGGERS)}")
    return {adherence_key(a, tagger): AspectAdherence(a, tagger, labels, n_boot, seed) for a in aspects_of(tagger)}

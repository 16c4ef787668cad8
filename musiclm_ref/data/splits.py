"""Clip ids and training splits of the procedural corpus, and what every shipped fitted piece saw.

A clip's bytes depend on (seed, index) and the corpus settings (length, sample rate, forced styles),
so its id names all of them: ``syn-s0-10s-00004``. Ids of corpora made with other seeds or settings
never collide, and a split can be recorded in a manifest as the settings that regenerate its ids
plus their digest (``split_record``) instead of a thousand ids. ``shipped_training_ids`` reads the
``train_splits`` of every shipped manifest, so a test can require that no evaluation clip was ever
seen by a fitted piece (codec, semantic tokenizer, MuLan and its RVQ, stages, melody model, classifier).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from metrics.artifacts import HOLD_OUT_EVERY, held_out_index, ids_sha256, manifest_entries

# clip i is in the eval split when i % 5 == 4 (metrics.artifacts' one held-out rule): a fixed,
# seed-independent 20%, the same clips the codec, the stages, MuLan and the classifier hold out
EVAL_EVERY = HOLD_OUT_EVERY
# The project's clean evaluation clips: the eval split of a corpus seed no shipped piece was fitted on
# (tests/test_splits.py checks every manifest). The demo and benchmarks.hierarchy evaluate on these.
HELD_OUT = {"seed": 1, "split": "eval"}
ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MANIFESTS = (  # every file that describes a shipped fitted piece trained on corpus clips
    ROOT / "musiclm_ref" / "checkpoints" / "tiny" / "manifest.json",
    ROOT / "musiclm_ref" / "checkpoints" / "mulan-tiny.json",
    ROOT / "metrics" / "checkpoints" / "classifier-tiny.json",
)


def corpus_tag(seconds: float, sample_rate: int = 24000, styles: Sequence[str] | None = None) -> str:
    """The settings part of a clip id: ``10s``; ``4s-16000hz`` off the default rate; ``-st<digest>`` with styles."""
    tag = f"{seconds:g}s" + (f"-{sample_rate}hz" if sample_rate != 24000 else "")
    if styles:
        tag += "-st" + hashlib.sha256(",".join(styles).encode()).hexdigest()[:6]
    return tag


def clip_id(seed: int, index: int, seconds: float = 10.0, sample_rate: int = 24000,
            styles: Sequence[str] | None = None) -> str:  # fmt: skip
    """``syn-s0-10s-00004``: seed, settings and index, so ids are unique across seeds and corpus settings."""
    return f"syn-s{seed}-{corpus_tag(seconds, sample_rate, styles)}-{index:05d}"


SPLITS = ("train", "eval")


def split_of(index: int) -> str:
    """``"eval"`` for the clips the one held-out rule holds out (``metrics.artifacts.held_out_index``)."""
    return "eval" if held_out_index(index) else "train"


def split_indices(n: int, split: str | None = None) -> list[int]:
    """Indices of a corpus of ``n`` clips: all of 0..n-1, or (``split``) the first ``n`` clips of that split."""
    if split is None:
        return list(range(n))
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "eval":
        return [EVAL_EVERY * k + EVAL_EVERY - 1 for k in range(n)]
    out, i = [], 0
    while len(out) < n:
        if split_of(i) == "train":
            out.append(i)
        i += 1
    return out


def corpus_ids(seed: int, n: int, seconds: float = 10.0, sample_rate: int = 24000, styles: Sequence[str] | None = None,
               split: str | None = None, part: str | None = None) -> list[str]:  # fmt: skip
    """Ids of ``generate_corpus(..., n, seconds, seed, sample_rate, styles, split=split)``, or of its ``part``
    (``"train"`` / ``"eval"`` rows of labels.csv) — without rendering anything."""
    idx = split_indices(n, split)
    if part is not None:
        if part not in SPLITS:
            raise ValueError(f"unknown part {part!r}; expected one of {', '.join(SPLITS)}")
        idx = [i for i in idx if split_of(i) == part]
    return [clip_id(seed, i, seconds, sample_rate, styles) for i in idx]


def split_record(seed: int, n: int, seconds: float = 10.0, sample_rate: int = 24000, styles: Sequence[str] | None = None,
                 split: str | None = None, part: str | None = None) -> dict:  # fmt: skip
    """What a manifest records about the clips a piece was fitted on: the settings that regenerate the ids
    (``ids_from_record``), their count and ``ids_sha256``."""
    ids = corpus_ids(seed, n, seconds, sample_rate, styles, split, part)
    return {"generator": "musiclm_ref.data.synth.generate_corpus", "seed": seed, "n": n, "seconds": seconds,
            "sample_rate": sample_rate, "styles": list(styles) if styles else None, "split": split, "part": part,
            "n_ids": len(ids), "ids_sha256": ids_sha256(ids)}  # fmt: skip


def ids_from_record(record: dict) -> list[str]:
    """The ids a ``split_record`` describes; raises when they no longer hash to the recorded digest
    (the id scheme or the split rule changed since the manifest was written)."""
    keys = ("seed", "n", "seconds", "sample_rate", "styles", "split", "part")
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"split record lacks {', '.join(missing)}: {record}")
    ids = corpus_ids(**{k: record[k] for k in keys})
    if ids_sha256(ids) != record.get("ids_sha256") or len(ids) != record.get("n_ids"):
        raise ValueError(f"split record {record} regenerates {len(ids)} ids with sha256 {ids_sha256(ids)[:12]}…, "
                         f"not the recorded {record.get('n_ids')} / {str(record.get('ids_sha256'))[:12]}…")
    return ids


def training_ids(entry: dict, source: str = "<manifest>") -> set[str]:
    """Every id a manifest entry says its piece was fitted on (its ``train_splits``, each regenerated and checked)."""
    records = entry.get("train_splits")
    if not records:
        raise ValueError(f"{source}: no train_splits recorded (which clips was this piece fitted on?)")
    out: set[str] = set()
    for r in records:
        try:
            out |= set(ids_from_record(r))
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
    return out


def shipped_training_ids(manifests: Sequence[str | Path] = SHIPPED_MANIFESTS) -> dict[str, set[str]]:
    """``{"<manifest>:<piece>": ids}`` for every piece of every shipped manifest."""
    out = {}
    for m in manifests:
        for name, entry in manifest_entries(m).items():
            out[f"{Path(m).name}:{name}"] = training_ids(entry, f"{m}:{name}")
    return out


def leaks(eval_ids: Sequence[str], manifests: Sequence[str | Path] = SHIPPED_MANIFESTS) -> dict[str, list[str]]:
    """``{piece: eval ids it was fitted on}`` — empty when the evaluation clips are unseen by every piece."""
    ev = set(eval_ids)
    return {k: sorted(ev & ids) for k, ids in shipped_training_ids(manifests).items() if ev & ids}


def held_out_ids(n: int, seconds: float = 10.0) -> list[str]:
    """Ids of the first ``n`` held-out clips (``generate_corpus(..., seed=HELD_OUT["seed"], split="eval")``)."""
    return corpus_ids(HELD_OUT["seed"], n, seconds, split=HELD_OUT["split"])

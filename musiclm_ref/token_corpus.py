"""What stage training reads: a token corpus (every clip tokenized once by the frozen models) and random crops of it.

``prepare_tokens`` tokenizes a corpus directory once; ``sample_batch`` cuts a batch of stage crops out of
a ``TokenCorpus`` with the conditioning dropout of ``StageConfig`` applied. Sampling (``pipeline.MusicLM``)
never needs this module: it only lives on the training side.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from musiclm_ref.pipeline import SAMPLE_RATE, PipelineError
from musiclm_ref.quantize import ResidualVQ
from musiclm_ref.stages import NULL, Stage, TokenSpec, melody_window_starts


@dataclass
class TokenCorpus:
    """Precomputed tokens of equal-length clips (what all stage training reads; built once).

    semantic [N, Ts], acoustic [N, Ta, 12], mulan [N, 12], melody [N, starts, 24] with one melody
    window starting at every whole second (``melody_starts`` = seconds), chroma [N, Ts] (the clip's own
    chroma tokens, ``musiclm_ref.chroma``: what a ``chroma=True`` coarse stage is conditioned on).
    """

    ids: list[str]
    semantic: Tensor
    acoustic: Tensor
    mulan: Tensor
    melody: Tensor | None
    spec: TokenSpec
    metadata: dict = field(default_factory=dict)
    chroma: Tensor | None = None

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("ids", "semantic", "acoustic", "mulan", "melody", "metadata", "chroma")}
        return {**d, "spec": asdict(self.spec)}

    @classmethod
    def from_dict(cls, d: dict) -> TokenCorpus:
        return cls(**{**d, "spec": TokenSpec(**d["spec"])})

    def subset(self, index: list[int]) -> TokenCorpus:
        idx = torch.as_tensor(index)
        mel = self.melody[idx] if self.melody is not None else None
        chroma = self.chroma[idx] if self.chroma is not None else None
        return replace(self, ids=[self.ids[i] for i in index], semantic=self.semantic[idx],
                       acoustic=self.acoustic[idx], mulan=self.mulan[idx], melody=mel, chroma=chroma)


@dataclass
class StageRun:
    """What ``train.stages.train_stages`` trains from, whichever data path made it (the cached token corpus,
    ``train.stages``; streamed crops, ``data.stream.streaming_run``).

    ``corpus`` is the training token corpus (None when ``source`` streams the batches); ``source(stage,
    local_batch)`` gives the batch source for one stage (None: random crops of ``corpus``);
    ``held_out(stage)`` the held-out crops that stage is evaluated on (None: no evaluation on this rank).
    ``hashes`` are the input hashes a stage checkpoint records; ``info`` the counts and rules its manifest says.
    """

    spec: TokenSpec
    hashes: dict[str, str | None]
    info: dict
    corpus: TokenCorpus | None
    source: Callable[[Stage, int], object | None]
    held_out: Callable[[Stage], TokenCorpus | None]


def sample_batch(stage: Stage, corpus: TokenCorpus, batch: int, g: torch.Generator,
                 rows: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Random crops → (cond, targets, context) with conditioning dropout applied. ``rows`` fixes the clips
    (streamed crops: each once) instead of drawing them."""
    cfg, t = stage.config, corpus.spec
    n = len(corpus.ids)
    rows = torch.randint(0, n, (batch,), generator=g) if rows is None else rows
    ta = corpus.acoustic.shape[1]
    frames_a = min(int(round(cfg.crop_seconds * t.acoustic_rate)), ta)
    if cfg.stage == "semantic":
        seconds = corpus.semantic.shape[1] // t.semantic_rate
        crop_s = min(int(math.ceil(cfg.crop_seconds)), seconds)
        start_sec = torch.randint(0, seconds - crop_s + 1, (batch,), generator=g)  # whole seconds (melody windows)
        frames = min(cfg.frames, corpus.semantic.shape[1])
        targets = torch.stack([corpus.semantic[r, s * t.semantic_rate : s * t.semantic_rate + frames] for r, s in zip(rows, start_sec)])
        melody = None
        if corpus.melody is not None:
            starts = melody_window_starts(crop_s, cfg.melody_windows)
            melody = torch.stack([corpus.melody[r, [int(s) + k for k in starts]] for r, s in zip(rows, start_sec)])
            keep = torch.rand(batch, generator=g) >= cfg.melody_dropout
        mulan = corpus.mulan[rows]
        drop = torch.rand(batch, generator=g) < cfg.cond_dropout
        cond = stage.conditioning(batch, mulan, melody)
        null = stage.conditioning(batch, None, None)
        lm = t.mulan_levels
        cond[:, :lm] = torch.where(drop[:, None], null[:, :lm], cond[:, :lm])
        if melody is not None:
            cond[:, lm:] = torch.where(keep[:, None], cond[:, lm:], null[:, lm:])
        return cond, targets, None
    start = torch.randint(0, (ta - frames_a) // 2 + 1, (batch,), generator=g) * 2  # even: aligned with 25 Hz
    codes = torch.stack([corpus.acoustic[r, s : s + frames_a] for r, s in zip(rows, start)])
    if cfg.stage == "coarse":
        sem = torch.stack([corpus.semantic[r, s // 2 : s // 2 + frames_a // 2] for r, s in zip(rows, start)])
        drop = torch.rand(batch, generator=g) < cfg.cond_dropout
        cond = stage.conditioning(batch, corpus.mulan[rows], None)
        cond = torch.where(drop[:, None], stage.conditioning(batch, None, None), cond)
        skip = torch.rand(batch, generator=g) < cfg.semantic_dropout
        ctx = torch.where(skip[:, None], torch.full_like(sem, NULL), stage.semantic_context(sem))
        if cfg.chroma:  # the melody's chroma beside S, dropped as the semantic stage drops its melody tokens
            if corpus.chroma is None:
                raise PipelineError("this token corpus has no chroma tokens; a chroma coarse stage needs them (re-tokenize)")
            chroma = torch.stack([corpus.chroma[r, s // 2 : s // 2 + frames_a // 2] for r, s in zip(rows, start)])
            ctx = stage.with_chroma(ctx, chroma, drop=torch.rand(batch, generator=g) < cfg.melody_dropout)
        return cond, codes[..., : t.coarse_levels], ctx
    cond = stage.conditioning(batch, None, None)
    return cond, codes[..., t.coarse_levels :], codes[..., : t.coarse_levels]


def token_spec(codec, tokenizer, mulan_rvq: ResidualVQ, melody=None) -> TokenSpec:
    """The vocabularies the frozen models give the stages (a stage trained on them must be sampled with them)."""
    return TokenSpec(mulan_levels=mulan_rvq.num_quantizers, mulan_codebook=mulan_rvq.codebook_size,
                     melody_levels=melody.rvq.num_quantizers if melody is not None else 24,
                     melody_codebook=melody.rvq.codebook_size if melody is not None else 512,
                     semantic_codebook=tokenizer.vocab_size, acoustic_levels=codec.num_quantizers,
                     acoustic_codebook=codec.codebook_size)


def prepare_tokens(data_dir: str | Path, codec, tokenizer, mulan, mulan_rvq: ResidualVQ, melody=None,
                   on_error: str = "raise", progress: bool = True) -> TokenCorpus:
    """Tokenize every clip of a corpus directory once: semantic, acoustic, M_A and melody tokens.

    Clips are cut to the shortest clip's whole seconds (stage crops need equal lengths)."""
    from tqdm import tqdm

    from metrics.audio import load_dir
    from musiclm_ref.chroma import chroma_tokens

    report = load_dir(data_dir, SAMPLE_RATE, on_error=on_error, min_seconds=4.0)
    clips = sorted(report.clips, key=lambda c: c.id)
    if not clips:
        raise PipelineError(f"{data_dir}: no usable clips")
    seconds = min(len(c.wave) for c in clips) // SAMPLE_RATE
    n = seconds * SAMPLE_RATE
    sem, ac, mul, mel, chroma = [], [], [], [], []
    for c in tqdm(clips, desc="tokenize", disable=not progress):
        w = c.wave[:n]
        sem.append(torch.from_numpy(tokenizer.tokenize(w, SAMPLE_RATE)[: seconds * 25]))
        chroma.append(torch.from_numpy(chroma_tokens(w, SAMPLE_RATE, seconds * 25)))
        ac.append(codec.encode(torch.from_numpy(w)[None])[0, : seconds * 50].cpu())
        if melody is not None:
            mel.append(melody.tokens(w, SAMPLE_RATE, list(range(0, seconds - 3))))
    emb = torch.from_numpy(mulan.embed_audio([c.wave[:n] for c in clips], SAMPLE_RATE)).float()
    mul = mulan_rvq.encode(emb)
    spec = token_spec(codec, tokenizer, mulan_rvq, melody)
    return TokenCorpus(ids=[c.id for c in clips], semantic=torch.stack(sem), acoustic=torch.stack(ac), mulan=mul,
                       melody=torch.stack(mel) if mel else None, spec=spec, chroma=torch.stack(chroma),
                       metadata={"data_dir": str(data_dir), "seconds": seconds, "skipped": [str(s) for s in report.skipped]})

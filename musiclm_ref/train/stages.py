"""``train stage``: the three stages trained (or resumed) from a corpus directory or a folder tree.

Stage training reads a *token corpus*: every clip tokenized once (semantic, acoustic, MuLan M_A and
melody tokens) and cached under ``~/.cache/musiclm-eval/tokens`` by a key made of the data hash and
the hashes of every model that produced the tokens, so retraining a stage never re-tokenizes and a
changed codec never reuses stale tokens (``stream=True`` tokenizes streamed crops instead:
``musiclm_ref.data.stream``). Each stage checkpoint records the codec's token-interface hash (config,
encoder, codebooks: ``Codec.tokens_hash``) and file sha256; ``MusicLM.from_pretrained`` refuses a stage
trained on another codec's tokens (a decoder-only fine-tune keeps the tokens).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from metrics.artifacts import (
    CheckpointError,
    clips_hash,
    manifest_entry,
    read_checkpoint,
    save_checkpoint,
    split_held_out,
    write_manifest_entry,
)
from metrics.io import file_sha256
from musiclm_ref.pipeline import SAMPLE_RATE, SHIPPED_DIR, SHIPPED_MULAN, load_mulan_rvq
from musiclm_ref.presets import get_preset
from musiclm_ref.stages import Stage, stage_config
from musiclm_ref.token_corpus import StageRun, TokenCorpus, prepare_tokens
from musiclm_ref.train.mulan_rvq import save_fitted
from musiclm_ref.train.stage import StageTrainConfig, fit_stage

CACHE_DIR = Path(os.environ.get("MUSICLM_EVAL_CACHE", Path.home() / ".cache" / "musiclm-eval")) / "tokens"
TOKENS_FORMAT = "musiclm-eval/token-corpus/2"  # a token-corpus cache entry (2: chroma tokens)


def _components_dir(out: Path, components: str | Path | None) -> Path:
    if components is not None:
        return Path(components)
    return out if (out / "codec.pt").is_file() else SHIPPED_DIR


def _split(ids: list[str]) -> tuple[list[int], list[int]]:
    """Train/held-out rows of the corpus by the one held-out rule (``metrics.artifacts.split_held_out``: the
    same clips as a synth corpus' labels.csv split, and as the codec, MuLan and the classifier hold out)."""
    held = set(split_held_out(ids)[1])
    return [i for i, x in enumerate(ids) if x not in held], [i for i, x in enumerate(ids) if x in held]


def token_corpus(data: str | Path, out: Path, components: Path, mulan_path: Path, preset: str, seed: int, on_error: str,
                 progress: bool = True, hf_model: str | Path | None = None) -> tuple[TokenCorpus, dict]:
    """The cached token corpus of ``data`` (fitting ``out/mulan_rvq.pt`` first if it is missing).
    ``hf_model``: where the transformers model of a w2v-BERT-feature tokenizer lives on this machine."""
    from metrics.audio import load_dir
    from musiclm_ref.codec import load_codec
    from musiclm_ref.melody import load_melody
    from musiclm_ref.mulan import load_mulan
    from musiclm_ref.semantic import load_tokenizer

    data = Path(data)
    codec = load_codec(components / "codec.pt")
    tokenizer = load_tokenizer(components / "semantic_tokenizer.pt", hf_path=hf_model)
    mulan = load_mulan(mulan_path)
    melody_file = out / "melody.pt" if (out / "melody.pt").is_file() else components / "melody.pt"
    melody = load_melody(melody_file) if melody_file.is_file() else None
    report = load_dir(data, SAMPLE_RATE, on_error=on_error, min_seconds=4.0)
    data_hash = clips_hash(report.clips)
    rvq_path = out / "mulan_rvq.pt"
    if not rvq_path.is_file():
        save_fitted(mulan, [c.wave for c in report.clips], out, preset, seed, data_hash,
                    f"fitted by `musiclm-eval train stage` on {data}")
    rvq = load_mulan_rvq(rvq_path)
    hashes = {"data_hash": data_hash, "codec_tokens_sha256": codec.tokens_hash(),
              "tokenizer_id": tokenizer.id, "mulan_sha256": mulan.weights_sha256, "mulan_rvq_sha256": file_sha256(rvq_path),
              "melody_sha256": file_sha256(melody_file) if melody is not None else None}
    key = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:20]
    hashes["codec_sha256"] = file_sha256(components / "codec.pt")  # recorded, not part of the key (decoder-only)
    cache = CACHE_DIR / f"{key}.pt"
    try:
        entry, _ = read_checkpoint(cache, TOKENS_FORMAT, "a token-corpus cache entry")
        corpus = TokenCorpus.from_dict({k: v for k, v in entry.items() if k != "format"})
    except CheckpointError:  # absent, unreadable or of an older layout: tokenize (again)
        corpus = prepare_tokens(data, codec, tokenizer, mulan, rvq, melody, on_error=on_error, progress=progress)
        save_checkpoint({"format": TOKENS_FORMAT, **corpus.to_dict()}, cache)
    return corpus, hashes


@dataclass
class StagesTrainConfig:
    """Everything ``train stage`` takes besides the data and the checkpoint directory (flags in docs/protocol.md)."""

    stages: tuple[str, ...] = ("semantic", "coarse", "fine")
    preset: str = "tiny"
    components: str | Path | None = None  # where codec.pt / semantic_tokenizer.pt live (``_components_dir``)
    mulan_path: str | Path | None = None  # the shipped MuLan when None
    steps: int | None = None  # the preset's stage_steps when None (musiclm_ref.presets)
    batch: int = 16  # the global batch
    lr: float = 2e-3
    seed: int = 0
    threads: int | None = 2
    device: str = "cpu"
    on_error: str = "raise"
    command: str = ""  # the command line the manifest records
    progress: bool = True
    transformer: dict = field(default_factory=dict)  # overrides of the preset's Transformer
    precision: str = "fp32"
    grad_checkpoint: bool = False
    stream: bool = False
    num_workers: int = 0
    hf_model: str | Path | None = None
    checkpoint_every: int = 250
    stop_at: int | None = None
    cond_dropout: float | None = None
    semantic_dropout: float | None = None  # coarse stage only; None: the preset's (presets.coarse_semantic_dropout)


def train_stages(data, out, cfg: StagesTrainConfig) -> dict[str, dict]:
    """Train (or resume) ``cfg.stages`` into ``out/<stage>_stage.pt``; returns their manifest entries by file
    ({} on ranks other than 0).

    Under ``torchrun`` every process runs this; ``distributed.from_env`` makes them one data-parallel run
    (``cfg.batch`` is the global batch) and only rank 0 writes. ``cfg.stream`` reads ``data`` as a folder tree
    of audio and trains on random crops of each stage's length tokenized on the fly
    (``musiclm_ref.data.stream``) instead of the cached token corpus of a corpus directory.
    ``cfg.cond_dropout``: the probability a crop's MuLan tokens are replaced by NULL (``StageConfig``'s 0.1 when
    None) — what unconditional sampling and classifier-free guidance rely on. ``cfg.semantic_dropout``: the coarse
    stage's P(S → NULL) (the preset's when None) — what ``skip_semantic`` samples with.
    """
    from musiclm_ref import distributed

    preset, seed, batch, precision, grad_checkpoint = cfg.preset, cfg.seed, cfg.batch, cfg.precision, cfg.grad_checkpoint
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with distributed.session(cfg.device) as ctx:
        distributed.check_precision(precision, ctx.device)
        ctx.check_batch(batch)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        comp = _components_dir(out, cfg.components)
        mulan_path = Path(cfg.mulan_path) if cfg.mulan_path else SHIPPED_MULAN
        if cfg.stream:
            from musiclm_ref.data.stream import streaming_run

            run = streaming_run(data, out, comp, mulan_path, preset, seed, ctx, cfg.on_error, cfg.num_workers, cfg.hf_model,
                                cfg.progress)
        else:
            run = _corpus_run(data, out, comp, mulan_path, preset, seed, ctx, cfg.on_error, cfg.progress, cfg.hf_model)
        entries = {}
        for name in cfg.stages:
            torch.manual_seed(seed)
            extra = {} if cfg.cond_dropout is None else {"cond_dropout": float(cfg.cond_dropout)}
            if name == "coarse" and cfg.semantic_dropout is not None:
                extra["semantic_dropout"] = float(cfg.semantic_dropout)
            stage = Stage(stage_config(name, preset, run.spec, transformer=dict(cfg.transformer), **extra)).to(ctx.device)
            loop = StageTrainConfig(steps=cfg.steps or get_preset(preset).stage_steps[name], batch=batch, lr=cfg.lr, seed=seed,
                                    precision=precision, grad_checkpoint=grad_checkpoint, checkpoint_every=cfg.checkpoint_every)
            source = run.source(stage, batch // ctx.world)
            t0 = time.time()
            meta = {**run.hashes, "command": cfg.command, "seed": seed, **run.info, "world_size": ctx.world,
                    "precision": precision, "grad_checkpoint": grad_checkpoint}
            metrics = fit_stage(stage, run.corpus, loop, out / f"{name}_stage.pt", held_out=run.held_out(stage),
                                progress=cfg.progress, metadata=meta, ctx=ctx, source=source, stop_at=cfg.stop_at)
            skipped = [s for rank in ctx.gather(source.skipped) for s in rank] if source is not None else []
            if not ctx.is_main:  # rank 0 reports for the job
                continue
            if "stopped_at" in metrics:
                entries[f"{name}_stage.pt"] = {"metrics": metrics}
                continue
            metrics["train_seconds"] = round(time.time() - t0, 1)
            metrics["parameters"] = sum(p.numel() for p in stage.parameters())
            metrics["skipped_files"] = len(skipped)
            entry = manifest_entry(cfg.command, seed, run.hashes["data_hash"], metrics=metrics, preset=preset,
                                   inputs={**run.hashes, **run.info}, config=stage.to_checkpoint()["config"],
                                   training={"world_size": ctx.world, "global_batch": batch, "precision": precision,
                                             "grad_checkpoint": grad_checkpoint, "stream": cfg.stream, "skipped": skipped[:1000]})
            write_manifest_entry(out / "manifest.json", f"{name}_stage.pt", entry)
            entries[f"{name}_stage.pt"] = entry
        return entries


def _corpus_run(data, out: Path, comp: Path, mulan_path: Path, preset: str, seed: int, ctx, on_error: str, progress: bool,
                hf_model) -> StageRun:
    """The token-corpus counterpart of ``data.stream.streaming_run``: the cached corpus, split into train and
    held-out clips. Rank 0 fits the RVQ and fills the token cache first; the other ranks then read it."""
    for turn in ("main", "others"):
        if (turn == "main") == ctx.is_main:
            corpus, hashes = token_corpus(data, out, comp, mulan_path, preset, seed, on_error, progress and ctx.is_main, hf_model)
        ctx.barrier()
    train_rows, held_rows = _split(corpus.ids)
    train, held = corpus.subset(train_rows), corpus.subset(held_rows)
    return StageRun(spec=corpus.spec, hashes=hashes, info={"train_clips": len(train.ids), "held_out_clips": len(held.ids)},
                    corpus=train, source=lambda stage, batch: None, held_out=lambda stage: held)

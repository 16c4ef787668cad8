"""The functions behind ``train stage``, ``train melody`` and ``generate``: everything with files.

Stage training reads a *token corpus*: every clip tokenized once (semantic, acoustic, MuLan M_A and
melody tokens) and cached under ``~/.cache/musiclm-eval/tokens`` by a key made of the data hash and
the hashes of every model that produced the tokens, so retraining a stage never re-tokenizes and a
changed codec never reuses stale tokens. Each stage checkpoint records the codec's token-interface
hash (config, encoder, codebooks: ``Codec.tokens_hash``) and file sha256; ``MusicLM.from_pretrained``
refuses a stage trained on another codec's tokens (a decoder-only fine-tune keeps the tokens).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from metrics.io import atomic_open, file_sha256
from musiclm_ref.pipeline import (
    SAMPLE_RATE,
    SHIPPED_DIR,
    SHIPPED_MULAN,
    MusicLM,
    PipelineError,
    load_mulan_rvq,
    prepare_tokens,
    save_mulan_rvq,
)
from musiclm_ref.quantize import ResidualVQ
from musiclm_ref.stages import Stage, StageTrainConfig, TokenCorpus, stage_config, train_stage

CACHE_DIR = Path(os.environ.get("MUSICLM_EVAL_CACHE", Path.home() / ".cache" / "musiclm-eval")) / "tokens"
DEFAULT_STEPS = {"tiny": {"semantic": 1500, "coarse": 1500, "fine": 1200}, "paper": {"semantic": 10**6, "coarse": 10**6, "fine": 10**6}}
MULAN_RVQ = {"tiny": (12, 32), "paper": (12, 1024)}  # levels, codebook


def _components_dir(out: Path, components: str | Path | None) -> Path:
    if components is not None:
        return Path(components)
    return out if (out / "codec.pt").is_file() else SHIPPED_DIR


def fit_mulan_rvq(mulan, waves: list[np.ndarray], levels: int, codebook: int, seed: int = 0) -> ResidualVQ:
    """RVQ over MuLan audio embeddings of whole clips and of seeded random 5 s crops (more vectors than clips,
    and crops are what the stages' conditioning sees)."""
    rng = np.random.default_rng(seed)
    crops = []
    for w in waves:
        for _ in range(3):
            n = 5 * SAMPLE_RATE
            s = int(rng.integers(0, max(1, len(w) - n)))
            crops.append(w[s : s + n])
    emb = mulan.embed_audio(list(waves) + crops, SAMPLE_RATE)
    if len(emb) < codebook:
        raise ValueError(f"only {len(emb)} MuLan embeddings for a codebook of {codebook}; give more clips")
    return ResidualVQ(emb.shape[1], levels, codebook).fit(torch.from_numpy(emb).float(), iters=20, seed=seed)


def _split(data: Path, ids: list[str]) -> tuple[list[int], list[int]]:
    """Train/held-out rows: the corpus' labels.csv split when present, else a hash split (1 in 10)."""
    labels = data / "labels.csv"
    if labels.is_file():
        import pandas as pd

        df = pd.read_csv(labels, dtype={"ytid": str}, keep_default_na=False)
        if "split" in df.columns:
            held = set(df.loc[df["split"] != "train", "ytid"])
            return [i for i, x in enumerate(ids) if x not in held], [i for i, x in enumerate(ids) if x in held]
    from musiclm_ref.codec import split_held_out

    _, held = split_held_out(ids, max(1, len(ids) // 10))
    held = set(held)
    return [i for i, x in enumerate(ids) if x not in held], [i for i, x in enumerate(ids) if x in held]


def token_corpus(data: str | Path, out: Path, components: Path, mulan_path: Path, preset: str, seed: int, on_error: str,
                 progress: bool = True, hf_model: str | Path | None = None) -> tuple[TokenCorpus, dict]:
    """The cached token corpus of ``data`` (fitting ``out/mulan_rvq.pt`` first if it is missing).
    ``hf_model``: where the transformers model of a w2v-BERT-feature tokenizer lives on this machine."""
    from metrics.audio import load_dir
    from musiclm_ref.codec import clips_hash, load_codec, write_manifest_entry
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
        levels, k = MULAN_RVQ[preset]
        rvq = fit_mulan_rvq(mulan, [c.wave for c in report.clips], levels, k, seed)
        save_mulan_rvq(rvq, rvq_path, {"mulan_sha256": mulan.weights_sha256, "data_hash": data_hash})
        write_manifest_entry(out / "manifest.json", "mulan_rvq.pt", {
            "command": f"fitted by `musiclm-eval train stage` on {data}", "seed": seed, "data_hash": data_hash,
            "metrics": {"levels": levels, "codebook": k, "fit_mse_by_level": [round(x, 5) for x in rvq.fit_mse]},
            "mulan_sha256": mulan.weights_sha256})
    rvq = load_mulan_rvq(rvq_path)
    hashes = {"data_hash": data_hash, "codec_tokens_sha256": codec.tokens_hash(),
              "tokenizer_id": tokenizer.id, "mulan_sha256": mulan.weights_sha256, "mulan_rvq_sha256": file_sha256(rvq_path),
              "melody_sha256": file_sha256(melody_file) if melody is not None else None}
    key = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:20]
    hashes["codec_sha256"] = file_sha256(components / "codec.pt")  # recorded, not part of the key (decoder-only)
    cache = CACHE_DIR / f"{key}.pt"
    if cache.is_file():
        corpus = TokenCorpus.from_dict(torch.load(cache, weights_only=True))
    else:
        corpus = prepare_tokens(data, codec, tokenizer, mulan, rvq, melody, on_error=on_error, progress=progress)
        with atomic_open(cache) as f:
            torch.save(corpus.to_dict(), f)
    return corpus, hashes


def train_stages(names: list[str], data, out, preset: str = "tiny", components=None, mulan_path=None, steps: int | None = None,
                 batch: int = 16, lr: float = 2e-3, seed: int = 0, threads: int | None = 2, device: str = "cpu",
                 on_error: str = "raise", command: str = "", progress: bool = True, transformer: dict | None = None,
                 precision: str = "fp32", grad_checkpoint: bool = False, stream: bool = False, num_workers: int = 0,
                 hf_model: str | Path | None = None, checkpoint_every: int = 250, stop_at: int | None = None,
                 cond_dropout: float | None = None) -> dict:
    """Train (or resume) the named stages into ``out/<stage>_stage.pt``; returns their manifest entries ({} on
    ranks other than 0).

    Under ``torchrun`` every process runs this; ``distributed.from_env`` makes them one data-parallel run
    (``batch`` is the global batch) and only rank 0 writes. ``stream=True`` reads ``data`` as a folder tree
    of audio and trains on random crops of each stage's length tokenized on the fly
    (``musiclm_ref.data.stream``) instead of the cached token corpus of a corpus directory.
    ``cond_dropout``: the probability a crop's MuLan tokens are replaced by NULL (``StageConfig``'s 0.1 when
    None) — what unconditional sampling and classifier-free guidance rely on.
    """
    from musiclm_ref import distributed
    from musiclm_ref.codec import write_manifest_entry

    if threads:
        torch.set_num_threads(threads)
    with distributed.session(device) as ctx:
        distributed.check_precision(precision, ctx.device)
        ctx.check_batch(batch)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        comp = _components_dir(out, components)
        mulan_path = Path(mulan_path) if mulan_path else SHIPPED_MULAN
        if stream:
            from musiclm_ref.data.stream import streaming_run

            run = streaming_run(data, out, comp, mulan_path, preset, seed, ctx, on_error, num_workers, hf_model, progress)
        else:
            run = _corpus_run(data, out, comp, mulan_path, preset, seed, ctx, on_error, progress, hf_model)
        entries = {}
        for name in names:
            torch.manual_seed(seed)
            extra = {} if cond_dropout is None else {"cond_dropout": float(cond_dropout)}
            stage = Stage(stage_config(name, preset, run["spec"], transformer=dict(transformer or {}), **extra)).to(ctx.device)
            cfg = StageTrainConfig(steps=steps or DEFAULT_STEPS[preset][name], batch=batch, lr=lr, seed=seed,
                                   precision=precision, grad_checkpoint=grad_checkpoint, checkpoint_every=checkpoint_every)
            source = run["source"](stage, batch // ctx.world)
            t0 = time.time()
            meta = {**run["hashes"], "command": command, "seed": seed, **run["info"], "world_size": ctx.world,
                    "precision": precision, "grad_checkpoint": grad_checkpoint}
            metrics = train_stage(stage, run["corpus"], cfg, out / f"{name}_stage.pt", held_out=run["held_out"](stage),
                                  progress=progress, metadata=meta, ctx=ctx, source=source, stop_at=stop_at)
            skipped = [s for rank in ctx.gather(source.skipped) for s in rank] if source is not None else []
            if not ctx.is_main:  # rank 0 reports for the job
                continue
            if "stopped_at" in metrics:
                entries[f"{name}_stage.pt"] = {"metrics": metrics}
                continue
            metrics["train_seconds"] = round(time.time() - t0, 1)
            metrics["parameters"] = sum(p.numel() for p in stage.parameters())
            metrics["skipped_files"] = len(skipped)
            entry = {"command": command, "seed": seed, "data_hash": run["hashes"]["data_hash"], "metrics": metrics,
                     "preset": preset, "inputs": {**run["hashes"], **run["info"]}, "config": stage.to_checkpoint()["config"],
                     "training": {"world_size": ctx.world, "global_batch": batch, "precision": precision,
                                  "grad_checkpoint": grad_checkpoint, "stream": stream, "skipped": skipped[:1000]}}
            write_manifest_entry(out / "manifest.json", f"{name}_stage.pt", entry)
            entries[f"{name}_stage.pt"] = entry
        return entries


def _corpus_run(data, out: Path, comp: Path, mulan_path: Path, preset: str, seed: int, ctx, on_error: str, progress: bool,
                hf_model) -> dict:
    """The token-corpus counterpart of ``data.stream.streaming_run``: the cached corpus, split into train and
    held-out clips. Rank 0 fits the RVQ and fills the token cache first; the other ranks then read it."""
    for turn in ("main", "others"):
        if (turn == "main") == ctx.is_main:
            corpus, hashes = token_corpus(data, out, comp, mulan_path, preset, seed, on_error, progress and ctx.is_main, hf_model)
        ctx.barrier()
    train_rows, held_rows = _split(Path(data), corpus.ids)
    train, held = corpus.subset(train_rows), corpus.subset(held_rows)
    return {"spec": corpus.spec, "hashes": hashes, "corpus": train, "held_out": lambda stage: held,
            "source": lambda stage, batch: None, "info": {"train_clips": len(train.ids), "held_out_clips": len(held.ids)}}


def train_melody_model(out, data=None, pairs: int = 260, steps: int = 600, codebook: int = 64, seed: int = 0,
                       threads: int | None = 2, command: str = "", progress: bool = True) -> dict:
    """Render timbre pairs, train the triplet model, fit the 24-level RVQ; writes ``out/melody.pt``."""
    from metrics.audio import load_dir
    from musiclm_ref.codec import clips_hash, write_manifest_entry
    from musiclm_ref.melody import MelodyEmbedder, render_triplets, save_melody, train_melody, triplet_accuracy

    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    waves = render_triplets(pairs, seed=seed)["waves"]
    n_held = max(1, pairs // 7)
    torch.manual_seed(seed)
    model = MelodyEmbedder()
    before = triplet_accuracy(model, waves[-n_held:])
    losses = train_melody(model, waves[:-n_held], steps=steps, seed=seed, progress=progress)
    acc = triplet_accuracy(model, waves[-n_held:])
    if data is not None:
        clips = load_dir(data, SAMPLE_RATE, min_seconds=4.0).clips
        emb = np.concatenate([model.embed(c.wave, SAMPLE_RATE) for c in clips])
        data_hash = clips_hash(clips)
    else:
        emb = np.concatenate([model.embed(w.numpy(), model.cfg.sample_rate) for pair in waves for w in pair])
        data_hash = None
    model.fit_rvq(emb, codebook=codebook, seed=seed)
    metrics = {"held_out_triplet_accuracy": round(acc, 4), "untrained_triplet_accuracy": round(before, 4),
               "loss_first_50": round(float(np.mean(losses[:50])), 4), "loss_last_50": round(float(np.mean(losses[-50:])), 4),
               "rvq": [model.cfg.rvq_levels, codebook], "rvq_fit_mse_last_level": round(model.rvq.fit_mse[-1], 5)}
    save_melody(model, out / "melody.pt", {"seed": seed, "metrics": metrics})
    entry = {"command": command, "seed": seed, "data_hash": data_hash, "pairs": pairs, "steps": steps, "metrics": metrics}
    write_manifest_entry(out / "manifest.json", "melody.pt", entry)
    return entry


def generate_files(checkpoint, out, captions=None, texts: list[str] | None = None, seconds: float = 10.0, seed: int = 0,
                   melody=None, batch: int = 64, limit: int | None = None, drop_conditioning: bool = False,
                   skip_semantic: bool = False, device: str = "cpu", threads: int | None = None, progress: bool = True,
                   cfg_scale: float | None = None) -> dict:
    """Write ``<id>.wav`` per caption into ``out``; returns a summary with timings.

    Each clip's random streams are keyed by its CSV id (or, for ``texts``, its caption), so a clip does
    not change with ``limit``, ``batch`` or the other rows (``MusicLM.generate``)."""
    from metrics.audio import load_audio, save_audio

    if threads:
        torch.set_num_threads(threads)
    if captions is not None:
        from metrics.musiccaps import load_captions

        df = load_captions(captions, require_all_columns=False)
        id_col = "ytid" if "ytid" in df.columns else "id" if "id" in df.columns else None
        if id_col is None or "caption" not in df.columns:
            raise PipelineError(f"{captions}: needs `ytid` (or `id`) and `caption` columns")
        ids, texts = [str(x) for x in df[id_col]], [str(x) for x in df["caption"]]
        keys = ids
    else:
        ids = [f"text-{i:03d}" for i in range(len(texts))]
        keys = None  # the captions themselves (item_keys)
    if limit is not None:
        keys = keys[:limit] if keys is not None else None
        ids, texts = ids[:limit], texts[:limit]
    if not texts:
        raise PipelineError("no captions to generate")
    lm = MusicLM.from_pretrained(checkpoint, device=device)
    mel_wave, mel_sr = None, SAMPLE_RATE
    if melody is not None:
        clip = load_audio(melody)
        mel_wave, mel_sr = clip.wave, clip.sr
    t0 = time.time()
    waves = lm.generate(texts, seconds=seconds, seed=seed, melody=mel_wave, melody_sr=mel_sr, batch=batch, progress=progress,
                        drop_conditioning=drop_conditioning, skip_semantic=skip_semantic, ids=keys, cfg_scale=cfg_scale)
    wall = time.time() - t0
    outd = Path(out)
    outd.mkdir(parents=True, exist_ok=True)
    for i, w in zip(ids, waves):
        save_audio(outd / f"{i}.wav", w, SAMPLE_RATE)
    return {"n": len(ids), "out": str(outd), "seconds": seconds, "seed": seed, "cfg_scale": cfg_scale, "wall_seconds": round(wall, 2),
            "real_time_factor": round(wall / (seconds * len(ids)), 4), "ids": ids}

"""``generate``: captions (a CSV or a list of texts) → one WAV per caption, with timings."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from musiclm_ref.pipeline import SAMPLE_RATE, MusicLM, PipelineError


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

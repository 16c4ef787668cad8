"""MusicLM end to end: text (and optionally a melody) → MuLan tokens → semantic → coarse → fine → audio.

``MusicLM.from_pretrained()`` loads the shipped tiny checkpoint set (``musiclm_ref/checkpoints/tiny``);
``generate(texts, seconds, seed)`` returns ``[n, samples]`` float32 at 24 kHz, batched across captions.

Long outputs are generated in windows, as the paper does for its long samples: each stage generates
at most one crop at a time, and every window after the first keeps the last ``crop - stride`` tokens
as prefix (paper: 30 s crop, 15 s stride, the previous 15 s as prefix; tiny: half the crop). Story
mode swaps the conditioning tokens at given times by ending a window exactly at each switch.
The fine stage works on non-overlapping chunks of its crop length, all in one batch (AudioLM).

Reproducibility: every item draws from its own random streams, derived from ``(seed, item key)`` with
the item's id (``ids=``) or else its caption as key (``item_keys``), and every per-item computation —
MuLan text tower, conditioning RVQ, the three stages (``Transformer.batch_invariant``), the codec
decoder — runs on that item alone or with per-item matrix products. So the same caption (id) and
seed give the same tokens and the same audio, bit for bit, whatever else is generated with it: batch
composition, order, ``--limit``, batch size (on one machine and torch build; see docs/protocol.md).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metrics.artifacts import read_checkpoint, save_checkpoint
from metrics.errors import InputError
from metrics.io import file_sha256
from musiclm_ref.quantize import ResidualVQ
from musiclm_ref.sampling import SamplingConfig, default_config, generate, item_generator
from musiclm_ref.stages import Stage, StageError, TokenSpec, load_stage, melody_window_starts
from musiclm_ref.transformer import ROW_TILE

SHIPPED_DIR = Path(__file__).parent / "checkpoints" / "tiny"
SHIPPED_MULAN = Path(__file__).parent / "checkpoints" / "mulan-tiny.pt"
SAMPLE_RATE = 24000
RVQ_FORMAT = "musiclm-eval/mulan-rvq/1"
MAX_ROWS = 128  # sequences per sampling call (bounds KV-cache memory)


class PipelineError(InputError):
    """A checkpoint directory or request that cannot be served; the message names the file or problem."""


def save_mulan_rvq(rvq: ResidualVQ, path: Path, metadata: dict | None = None) -> Path:
    return save_checkpoint({"format": RVQ_FORMAT, "rvq": rvq.to_dict(), "metadata": dict(metadata or {})}, path)


def load_mulan_rvq(path: Path) -> ResidualVQ:
    d, _ = read_checkpoint(path, RVQ_FORMAT, "a MuLan RVQ checkpoint", PipelineError, unreadable="unreadable checkpoint")
    return ResidualVQ.from_dict(d["rvq"])


@dataclass
class Sampling:
    """Per-stage sampling settings; the defaults are the paper's (1.0 / 0.95 / 0.4, nothing else)."""

    semantic: SamplingConfig = field(default_factory=lambda: default_config("semantic"))
    coarse: SamplingConfig = field(default_factory=lambda: default_config("coarse"))
    fine: SamplingConfig = field(default_factory=lambda: default_config("fine"))


def item_keys(texts: Sequence[str], ids: Sequence[str] | None = None) -> list[str]:
    """The key of each item's random streams: its id if given (ids must be unique), else its caption;
    a caption repeated in one call gets ``#2``, ``#3`` … so that repeats are distinct samples."""
    if ids is not None:
        keys = [str(i) for i in ids]
        if len(keys) != len(texts):
            raise PipelineError(f"got {len(keys)} ids for {len(texts)} captions")
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise PipelineError(f"item ids must be unique; repeated: {', '.join(dup[:5])}")
        return keys
    seen: dict[str, int] = {}
    keys = []
    for t in texts:
        seen[t] = seen.get(t, 0) + 1
        keys.append(t if seen[t] == 1 else f"{t}#{seen[t]}")
    return keys


class MusicLM:
    def __init__(self, semantic: Stage, coarse: Stage, fine: Stage, codec, mulan, mulan_rvq: ResidualVQ,
                 melody=None, tokenizer=None, device: str = "cpu", sampling: Sampling | None = None):
        self.semantic, self.coarse, self.fine = semantic.to(device).eval(), coarse.to(device).eval(), fine.to(device).eval()
        self.codec, self.mulan, self.mulan_rvq, self.melody = codec, mulan, mulan_rvq, melody
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.sampling = sampling or Sampling()
        self.spec: TokenSpec = semantic.config.tokens
        # batch-independent matrix products in the stages (bit-equal rows whatever the batch); False = one
        # folded GEMM per layer (rows then match only to float tolerance, and a token can flip rarely)
        self.batch_invariant = True
        # rows per fixed-shape product of that route (throughput grows with the batch); 0 = one product
        # per item and SDPA attention, the slower fallback that reproduces outputs from before issue #28
        self.row_tile = ROW_TILE

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, dir: str | Path | None = None, device: str = "cpu", mulan_path: str | Path | None = None) -> MusicLM:
        """The checkpoint set in ``dir`` (default: the shipped tiny one). MuLan comes from ``dir/mulan.pt``
        if present, else ``mulan_path``, else the shipped ``mulan-tiny.pt``."""
        from musiclm_ref.codec import load_codec
        from musiclm_ref.melody import load_melody
        from musiclm_ref.mulan import load_mulan

        d = Path(dir) if dir is not None else SHIPPED_DIR
        if not d.is_dir():
            raise PipelineError(f"{d}: checkpoint directory not found")
        need = ["semantic_stage.pt", "coarse_stage.pt", "fine_stage.pt", "codec.pt", "mulan_rvq.pt"]
        missing = [n for n in need if not (d / n).is_file()]
        if missing:
            raise PipelineError(f"{d}: missing {', '.join(missing)} (train them with `musiclm-eval train stage|codec`)")
        stages = [load_stage(d / f"{s}_stage.pt", device) for s in ("semantic", "coarse", "fine")]
        codec = load_codec(d / "codec.pt", device)
        codec_sha, tokens_sha = file_sha256(d / "codec.pt"), codec.tokens_hash()
        for s in stages[1:]:
            # the token interface (encoder + codebooks) decides compatibility; older stages recorded the file
            trained_on, current = s.metadata.get("codec_tokens_sha256"), tokens_sha
            if not trained_on:
                trained_on, current = s.metadata.get("codec_sha256"), codec_sha
            if trained_on and trained_on != current:
                raise PipelineError(
                    f"{d / (s.config.stage + '_stage.pt')}: trained on acoustic tokens of another codec "
                    f"(sha256 {trained_on[:12]}…, but {d / 'codec.pt'} is {current[:12]}…); retrain the stage")
        # the coarse stage reads the semantic stage's tokens: both must come from one tokenizer
        sem_tok, coarse_tok = (s.metadata.get("tokenizer_id") for s in stages[:2])
        if sem_tok and coarse_tok and sem_tok != coarse_tok:
            raise PipelineError(f"{d}: semantic_stage.pt was trained on tokens of {sem_tok} but coarse_stage.pt on {coarse_tok}; "
                                "retrain one of them on the other's tokenizer")
        mulan_file = d / "mulan.pt" if (d / "mulan.pt").is_file() else Path(mulan_path) if mulan_path else SHIPPED_MULAN
        mulan = load_mulan(mulan_file, device)
        melody = load_melody(d / "melody.pt") if (d / "melody.pt").is_file() else None
        tokenizer = None  # the tokenizer whose tokens the stages read: what prompts (memorization sweep) must be cut with
        if (d / "semantic_tokenizer.pt").is_file():
            from musiclm_ref.semantic import load_tokenizer

            tokenizer = load_tokenizer(d / "semantic_tokenizer.pt")
            if sem_tok and tokenizer.id != sem_tok:
                raise PipelineError(f"{d / 'semantic_tokenizer.pt'} is {tokenizer.id}, but semantic_stage.pt was trained on "
                                    f"tokens of {sem_tok}")
        return cls(*stages, codec=codec, mulan=mulan, mulan_rvq=load_mulan_rvq(d / "mulan_rvq.pt"), melody=melody,
                   tokenizer=tokenizer, device=device)

    # -- conditioning -----------------------------------------------------------------------------
    def _rvq_tokens(self, emb: np.ndarray) -> Tensor:
        # one row at a time: a batched distance matmul differs in the last bits with the batch size, which
        # could move an embedding near a Voronoi boundary to another code (batch invariance)
        x = torch.from_numpy(emb).float()
        rows = [self.mulan_rvq.encode(row[None]) for row in x]
        return (torch.cat(rows) if rows else self.mulan_rvq.encode(x)).to(self.device)

    def text_tokens(self, texts: Sequence[str]) -> Tensor:
        """M_T: MuLan text embeddings through the conditioning RVQ → [n, 12]. Each caption is embedded
        alone: a padded batch changes the text tower's float results in the last bits."""
        emb = np.concatenate([self.mulan.embed_text([t]) for t in texts]) if len(texts) else self.mulan.embed_text([])
        return self._rvq_tokens(emb)

    def audio_tokens(self, waves: Sequence[np.ndarray], sr: int) -> Tensor:
        """M_A: MuLan audio embeddings through the same RVQ → [n, 12] (what the stages were trained on)."""
        return self._rvq_tokens(self.mulan.embed_audio(list(waves), sr))

    def melody_tokens(self, melody: np.ndarray, sr: int, starts: list[int]) -> Tensor:
        if self.melody is None:
            raise PipelineError("this checkpoint set has no melody model (melody.pt); melody conditioning is unavailable")
        return self.melody.tokens(melody, sr, starts).to(self.device)

    def _melody_rows(self, melody: tuple[np.ndarray, int] | list[tuple[np.ndarray, int]], starts: list[int],
                     batch: int) -> Tensor:
        """Melody tokens [B, windows, levels]: one (wave, sr) for every row, or a list with one per row.
        Each melody is tokenized alone, so a row's tokens do not depend on the other rows' melodies."""
        if isinstance(melody, tuple):
            return self.melody_tokens(*melody, starts)[None].expand(batch, -1, -1)
        if len(melody) != batch:
            raise PipelineError(f"got {len(melody)} melodies for a batch of {batch}")
        return torch.stack([self.melody_tokens(w, sr, starts) for w, sr in melody])

    # -- windowed stage sampling ------------------------------------------------------------------
    @staticmethod
    def _generators(seed: int, keys: list[str], stream: str) -> list[torch.Generator]:
        return [item_generator(seed, k, stream) for k in keys]

    def _semantic_window(self, cond: Tensor, hist: Tensor, n_new: int, g, cfg: SamplingConfig,
                         uncond: Tensor | None = None) -> Tensor:
        stage = self.semantic
        prompt = stage.prompt(cond, prefix=hist)
        u = stage.prompt(uncond, prefix=hist) if uncond is not None else None
        return stage.decode_targets(self._sample(stage, prompt, stage.target_ranges(n_new), cfg, g, u))

    def _sample(self, stage: Stage, prompt: Tensor, ranges, cfg: SamplingConfig, gens: list[torch.Generator],
                uncond: Tensor | None = None) -> Tensor:
        """Rows in groups of MAX_ROWS (memory); each row samples from its own generator."""
        outs = []
        for rows in torch.arange(prompt.shape[0]).split(MAX_ROWS):
            u = uncond[rows].to(self.device) if uncond is not None else None
            outs.append(generate(stage.net, prompt[rows].to(self.device), ranges, cfg, [gens[i] for i in rows.tolist()],
                                 uncond_prompt=u, batch_invariant=self.batch_invariant, row_tile=self.row_tile))
        return torch.cat(outs)

    @staticmethod
    def _keys(keys: list[str] | None, batch: int) -> list[str]:
        keys = [str(i) for i in range(batch)] if keys is None else list(keys)
        if len(keys) != batch:
            raise PipelineError(f"got {len(keys)} item keys for a batch of {batch}")
        return keys

    def _chroma_rows(self, melody: tuple[np.ndarray, int] | list[tuple[np.ndarray, int]], batch: int, frames: int) -> Tensor:
        """The coarse stage's chroma tokens [B, frames] of one melody for all rows or one melody per row."""
        from musiclm_ref.chroma import chroma_tokens

        rows = [melody] * batch if isinstance(melody, tuple) else melody
        return torch.stack([torch.from_numpy(chroma_tokens(w, sr, frames)) for w, sr in rows]).to(self.device)

    def semantic_tokens(self, conds: list[tuple[Tensor, int]], seed: int = 0, prefix: Tensor | None = None,
                        melody: tuple[np.ndarray, int] | list[tuple[np.ndarray, int]] | None = None,
                        cfg: SamplingConfig | None = None, batch: int | None = None,
                        keys: list[str] | None = None) -> Tensor:
        """Semantic tokens for a schedule [(cond [B, 12] or None, frames), …] (story mode = several entries).
        ``keys``: each row's random-stream key (default: its row index). ``melody``: (wave, sr) for every
        row, or a list of one (wave, sr) per row."""
        stage, cfg = self.semantic, cfg or self.sampling.semantic
        crop = stage.config.frames
        stride = max(1, crop // 2)
        batch = batch or next((c.shape[0] for c, _ in conds if c is not None), None) or (prefix.shape[0] if prefix is not None else 1)
        g = self._generators(seed, self._keys(keys, batch), "semantic")
        hist = prefix.to(self.device) if prefix is not None else torch.zeros(batch, 0, dtype=torch.long, device=self.device)
        end = hist.shape[1]
        for mulan, frames in conds:
            end += frames
            while hist.shape[1] < end:
                remaining = end - hist.shape[1]
                n_new = min(crop if hist.shape[1] == 0 else stride, remaining)
                keep = min(hist.shape[1], crop - n_new)
                mel = None
                if melody is not None:
                    start_s = (hist.shape[1] - keep) // self.spec.semantic_rate
                    starts = [start_s + k for k in melody_window_starts(stage.config.crop_seconds, stage.config.melody_windows)]
                    mel = self._melody_rows(melody, starts, batch)
                cond = stage.conditioning(batch, mulan, mel, self.device)
                # guidance's unconditional branch: the MuLan tokens dropped to NULL exactly as training's
                # cond_dropout does (sample_batch), the melody tokens kept (training drops those separately)
                extra = (stage.conditioning(batch, None, mel, self.device),) if cfg.cfg_scale is not None else ()
                new = self._semantic_window(cond, hist[:, hist.shape[1] - keep :], n_new, g, cfg, *extra)
                hist = torch.cat([hist, new], dim=1)
        return hist

    def coarse_tokens(self, conds: list[tuple[Tensor | None, int]], semantic: Tensor | None, frames: int, seed: int = 0,
                      batch: int | None = None, cfg: SamplingConfig | None = None, keys: list[str] | None = None,
                      chroma: Tensor | None = None) -> Tensor:
        """Coarse codes [B, frames, 4] for a schedule [(cond, frames), …]; ``semantic=None`` = skip_semantic;
        ``chroma`` [B, frames / 2]: the melody's chroma tokens (a ``chroma=True`` coarse stage; None = no melody)."""
        stage, cfg = self.coarse, cfg or self.sampling.coarse
        crop = stage.config.frames - stage.config.frames % 2
        stride = max(2, (crop // 2) - (crop // 2) % 2)
        batch = batch or (semantic.shape[0] if semantic is not None else 1)
        g = self._generators(seed, self._keys(keys, batch), "coarse")
        lv = self.spec.coarse_levels
        hist = torch.zeros(batch, 0, lv, dtype=torch.long, device=self.device)
        end = 0
        for mulan, n in conds:
            end = min(frames, end + n)
            while hist.shape[1] < end:
                remaining = end - hist.shape[1]
                n_new = min(crop if hist.shape[1] == 0 else stride, remaining)
                keep = min(hist.shape[1], crop - n_new)
                keep -= keep % 2
                a, b = hist.shape[1] - keep, hist.shape[1] + n_new
                if semantic is None:
                    ctx = stage.semantic_context(None, (b - a + 1) // 2, batch).to(self.device)
                else:
                    ctx = stage.semantic_context(semantic[:, a // 2 : (b + 1) // 2])
                cond = stage.conditioning(batch, mulan, None, self.device)
                prompt = stage.prompt(cond, stage.with_chroma(ctx, None if chroma is None else chroma[:, a // 2 : (b + 1) // 2]),
                                      prefix=hist[:, a:])
                # guidance: MuLan → NULL as training's cond_dropout, the melody's chroma → NULL as its melody dropout
                # (MusicGen's unconditional branch drops every condition); semantic context and prefix kept
                uncond = None
                if cfg.cfg_scale is not None:
                    uncond = stage.prompt(stage.conditioning(batch, None, None, self.device), stage.with_chroma(ctx, None),
                                          prefix=hist[:, a:])
                new = stage.decode_targets(self._sample(stage, prompt, stage.target_ranges(n_new), cfg, g, uncond))
                hist = torch.cat([hist, new], dim=1)
        return hist

    def fine_tokens(self, coarse: Tensor, seed: int = 0, cfg: SamplingConfig | None = None,
                    keys: list[str] | None = None) -> Tensor:
        """Fine codes [B, T, 8] from coarse [B, T, 4]: non-overlapping chunks of the fine crop, batched;
        the last chunk is end-anchored (it overlaps the previous one and only its new frames are kept).
        Chunk j of an item samples from that item's stream ``fine/j``."""
        stage, cfg = self.fine, cfg or self.sampling.fine
        if cfg.cfg_scale is not None:
            raise PipelineError("the fine stage has no conditioning to guide (cfg_scale applies to semantic and coarse)")
        b, t, _ = coarse.shape
        keys = self._keys(keys, b)
        size = min(stage.config.frames, t)
        starts = list(range(0, t - size + 1, size))
        if starts[-1] + size < t:
            starts.append(t - size)
        chunks = torch.cat([coarse[:, s : s + size] for s in starts])  # [len(starts) * B, size, 4]
        g = [gen for j in range(len(starts)) for gen in self._generators(seed, keys, f"fine/{j}")]
        cond = stage.conditioning(chunks.shape[0], None, None, self.device)
        prompt = stage.prompt(cond, chunks)
        fine = stage.decode_targets(self._sample(stage, prompt, stage.target_ranges(size), cfg, g))
        out = torch.zeros(b, t, self.spec.fine_levels, dtype=torch.long, device=self.device)
        for i, s in enumerate(starts):
            out[:, s : s + size] = fine[i * b : (i + 1) * b]
        return out

    def decode(self, coarse: Tensor, fine: Tensor | None, samples: int) -> np.ndarray:
        """Codes → waves [B, samples], one item at a time: batched convolutions differ in the last bits
        with the batch size, and decoding costs little next to sampling."""
        codes = (coarse if fine is None else torch.cat([coarse, fine], dim=-1)).cpu()
        with torch.no_grad():
            wave = torch.cat([self.codec.decode(c[None])[:, :samples] for c in codes])
        return wave.numpy().astype(np.float32)

    # -- public API -------------------------------------------------------------------------------
    def _frames(self, seconds: float) -> tuple[int, int, int]:
        if not seconds > 0:
            raise PipelineError(f"seconds must be positive, got {seconds}")
        samples = int(round(seconds * SAMPLE_RATE))
        ts = math.ceil(seconds * self.spec.semantic_rate)
        return ts, 2 * ts, samples

    def _guided(self, cfg_scale: float | None) -> Sampling:
        """The sampling settings with classifier-free guidance on the two MuLan-conditioned stages."""
        if cfg_scale is None:
            return self.sampling
        s = self.sampling
        try:
            return Sampling(replace(s.semantic, cfg_scale=cfg_scale), replace(s.coarse, cfg_scale=cfg_scale), s.fine)
        except ValueError as e:
            raise PipelineError(str(e)) from None

    @torch.no_grad()
    def generate(self, texts: Sequence[str], seconds: float = 10.0, seed: int = 0,
                 melody: np.ndarray | Sequence[np.ndarray] | None = None, melody_sr: int = SAMPLE_RATE, batch: int = 64,
                 drop_conditioning: bool = False, skip_semantic: bool = False, fine: bool = True, progress: bool = False,
                 ids: Sequence[str] | None = None, cfg_scale: float | None = None) -> np.ndarray:
        """One clip per caption: float32 [n, seconds × 24000].

        The same (caption or id, seed) gives the same audio whatever else is generated with it
        (``item_keys``: ``ids`` if given, else the captions). ``drop_conditioning`` replaces the MuLan
        tokens by NULL tokens (the unconditional baseline); ``melody`` is one wave for every caption or a
        list of one wave per caption (several melodies in one batch); ``skip_semantic`` feeds the coarse
        stage NULL semantic tokens (the paper's ablation); ``fine=False`` decodes the coarse levels only;
        ``cfg_scale`` turns on classifier-free guidance in the semantic and coarse stages (beyond the
        paper; None = off, 1 = the conditional model).
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, int(round(seconds * SAMPLE_RATE))), np.float32)
        if any(not isinstance(t, str) for t in texts):
            raise PipelineError("texts must be a list of strings")
        if cfg_scale is not None and drop_conditioning:
            raise PipelineError("cfg_scale needs the conditioning: guidance with dropped MuLan tokens is unguided sampling")
        keys = item_keys(texts, ids)
        sampling = self._guided(cfg_scale)
        mel = _melody_arg(melody, melody_sr, len(texts))
        from tqdm.auto import tqdm

        out = []
        bar = tqdm(total=len(texts), desc="generate", unit="clip", disable=not progress)
        for i in range(0, len(texts), batch):  # batches bound memory; they do not change any sample
            chunk = texts[i : i + batch]
            cond = None if drop_conditioning else self.text_tokens(chunk)
            rows = mel[i : i + batch] if isinstance(mel, list) else mel
            out.append(self._generate_schedule([(cond, seconds)], len(chunk), seed, rows, skip_semantic, fine,
                                               keys[i : i + batch], sampling))
            bar.update(len(chunk))
        bar.close()
        return np.concatenate(out)

    @torch.no_grad()
    def generate_story(self, segments: Sequence[tuple[str, float]], seed: int = 0, fine: bool = True,
                       cfg_scale: float | None = None) -> np.ndarray:
        """One clip whose conditioning switches caption at the end of each (caption, seconds) segment."""
        if not segments:
            raise PipelineError("generate_story needs at least one (caption, seconds) segment")
        for cap, sec in segments:
            if not isinstance(cap, str) or not sec > 0:
                raise PipelineError(f"each segment must be (caption: str, seconds > 0), got {(cap, sec)!r}")
        tokens = self.text_tokens([c for c, _ in segments])
        schedule = [(tokens[i : i + 1], sec) for i, (_, sec) in enumerate(segments)]
        key = " | ".join(f"{c} @{s:g}s" for c, s in segments)
        return self._generate_schedule(schedule, 1, seed, None, False, fine, [key], self._guided(cfg_scale))[0]

    def _generate_schedule(self, schedule, batch, seed, mel, skip_semantic, fine, keys,
                           sampling: Sampling) -> np.ndarray:
        seconds = sum(s for _, s in schedule)
        _, ta, samples = self._frames(seconds)
        # switch points on the 25 Hz grid (cumulative rounding so the total is exact)
        bounds = [math.ceil(x * self.spec.semantic_rate - 1e-9) for x in np.cumsum([s for _, s in schedule])]
        sem_frames = [b - a for a, b in zip([0, *bounds[:-1]], bounds)]
        conds = [(c.expand(batch, -1) if c is not None and c.shape[0] == 1 else c) for c, _ in schedule]
        semantic = None
        if not skip_semantic:
            semantic = self.semantic_tokens(list(zip(conds, sem_frames)), seed, melody=mel, batch=batch,
                                            cfg=sampling.semantic, keys=keys)
        chroma = self._chroma_rows(mel, batch, sum(sem_frames)) if mel is not None and self.coarse.config.chroma else None
        coarse = self.coarse_tokens(list(zip(conds, [2 * f for f in sem_frames])), semantic, ta, seed, batch,
                                    cfg=sampling.coarse, keys=keys, chroma=chroma)
        fine_codes = self.fine_tokens(coarse, seed, cfg=sampling.fine, keys=keys) if fine else None
        return self.decode(coarse, fine_codes, samples)

    @torch.no_grad()
    def semantic_continuation(self, cond_tokens: Tensor | None, prompt_semantic_tokens: Tensor, n_new: int,
                              greedy: bool = True, seed: int = 0, ids: Sequence[str] | None = None) -> Tensor:
        """Continue semantic prompts [B, T] by ``n_new`` tokens under MuLan tokens ``cond_tokens`` [B, 12]
        (None = dropped); greedy by default (the memorization audit). Returns the new tokens [B, n_new].
        Sampled (``greedy=False``) rows draw from the streams of ``ids`` (default: row indices)."""
        prompt = torch.as_tensor(prompt_semantic_tokens).long()
        if prompt.ndim == 1:
            prompt = prompt[None]
        cfg = SamplingConfig(greedy=True) if greedy else self.sampling.semantic
        cond = None if cond_tokens is None else torch.as_tensor(cond_tokens).long().reshape(prompt.shape[0], -1)
        keys = [str(i) for i in ids] if ids is not None else None
        out = self.semantic_tokens([(cond, n_new)], seed, prefix=prompt, cfg=cfg, batch=prompt.shape[0], keys=keys)
        return out[:, prompt.shape[1] :]


def _melody_arg(melody, sr: int, n: int) -> tuple[np.ndarray, int] | list[tuple[np.ndarray, int]] | None:
    """``generate``'s melody as ``semantic_tokens`` takes it: (wave, sr) shared by every caption, or a
    list of one (wave, sr) per caption when given a list of waves (or a 2-D array, one row each)."""
    if melody is None:
        return None
    if (isinstance(melody, (list, tuple)) and melody and np.ndim(melody[0]) == 1) or np.ndim(melody) == 2:
        if len(melody) != n:
            raise PipelineError(f"got {len(melody)} melodies for {n} captions (one per caption, or one for all)")
        return [(np.asarray(w, np.float32), int(sr)) for w in melody]
    return np.asarray(melody, np.float32), int(sr)


def _bytes_sha(obj) -> str:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


__all__ = ["MusicLM", "PipelineError", "Sampling", "item_keys", "save_mulan_rvq", "load_mulan_rvq", "StageError"]

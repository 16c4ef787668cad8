"""MusicLM's three Transformer stages: token layouts, vocabulary offsets and the loss (their training data:
``musiclm_ref.token_corpus``; their training loop: ``musiclm_ref.train.stage``).

- semantic  p(S | M):           [M_A (12 MuLan tokens) · melody tokens] SEP S_1 … S_T          (25 Hz)
- coarse    p(A_1..4 | S, M):   [M_A] S_1 … S_T' SEP  A_{1,1} A_{1,2} A_{1,3} A_{1,4}  A_{2,1} … (50 Hz)
- fine      p(A_5..12 | A_1..4): A_{1,1..4} A_{2,1..4} … SEP  A_{1,5..12} A_{2,5..12} …     (AudioLM)

Acoustic tokens are flattened frame by frame, levels in order inside a frame, so each level's
prediction sees the coarser levels of the same frame (AudioLM's coarse/fine flattening). Each stage
has its own vocabulary: every token *type* (MuLan level q, melody level r, semantic, acoustic level l)
owns a contiguous block after three specials (PAD, NULL = a dropped conditioning token, SEP), so the
same code at two levels is two different embeddings and sampling can mask to the expected type.

Melody tokens (24 RVQ levels per 4 s window) are concatenated to the MuLan tokens of the semantic
stage (the paper). A coarse stage with ``chroma=True`` (the tiny preset; a deviation after MusicGen's
melody conditioning, docs/protocol.md) also hears the melody directly: its semantic context interleaves
one chroma token per semantic frame, ``S_1 C_1 S_2 C_2 …``, where C_t is the argmax pitch class of the
melody's chroma at that 40 ms frame (12 classes, plus 12 = unvoiced; ``musiclm_ref.chroma``). Chroma
tokens do not advance the clock, so C_t sits at S_t's time. Training drops the MuLan tokens
(p=``cond_dropout``) and the melody conditioning — melody tokens, or the coarse stage's chroma tokens —
(p=``melody_dropout``) to NULL so that one model serves conditioned, melody-conditioned and
``drop_conditioning`` (unconditional) generation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from metrics.artifacts import read_checkpoint
from metrics.errors import InputError
from musiclm_ref.presets import get_preset
from musiclm_ref.transformer import Transformer, TransformerConfig
from musiclm_ref.transformer import preset as transformer_preset

PAD, NULL, SEP = 0, 1, 2
N_SPECIAL = 3
STAGES = ("semantic", "coarse", "fine")
CHROMA_CLASSES = 13  # the 12 pitch classes and "unvoiced" (musiclm_ref.chroma)
MELODY_WINDOW_SECONDS = 4


class StageError(InputError):
    """A stage checkpoint or token input that cannot be used; the message names the file or problem."""


@dataclass(frozen=True)
class TokenSpec:
    """Vocabulary sizes and rates shared by the three stages (the paper's values by default)."""

    mulan_levels: int = 12
    mulan_codebook: int = 1024
    melody_levels: int = 24
    melody_codebook: int = 512
    semantic_codebook: int = 1024
    acoustic_levels: int = 12
    acoustic_codebook: int = 1024
    coarse_levels: int = 4
    semantic_rate: int = 25
    acoustic_rate: int = 50

    @property
    def fine_levels(self) -> int:
        return self.acoustic_levels - self.coarse_levels


@dataclass(frozen=True)
class StageConfig:
    stage: str
    tokens: TokenSpec = field(default_factory=TokenSpec)
    crop_seconds: float = 10.0
    preset: str = "paper"
    transformer: dict = field(default_factory=dict)  # overrides of the preset
    cond_dropout: float = 0.1
    melody_dropout: float = 0.5
    semantic_dropout: float = 0.15  # coarse stage: S → NULL, which is what ``skip_semantic`` samples with
    chroma: bool = False  # coarse stage: chroma tokens of the melody interleaved with S (MusicGen-style)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise StageError(f"unknown stage {self.stage!r}; choose one of {', '.join(STAGES)}")

    @property
    def melody_windows(self) -> int:
        """Melody windows in the semantic stage's conditioning: ceil(crop / 4 s), the last one end-anchored."""
        return math.ceil(self.crop_seconds / MELODY_WINDOW_SECONDS) if self.stage == "semantic" else 0

    @property
    def frames(self) -> int:
        """Frames in one crop at the rate the stage generates (semantic: 25 Hz, acoustic: 50 Hz)."""
        rate = self.tokens.semantic_rate if self.stage == "semantic" else self.tokens.acoustic_rate
        return int(round(self.crop_seconds * rate))




def stage_config(stage: str, preset: str = "paper", tokens: TokenSpec | None = None, **kw) -> StageConfig:
    """A stage of a named size: its crop and, for the coarse stage, its semantic dropout (``musiclm_ref.presets``)."""
    p = get_preset(preset, "stage", StageError)
    if stage == "coarse" and p.coarse_semantic_dropout is not None:
        kw.setdefault("semantic_dropout", p.coarse_semantic_dropout)
    if stage == "coarse":
        kw.setdefault("chroma", p.coarse_chroma)
    return StageConfig(stage=stage, tokens=tokens or TokenSpec(), crop_seconds=p.crops[stage], preset=preset, **kw)


def vocabulary(cfg: StageConfig) -> dict[str, tuple[int, int]]:
    """Token type → (offset, size) in this stage's vocabulary, in order after the specials."""
    t = cfg.tokens
    blocks: list[tuple[str, int]] = []
    if cfg.stage in ("semantic", "coarse"):
        blocks += [(f"mulan{q}", t.mulan_codebook) for q in range(t.mulan_levels)]
    if cfg.stage == "semantic":
        blocks += [(f"melody{r}", t.melody_codebook) for r in range(t.melody_levels)]
    if cfg.stage in ("semantic", "coarse"):
        blocks += [("semantic", t.semantic_codebook)]
    if cfg.stage in ("coarse", "fine"):
        levels = t.coarse_levels if cfg.stage == "coarse" else t.acoustic_levels
        blocks += [(f"acoustic{level}", t.acoustic_codebook) for level in range(levels)]
    if cfg.stage == "coarse" and cfg.chroma:  # last, so a stage without chroma keeps every other id
        blocks += [("chroma", CHROMA_CLASSES)]
    out, offset = {}, N_SPECIAL
    for name, size in blocks:
        out[name] = (offset, size)
        offset += size
    return out


def vocab_size(cfg: StageConfig) -> int:
    return N_SPECIAL + sum(size for _, size in vocabulary(cfg).values())


class Stage(nn.Module):
    """One stage: its Transformer plus the layout that turns token streams into sequences and back."""

    def __init__(self, cfg: StageConfig):
        super().__init__()
        self.config = cfg
        self.vocab = vocabulary(cfg)
        overrides = dict(cfg.transformer)
        if cfg.stage == "coarse" and get_preset(cfg.preset, "stage", StageError).coarse_clock:  # aligns S and A by a clock
            overrides.setdefault("clock", True)
        tcfg: TransformerConfig = transformer_preset(cfg.preset, vocab_size(cfg), **overrides)
        self.net = Transformer(tcfg)
        if tcfg.clock:
            self.net.set_clock(self.clock_ticks(), [SEP])

    def clock_ticks(self) -> dict[int, int]:
        """Clock advance per token id, in 10 ms units: a semantic token (25 Hz) 4; the last level of an
        acoustic frame (50 Hz) 2 — the last coarse level in a coarse section, the last level in a fine one."""
        t = self.config.tokens
        ticks = {}
        if "semantic" in self.vocab:
            off, size = self.vocab["semantic"]
            ticks.update({i: 4 for i in range(off, off + size)})
        for level in {t.coarse_levels - 1, t.acoustic_levels - 1}:
            if f"acoustic{level}" in self.vocab:
                off, size = self.vocab[f"acoustic{level}"]
                ticks.update({i: 2 for i in range(off, off + size)})
        return ticks

    # -- offsets ----------------------------------------------------------------------------------
    def _levels(self, codes: Tensor, prefix: str, first: int = 0) -> Tensor:
        """codes [..., L] (level-local ids) → vocabulary ids of levels first..first+L-1."""
        t = self.config.tokens
        size = self.vocab[f"{prefix}{first}"][1] if prefix else t.semantic_codebook
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= size):
            raise StageError(f"{prefix or 'semantic'} codes must lie in [0, {size}), got [{int(codes.min())}, {int(codes.max())}]")
        offsets = torch.tensor([self.vocab[f"{prefix}{first + i}"][0] for i in range(codes.shape[-1])], device=codes.device)
        return codes + offsets

    def _semantic(self, s: Tensor) -> Tensor:
        off, size = self.vocab["semantic"]
        if s.numel() and (int(s.min()) < 0 or int(s.max()) >= size):
            raise StageError(f"semantic tokens must lie in [0, {size}), got [{int(s.min())}, {int(s.max())}]")
        return s + off

    def range_of(self, name: str) -> tuple[int, int]:
        off, size = self.vocab[name]
        return off, off + size

    def target_ranges(self, frames: int) -> list[tuple[int, int]]:
        """Allowed vocabulary range for each generated position of ``frames`` frames."""
        if self.config.stage == "semantic":
            return [self.range_of("semantic")] * frames
        t = self.config.tokens
        levels = range(t.coarse_levels) if self.config.stage == "coarse" else range(t.coarse_levels, t.acoustic_levels)
        return [self.range_of(f"acoustic{level}") for level in levels] * frames

    def decode_targets(self, ids: Tensor) -> Tensor:
        """Generated vocabulary ids [B, n] → level-local codes ([B, n] semantic, [B, frames, levels] acoustic)."""
        if self.config.stage == "semantic":
            return ids - self.vocab["semantic"][0]
        t = self.config.tokens
        first = 0 if self.config.stage == "coarse" else t.coarse_levels
        n_levels = t.coarse_levels if self.config.stage == "coarse" else t.fine_levels
        codes = rearrange(ids, "b (t l) -> b t l", l=n_levels)
        offsets = torch.tensor([self.vocab[f"acoustic{first + i}"][0] for i in range(n_levels)], device=ids.device)
        return codes - offsets

    # -- conditioning -----------------------------------------------------------------------------
    def conditioning(self, batch: int, mulan: Tensor | None, melody: Tensor | None, device=None) -> Tensor:
        """[B, Lc] conditioning prefix; ``None`` parts become NULL tokens (dropped conditioning)."""
        t, cfg = self.config.tokens, self.config
        if cfg.stage == "fine":
            return torch.zeros(batch, 0, dtype=torch.long, device=device)
        parts = []
        if mulan is None:
            parts.append(torch.full((batch, t.mulan_levels), NULL, dtype=torch.long, device=device))
        else:
            if mulan.shape != (batch, t.mulan_levels):
                raise StageError(f"MuLan tokens must be [{batch}, {t.mulan_levels}], got {tuple(mulan.shape)}")
            parts.append(self._levels(mulan.long(), "mulan"))
        if cfg.stage == "semantic":
            w = cfg.melody_windows
            if melody is None:
                parts.append(torch.full((batch, w * t.melody_levels), NULL, dtype=torch.long, device=device))
            else:
                if melody.shape != (batch, w, t.melody_levels):
                    raise StageError(f"melody tokens must be [{batch}, {w}, {t.melody_levels}], got {tuple(melody.shape)}")
                parts.append(rearrange(self._levels(melody.long(), "melody"), "b w r -> b (w r)"))
        return torch.cat(parts, dim=1)

    def semantic_context(self, s: Tensor | None, frames: int | None = None, batch: int | None = None) -> Tensor:
        """Coarse stage: semantic tokens [B, n] → vocabulary ids; ``None`` → ``frames`` NULL tokens
        (the paper's ablation that skips the semantic stage)."""
        if s is None:
            return torch.full((batch, frames), NULL, dtype=torch.long)
        return self._semantic(s.long())

    def with_chroma(self, context: Tensor, chroma: Tensor | None, drop: Tensor | None = None) -> Tensor:
        """Coarse stage with ``chroma``: the semantic context [B, n] (vocabulary ids) interleaved with chroma
        tokens [B, n] (classes 0..12; ``None`` or rows where ``drop`` is True → NULL, i.e. no melody) as
        S_1 C_1 S_2 C_2 …; a stage without chroma returns ``context`` unchanged and refuses a melody."""
        if not self.config.chroma:
            if chroma is not None:
                raise StageError("this coarse stage was trained without chroma conditioning (config.chroma=False)")
            return context
        if chroma is None:
            c = torch.full_like(context, NULL)
        else:
            if chroma.shape != context.shape:
                raise StageError(f"chroma tokens must be {tuple(context.shape)} like the semantic context, got {tuple(chroma.shape)}")
            off, size = self.vocab["chroma"]
            if chroma.numel() and (int(chroma.min()) < 0 or int(chroma.max()) >= size):
                raise StageError(f"chroma tokens must lie in [0, {size}), got [{int(chroma.min())}, {int(chroma.max())}]")
            c = chroma.long().to(context.device) + off
            if drop is not None:
                c = torch.where(drop.to(context.device)[:, None], torch.full_like(c, NULL), c)
        return rearrange(torch.stack([context, c], dim=-1), "b n two -> b (n two)")

    # -- sequences --------------------------------------------------------------------------------
    def prompt(self, cond: Tensor, context: Tensor | None = None, prefix: Tensor | None = None) -> Tensor:
        """The tokens before the first generated one.

        semantic: cond SEP S_prefix; coarse: cond S_window SEP A_prefix; fine: A_coarse SEP A_fine_prefix.
        ``context`` is ``semantic_context(S_window)`` (coarse) or the coarse codes [B, T, 4] (fine); ``prefix`` holds
        level-local tokens already generated in this window ([B, n] semantic, [B, T, levels] acoustic).
        """
        stage, t = self.config.stage, self.config.tokens
        b = cond.shape[0]
        parts = [cond]
        if stage == "coarse":
            parts.append(context)  # vocabulary ids from semantic_context()
        elif stage == "fine":
            parts.append(rearrange(self._levels(context.long(), "acoustic"), "b t l -> b (t l)"))
        parts.append(torch.full((b, 1), SEP, dtype=torch.long, device=cond.device))
        if prefix is not None and prefix.shape[1]:
            if stage == "semantic":
                parts.append(self._semantic(prefix.long()))
            else:
                first = 0 if stage == "coarse" else t.coarse_levels
                parts.append(rearrange(self._levels(prefix.long(), "acoustic", first), "b t l -> b (t l)"))
        return torch.cat(parts, dim=1)

    def forward(self, tokens: Tensor, cache=None) -> Tensor:
        return self.net(tokens, cache)

    # -- training ---------------------------------------------------------------------------------
    def loss(self, cond: Tensor, targets: Tensor, context: Tensor | None = None, net: nn.Module | None = None) -> Tensor:
        """Next-token cross-entropy over the target positions of a batch of crops. ``net`` is ``self.net``
        or a wrapper of it (DistributedDataParallel: its forward is what synchronizes the gradients)."""
        prompt = self.prompt(cond, context)
        full = self.prompt(cond, context, prefix=targets)
        logits = (net or self.net)(full[:, :-1])[:, prompt.shape[1] - 1 :]
        return F.cross_entropy(rearrange(logits, "b n v -> (b n) v").float(), full[:, prompt.shape[1] :].reshape(-1))

    # -- checkpoints ------------------------------------------------------------------------------
    def to_checkpoint(self, metadata: dict | None = None) -> dict:
        cfg = asdict(self.config)
        return {"format": CHECKPOINT_FORMAT, "config": cfg, "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "metadata": dict(metadata or {})}

    @classmethod
    def from_checkpoint(cls, ckpt: dict, source: str = "<dict>") -> Stage:
        """The stage of a ``to_checkpoint`` dict (``read_stage_checkpoint`` reads and checks the file)."""
        c = dict(ckpt["config"])
        stage = cls(StageConfig(**{**c, "tokens": TokenSpec(**c["tokens"])}))
        try:
            stage.net.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            raise StageError(f"{source}: weights do not match its config ({e})") from None
        stage.metadata = dict(ckpt.get("metadata", {}))
        return stage.eval()


CHECKPOINT_FORMAT = "musiclm-eval/stage/1"


def read_stage_checkpoint(path) -> dict:
    """A stage checkpoint's dict (``metrics.artifacts.read_checkpoint``: errors name the file and the kind)."""
    ckpt, _ = read_checkpoint(path, CHECKPOINT_FORMAT, "a stage checkpoint", StageError, unreadable="unreadable checkpoint")
    return ckpt


def load_stage(path, device: str = "cpu") -> Stage:
    return Stage.from_checkpoint(read_stage_checkpoint(path), str(path)).to(device)


def melody_window_starts(crop_seconds: float, n_windows: int) -> list[int]:
    """Whole-second starts of the melody windows of a crop: 0, 4, 8, … with the last one end-anchored."""
    last = max(0, int(math.ceil(crop_seconds)) - MELODY_WINDOW_SECONDS)
    return [min(MELODY_WINDOW_SECONDS * i, last) for i in range(n_windows)]

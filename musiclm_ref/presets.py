"""The named sizes of the reference MusicLM in one table: what ``paper`` and ``tiny`` fix for every piece.

Each model module builds its config from its column here (``codec.preset``, ``transformer.preset``,
``stages.stage_config``, the semantic tokenizer's K, the MuLan RVQ, the default stage steps), so a size is
read in one place. Plain data only: this module imports nothing of the project, and every module may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Preset:
    codec: Mapping  # CodecConfig fields that differ from its defaults
    transformer: Mapping  # TransformerConfig fields of every stage
    crops: Mapping  # stage → training/sampling crop in seconds
    coarse_semantic_dropout: float | None  # the coarse stage's P(S → NULL); None: StageConfig's default
    coarse_clock: bool  # the coarse stage aligns semantic and acoustic tokens by a clock
    coarse_chroma: bool  # the coarse stage hears the melody's chroma beside S (MusicGen-style; not the paper)
    semantic_k: int  # semantic tokenizer clusters
    mulan_rvq: tuple[int, int]  # levels, codebook of the RVQ over MuLan audio embeddings
    stage_steps: Mapping  # stage → default optimizer steps


PRESETS: Mapping[str, Preset] = MappingProxyType({
    "paper": Preset(
        # SoundStream's published width (C=32), MusicLM's 12 x 1024 RVQ.
        codec=MappingProxyType(dict(latent_norm=True)),
        # The paper's stage size (MusicLM §3.3 / AudioLM): 24 layers, 16 heads, d=1024, FFN 4096, dropout 0.1.
        transformer=MappingProxyType(dict(dim=1024, depth=24, heads=16, ff_dim=4096, dropout=0.1, rel_buckets=32,
                                          rel_max_distance=128)),
        crops=MappingProxyType({"semantic": 30.0, "coarse": 10.0, "fine": 3.0}),  # the paper's crops
        coarse_semantic_dropout=None,
        coarse_clock=False,
        coarse_chroma=False,
        semantic_k=1024,
        mulan_rvq=(12, 1024),
        stage_steps=MappingProxyType({"semantic": 10**6, "coarse": 10**6, "fine": 10**6}),
    ),
    "tiny": Preset(
        # Trainable on 2 CPU cores in ~35 min and ships in ~11 MB: half SoundStream's width, codebook 256. The
        # structure (480 hop, 50 Hz, 12 levels, coarse/fine split) is the paper's. Non-causal: MusicLM
        # decodes whole windows, and seeing both sides helps a model this small. A batch holds ~130
        # latents for 256 codes (< 1 per code), so the dead-code threshold scales down with it, and the
        # commitment weight is VQ-VAE's 0.25: at 1.0 the small encoder collapsed to near-constant latents.
        codec=MappingProxyType(dict(channels=16, latent_dim=64, codebook_size=256, causal=False, commitment_weight=0.25,
                                    rvq_dead_threshold=0.05, latent_norm=True)),
        # Trainable on 2 CPU cores in minutes and fast enough to sample 10 s clips in seconds.
        transformer=MappingProxyType(dict(dim=128, depth=3, heads=4, ff_dim=256, dropout=0.0, rel_buckets=32,
                                          rel_max_distance=256)),
        crops=MappingProxyType({"semantic": 10.0, "coarse": 2.0, "fine": 1.0}),  # shorter: fits 2 CPU cores
        # measured: 0.15 taught the tiny stage to ignore S (benchmarks/hierarchy.py; docs/protocol.md,
        # "Does the hierarchy matter")
        coarse_semantic_dropout=0.05,
        coarse_clock=True,
        coarse_chroma=True,
        semantic_k=256,
        mulan_rvq=(12, 32),
        stage_steps=MappingProxyType({"semantic": 1500, "coarse": 1500, "fine": 1200}),
    ),
})  # fmt: skip


def get_preset(name: str, kind: str = "", error: type[Exception] = ValueError) -> Preset:
    """The preset ``name``; an unknown name raises ``error`` naming the piece (``kind``) and the choices."""
    if name not in PRESETS:
        raise error(f"unknown {kind + ' ' if kind else ''}preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]

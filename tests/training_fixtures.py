"""A random token corpus and micro stages for the training-mechanics tests (DDP, resume, precision).

The training loop's properties (sharding, gradient averaging, exact resume) do not depend on where
the tokens came from, so these tests skip the codec/tokenizer/MuLan and draw tokens from a seeded
generator: they run in seconds.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from musiclm_ref.stages import Stage, TokenSpec, stage_config
from musiclm_ref.token_corpus import TokenCorpus

MICRO = dict(depth=2, dim=32, heads=2, ff_dim=48)
CROPS = {"semantic": 4.0, "coarse": 0.5, "fine": 0.2}
SPEC = TokenSpec(mulan_levels=4, mulan_codebook=8, melody_levels=2, melody_codebook=8, semantic_codebook=16,
                 acoustic_levels=6, acoustic_codebook=16, coarse_levels=2)


def random_corpus(n: int = 12, seconds: int = 5, seed: int = 0, melody: bool = True) -> TokenCorpus:
    g = torch.Generator().manual_seed(seed)
    s = SPEC
    return TokenCorpus(
        ids=[f"clip-{i:03d}" for i in range(n)],
        semantic=torch.randint(0, s.semantic_codebook, (n, seconds * s.semantic_rate), generator=g),
        acoustic=torch.randint(0, s.acoustic_codebook, (n, seconds * s.acoustic_rate, s.acoustic_levels), generator=g),
        mulan=torch.randint(0, s.mulan_codebook, (n, s.mulan_levels), generator=g),
        melody=torch.randint(0, s.melody_codebook, (n, seconds - 3, s.melody_levels), generator=g) if melody else None,
        spec=s, chroma=torch.randint(0, 13, (n, seconds * s.semantic_rate), generator=g))


def micro_stage(name: str, seed: int = 0, **transformer) -> Stage:
    torch.manual_seed(seed)
    cfg = stage_config(name, "tiny", SPEC, transformer={**MICRO, **transformer})
    return Stage(replace(cfg, crop_seconds=CROPS[name]))


def weights(stage: Stage) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in stage.net.state_dict().items()}


def max_weight_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def save_tiny_wav2vec2(out):
    """A random-weight wav2vec2 built with transformers' own classes and saved in its format (the
    semantic path's ``--hf-model``; w2v-BERT weights cannot be downloaded here). 320 samples → 50 Hz."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
        conv_dim=(16, 16, 16), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, do_stable_layer_norm=True, feat_extract_norm="layer")
    model = transformers.Wav2Vec2Model(cfg).eval()
    model.save_pretrained(out)
    return model

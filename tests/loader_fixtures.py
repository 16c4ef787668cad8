"""Tiny random-weight checkpoints of the published evaluation models, built offline with each package's own
classes and saved in the format that package loads (tests/test_loaders_*.py, tests/test_protocols.py).

Nothing here mocks a model: the networks are ``hear21passt``'s ``PaSST``, ``transformers``' ``ClapModel`` (with a
RoBERTa BPE tokenizer built from vocab files written here), ``torchopenl3``'s ``PytorchOpenl3`` and ``muq``'s
``MuQMuLan`` — only smaller (where the class allows) and untrained.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORDS = ["piano", "guitar", "drums", "calm", "loud", "jazz", "rock", "song", "with", "a", "and", "slow", "fast"]


def passt_checkpoint(path: Path, seed: int = 0, dim: int = 64, depth: int = 1) -> Path:
    """A state dict of hear21passt's PaSST (distilled, stride 10, 527 classes) as the release files are."""
    pytest.importorskip("hear21passt", reason="hear21passt is not installed (pip install 'musiclm-eval[passt]')")
    import torch
    from hear21passt.models.passt import PaSST

    torch.manual_seed(seed)
    net = PaSST(img_size=(128, 998), stride=(10, 10), embed_dim=dim, depth=depth, num_heads=max(1, dim // 64),
                distilled=True, num_classes=527)
    torch.save(net.state_dict(), path)
    return path


def openl3_checkpoint(path: Path, seed: int = 0) -> Path:
    """A state dict of torchopenl3's PytorchOpenl3 (mel256 / music / 512; the class has one size)."""
    pytest.importorskip("torchopenl3", reason="torchopenl3 is not installed (pip install 'musiclm-eval[openl3]')")
    import torch
    from torchopenl3.core import PytorchOpenl3

    torch.manual_seed(seed)
    torch.save(PytorchOpenl3(input_repr="mel256", embedding_size=512, content_type="music").state_dict(), path)
    return path


def roberta_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """vocab.json + merges.txt of a byte-level BPE over a few words (RoBERTa's format, no hub download)."""
    folder.mkdir(parents=True, exist_ok=True)
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    chars = sorted({c for w in WORDS for c in w} | {"Ġ"})
    vocab = {t: i for i, t in enumerate(dict.fromkeys(special + chars + ["Ġ" + w for w in WORDS] + WORDS))}
    merges = []
    for w in WORDS:  # merge each word left to right, with and without the space marker
        for word in (w, "Ġ" + w):
            parts = ["Ġ", *w] if word.startswith("Ġ") else list(w)
            while len(parts) > 1:
                merges.append(f"{parts[0]} {parts[1]}")
                parts = [parts[0] + parts[1], *parts[2:]]
                if parts[0] not in vocab:
                    vocab[parts[0]] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n", encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def clap_checkpoint(folder: Path, seed: int = 0, fusion: bool = False) -> Path:
    """A transformers ClapModel + ClapProcessor folder (save_pretrained), HTSAT and RoBERTa made tiny."""
    pytest.importorskip("transformers", reason="transformers is not installed (pip install 'musiclm-eval[clap]')")
    import torch
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        ClapTextConfig,
        RobertaTokenizerFast,
    )

    roberta_tokenizer_files(folder / "tok")
    tokenizer = RobertaTokenizerFast.from_pretrained(str(folder / "tok"), model_max_length=77)
    audio = ClapAudioConfig(num_mel_bins=64, spec_size=256, window_size=4, patch_size=16, patch_stride=[16, 16],
                            depths=[1, 1], num_heads=[2, 2], patch_embeds_hidden_size=16, hidden_size=32,
                            projection_dim=16, enable_fusion=fusion)
    text = ClapTextConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=80, projection_dim=16)
    torch.manual_seed(seed)
    model = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)).eval()
    fe = ClapFeatureExtractor(truncation="fusion" if fusion else "rand_trunc", padding="repeatpad")
    out = folder / "clap"
    model.save_pretrained(out)
    ClapProcessor(feature_extractor=fe, tokenizer=tokenizer).save_pretrained(out)
    return out


def muq_mulan_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A ``MuQMuLan.save_pretrained`` folder whose towers are a tiny ``MuQ`` and a tiny ``XLMRobertaModel`` saved
    beside it (their folder names contain 'muq' / 'xlm-roberta', which is how muq picks the tower class)."""
    pytest.importorskip("muq", reason="muq is not installed (pip install 'musiclm-eval[muq]')")
    import torch
    from muq import MuQ, MuQConfig, MuQMuLan
    from transformers import RobertaTokenizerFast, Wav2Vec2ConformerConfig, XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(seed)
    w2v2 = Wav2Vec2ConformerConfig(num_attention_heads=2, intermediate_size=32, conv_depthwise_kernel_size=3,
                                   position_embeddings_type="rotary", hidden_dropout=0.0, activation_dropout=0.0,
                                   attention_dropout=0.0, layerdrop=0.0, num_conv_pos_embeddings=16,
                                   num_conv_pos_embedding_groups=2).to_dict()
    w2v2 = {k: v for k, v in w2v2.items() if not (isinstance(v, dict) and any(not isinstance(x, str) for x in v))}
    muq = MuQ(MuQConfig(encoder_dim=32, encoder_depth=1, conv_dim=8, codebook_size=16,
                        stat={"melspec_2048_mean": 6.77, "melspec_2048_std": 19.0}, w2v2_config=w2v2))
    muq.save_pretrained(folder / "muq-tiny")
    roberta_tokenizer_files(folder / "xlm-roberta-tiny")
    tok = RobertaTokenizerFast.from_pretrained(str(folder / "xlm-roberta-tiny"))
    tok.save_pretrained(folder / "xlm-roberta-tiny")
    XLMRobertaModel(XLMRobertaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=514)).save_pretrained(folder / "xlm-roberta-tiny")
    cfg = {"mulan": {"sr": 24000, "clip_secs": 10, "dim_latent": 8, "decoupled_contrastive_learning": True,
                     "hierarchical_contrastive_loss": False, "hierarchical_contrastive_loss_layers": None,
                     "sigmoid_contrastive_loss": False, "rank_contrast": True},
           "audio_model": {"name": str(folder / "muq-tiny"), "model_dim": 32, "use_layer_idx": -1},
           "text_model": {"name": str(folder / "xlm-roberta-tiny"), "model_dim": 16},
           "audio_transformer": {"dim": 16, "tf_depth": 1, "heads": 2, "dim_head": 8, "attn_dropout": 0.0,
                                 "ff_dropout": 0.0, "ff_mult": 2},
           "text_transformer": {"dim": 16, "tf_depth": 1, "max_seq_len": 512, "dim_head": 8, "heads": 2,
                                "attn_dropout": 0.0, "ff_dropout": 0.0, "ff_mult": 2}}
    out = folder / "muq-mulan-tiny"
    MuQMuLan(cfg).eval().save_pretrained(out)
    return out


def mert_checkpoint(folder: Path, seed: int = 0, layers: int = 24) -> Path:
    """A MERT-shaped folder: transformers' ``HubertModel`` (MERT-v1 is HuBERT's architecture with a stable layer
    norm; its own remote code cannot be had offline) with ``layers`` tiny layers, and a 24 kHz
    ``Wav2Vec2FeatureExtractor`` (MERT's processor class), both saved with ``save_pretrained``."""
    pytest.importorskip("transformers", reason="transformers is not installed (pip install 'musiclm-eval[mert]')")
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    cfg = HubertConfig(hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32,
                       conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=8,
                       num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True)
    torch.manual_seed(seed)
    HubertModel(cfg).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return folder

"""Published evaluation protocols as data: ``--protocol musiclm | musicgen | stable-audio``.

A protocol names, for each metric column of a paper's table, the model and settings that paper used:
FAD embedders, the classifier and KLD convention (``metrics/kld.py``), the joint text/audio model for
MCC/CLAP score, and the sample rates, clip length, level and channel handling that go with them. Each
setting carries its source (paper section or peer code file); docs/protocol.md "Published protocols"
prints them. The loaders themselves implement the per-model pre-processing (``metrics/embedders/``);
a protocol only selects them, and ``apply`` fills the flags a user did not give.

The dashboard refuses to rank two runs of different protocols in one column (``comparable``): a FAD on
VGGish at 16 kHz and an FD on OpenL3 at 44.1 kHz are different quantities even when both say "FAD".
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metrics.errors import InputError

TABLES = Path(__file__).resolve().parents[1] / "docs" / "published_tables.json"


class ProtocolError(InputError):
    """An unknown protocol name, or runs of different protocols put in one ranking."""


@dataclass(frozen=True)
class Protocol:
    """What a published table's columns were computed with (registry names; ``sources`` say why)."""

    name: str
    paper: str
    embedders: tuple[str, ...]
    classifier: str | None
    kld_convention: str
    joint: str | None
    sample_rates: Mapping[str, int]
    clip_seconds: float | None
    loudness: str
    channels: str
    table: str
    extra_tables: tuple[str, ...] = ()  # more published tables of the same protocol (docs/published_tables.json)
    sources: Mapping[str, str] = field(default_factory=dict)
    packages: Mapping[str, str] = field(default_factory=dict)   # model -> python module it needs
    weights: Mapping[str, str] = field(default_factory=dict)    # model -> what to download

    def settings(self) -> dict:
        """The protocol as results.json records it (``metadata.protocol_settings``)."""
        d = asdict(self)
        d["embedders"] = list(self.embedders)
        d["extra_tables"] = list(self.extra_tables)
        return d

    @property
    def tables(self) -> tuple[str, ...]:
        """Every published table this protocol reproduces, the paper's own first."""
        return (self.table, *self.extra_tables)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol(
        name="musiclm", paper="Agostinelli et al. 2023, MusicLM (arXiv:2301.11325), Table 1",
        embedders=("trill", "vggish"), classifier="leaf-corpus", kld_convention="musiclm", joint="mulan-ref",
        sample_rates={"trill": 16000, "vggish": 16000, "leaf-corpus": 16000, "mulan-ref": 16000},
        clip_seconds=10.0, loudness="none", channels="mono (mean of channels)", table="musiclm",
        sources={
            "embedders": "MusicLM §5 'Metrics': FAD with TRILL (speech-like) and VGGish (audio) embeddings",
            "classifier": "MusicLM §5: KLD with a LEAF multi-label AudioSet classifier (not released; "
                          "the shipped leaf-corpus is trained on the procedural corpus, so KLD is not comparable)",
            "joint": "MusicLM §5: MCC with MuLan (not released; mulan-ref is the project's reproduction)",
            "sample_rates": "Google's FAD code (frechet_audio_distance): 16 kHz mono, padded to whole seconds",
            "clip_seconds": "MusicLM §5: MusicCaps 10 s clips",
        },
        packages={"trill": "tensorflow_hub", "vggish": "tensorflow_hub"},
        weights={"trill": "TF-Hub google/nonsemantic-speech-benchmark/trill/3 (--embedder-path trill=DIR)",
                 "vggish": "TF-Hub google/vggish/1 (--embedder-path vggish=DIR)"},
    ),
    Protocol(
        name="musicgen", paper="Copet et al. 2023, MusicGen (arXiv:2306.05284), Table 1",
        embedders=("vggish",), classifier="passt", kld_convention="audiocraft", joint="clap",
        sample_rates={"vggish": 16000, "passt": 32000, "clap": 48000},
        clip_seconds=10.0, loudness="none", channels="mono (mean of channels)", table="musicgen",
        extra_tables=("musicgen-released",),
        sources={
            "embedders": "MusicGen §4.1 'Metrics': FAD on the official VGGish (Google's TF implementation)",
            "classifier": "MusicGen §4.1: KL over PaSST's AudioSet labels; audiocraft/metrics/kld.py "
                          "(PasstKLDivergenceMetric: 10 s torch.split segments, softmax per segment)",
            "kld_convention": "audiocraft/metrics/kld.py kl_divergence(pred, target) and kld_both",
            "joint": "MusicGen §4.1: CLAP score; audiocraft/metrics/clap_consistency.py with "
                     "music_audioset_epoch_15_esc_90.14.pt (HTSAT-base, no fusion) = laion/larger_clap_music",
            "sample_rates": "audiocraft convert_audio to each model's rate: 16 kHz VGGish, 32 kHz PaSST, 48 kHz CLAP",
            "clip_seconds": "MusicCaps 10 s references; generated clips cut/padded to the reference duration",
        },
        packages={"vggish": "tensorflow_hub", "passt": "hear21passt", "clap": "transformers"},
        weights={"vggish": "TF-Hub google/vggish/1",
                 "passt": "passt-s-f128-p16-s10-ap.476-swa.pt (github.com/kkoutini/PaSST releases) in $TORCH_HOME/hub/checkpoints",
                 "clap": "huggingface-cli download laion/larger_clap_music"},
    ),
    Protocol(
        name="stable-audio", paper="Evans et al. 2024, Stable Audio (arXiv:2402.04825) and Stable Audio Open "
                                   "(arXiv:2407.14358), both scored with stable-audio-metrics",
        embedders=("openl3",), classifier="passt-sam", kld_convention="stable-audio", joint="clap-sam",
        sample_rates={"openl3": 44100, "passt-sam": 32000, "clap-sam": 48000},
        clip_seconds=None, loudness="peak-normalized to -1 dBFS (every model)", channels="stereo for OpenL3 "
        "(L|R embeddings concatenated; a mono clip duplicated), mono for PaSST and CLAP", table="stable-audio",
        sources={
            "embedders": "stable-audio-metrics src/openl3_fd.py + examples/musiccaps_openl3_fd.py "
                         "(channels=2, samplingrate=44100, content_type=music, hop 0.5 s, mel256/512)",
            "classifier": "stable-audio-metrics src/passt_kld.py return_probabilities (10 s windows, 5 s overlap, "
                          "logits mean-pooled, one softmax per clip)",
            "kld_convention": "src/passt_kld.py: F.kl_div((ref_p + 1e-6).log(), eval_p, reduction='sum')",
            "joint": "src/clap_score.py: 630k-audioset-fusion-best.pt (= laion/clap-htsat-fused), int16 round trip",
            "loudness": "pyln.normalize.peak(audio, -1.0) in all three src/*.py files",
            "clip_seconds": "stable-audio-metrics handles variable-length inputs (no crop)",
        },
        packages={"openl3": "torchopenl3", "passt-sam": "hear21passt", "clap-sam": "transformers"},
        weights={"openl3": "torchopenl3_mel256_music_512.pth.tar (github.com/torchopenl3/torchopenl3-models) in "
                           "$TORCH_HOME/hub/checkpoints",
                 "passt-sam": "passt-s-f128-p16-s10-ap.476-swa.pt in $TORCH_HOME/hub/checkpoints",
                 "clap-sam": "huggingface-cli download laion/clap-htsat-fused"},
    ),
)}


def get(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {name!r}; expected one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def apply(name: str | None, given: Mapping[str, object]) -> dict:
    """Flag values for a run: the protocol's for every flag the user did not give, the user's otherwise.

    ``given`` maps ``embedders`` / ``classifier`` / ``joint`` / ``kld_convention`` to the user's value,
    or to ``None`` where the flag was left at its default.
    """
    out = {k: v for k, v in given.items() if v is not None}
    if name is None:
        return out
    p = get(name)
    defaults = {"embedders": list(p.embedders), "classifier": p.classifier, "joint": p.joint,
                "kld_convention": p.kld_convention}
    return {**defaults, **out}


def metadata(name: str | None, used: Mapping[str, object]) -> dict:
    """``results.json`` metadata: ``protocol_name`` (the name, or ``"custom"``) and ``protocol_settings``
    (the protocol's settings and which of them the user overrode).

    Top-level keys beside ``metadata.protocol`` (the pipeline's per-embedder pre-processing block), which
    they must not replace.
    """
    if name is None:
        return {"protocol_name": "custom", "protocol_settings": None}
    p = get(name)
    expected = {"embedders": list(p.embedders), "classifier": p.classifier, "joint": p.joint,
                "kld_convention": p.kld_convention}
    overridden = sorted(k for k, v in expected.items() if k in used and used[k] != v)
    return {"protocol_name": name, "protocol_settings": {**p.settings(), "overridden": overridden}}


def run_protocol(meta: Mapping | None) -> str:
    """The protocol a results store's metadata names (``"custom"`` when none, as for older stores)."""
    meta = meta or {}
    name = meta.get("protocol_name")
    if name is None and isinstance(meta.get("protocol"), Mapping):
        name = meta["protocol"].get("name")
    return str(name) if name else "custom"


def comparable(protocols: Mapping[str, str]) -> str | None:
    """None when every run (name -> protocol) may be ranked together, else the reason they may not."""
    distinct = sorted(set(protocols.values()))
    if len(distinct) <= 1:
        return None
    groups = "; ".join(f"{p}: {', '.join(sorted(r for r, q in protocols.items() if q == p))}" for p in distinct)
    return (f"runs of different protocols cannot be ranked in one column ({groups}): each protocol computes its "
            "metrics with other models, sample rates and formulas, so the numbers are different quantities")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def published_tables(path: str | Path = TABLES) -> dict:
    """docs/published_tables.json: each protocol's published table (values as the papers print them)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


SHIPPED = {"leaf-corpus": "shipped with the package", "mulan-ref": "shipped with the package", "mel": "no weights"}


def weights_status(model: str) -> tuple[bool | None, str]:
    """(present?, where) for a protocol model's default weights, without loading anything.

    ``None`` when only loading can tell (TF-Hub resolves its cache itself).
    """
    import os

    if model in SHIPPED:
        return True, SHIPPED[model]
    if model in ("passt", "passt-sam", "openl3", "openl3-mono"):
        from metrics.embedders.pretrained import torch_hub_checkpoints

        name = ("passt-s-f128-p16-s10-ap.476-swa.pt" if model.startswith("passt")
                else "torchopenl3_mel256_music_512.pth.tar")
        path = torch_hub_checkpoints() / name
        return path.is_file(), str(path)
    if model in ("clap", "clap-sam", "muq-mulan"):
        repo = {"clap": "laion/larger_clap_music", "clap-sam": "laion/clap-htsat-fused",
                "muq-mulan": "OpenMuQ/MuQ-MuLan-large"}[model]
        try:
            from huggingface_hub import snapshot_download

            return True, snapshot_download(repo, local_files_only=True)
        except Exception:
            return False, f"{repo} (Hugging Face cache)"
    if model in ("vggish", "trill"):
        return None, f"TF-Hub cache (TFHUB_CACHE_DIR={os.environ.get('TFHUB_CACHE_DIR', 'unset')}) or --embedder-path"
    return None, "unknown"


def status(name: str) -> dict:
    """What ``musiclm-eval protocols`` prints for one protocol: each model's package and weights."""
    p = get(name)
    models = [("embedder", m) for m in p.embedders] + [("classifier", p.classifier), ("joint", p.joint)]
    rows = []
    for kind, m in models:
        if m is None:
            continue
        module = p.packages.get(m)
        present, where = weights_status(m)
        rows.append({"kind": kind, "model": m, "package": module, "installed": installed(module) if module else True,
                     "weights_present": present, "weights": where, "download": p.weights.get(m)})
    return {"name": p.name, "paper": p.paper, "kld_convention": p.kld_convention, "clip_seconds": p.clip_seconds,
            "loudness": p.loudness, "channels": p.channels, "sample_rates": dict(p.sample_rates), "models": rows}


def published_rows(name: str, path: str | Path = TABLES) -> list[dict]:
    """The protocol's published tables as leaderboard rows keyed by this suite's result keys
    (``run`` names the table and protocol; values the source does not print, or that are not transcribed,
    are None)."""
    p = get(name)
    tables = published_tables(path)["tables"]
    rows = []
    for t in p.tables:
        table = tables[t]
        label = f"published: {table.get('label') or table['source'].split(',')[0]} ({name})"
        for r in table["rows"]:
            row = {"run": label, "system": r["system"]}
            for col, key in table["columns"].items():
                v = r.get(col)
                row[key] = float(v) if isinstance(v, int | float) else None
            rows.append(row)
    return rows

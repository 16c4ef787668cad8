"""``train codec``: the codec trained on a folder of clips with SoundStream's multi-scale mel reconstruction loss,
the RVQ commitment loss and quantizer dropout; resumable (``codec_last.pt``) and fine-tunable (``--init``,
``--decoder-only``). The model and its checkpoint format live in ``musiclm_ref.codec``."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from metrics.artifacts import (
    clips_hash,
    manifest_entry,
    read_checkpoint,
    save_checkpoint,
    split_held_out,
    write_manifest_entry,
)
from metrics.io import file_sha256
from musiclm_ref.codec import RESUME_FORMAT, Codec, CodecConfig, CodecError, load_codec, preset

log = logging.getLogger(__name__)


class MelLoss(nn.Module):
    """SoundStream's multi-scale spectral reconstruction loss on mel spectrograms.

    For each window length s: L1 on mel magnitudes + sqrt(s/2)·L2 (over bands, mean over frames)
    on log-mels, averaged over scales. Also used (single-scale, as a distance) for evaluation.
    """

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        import torchaudio.functional as AF

        self.scales = cfg.stft_scales
        for s in self.scales:
            n_mels = min(cfg.n_mels, s // 4)
            fb = AF.melscale_fbanks(s // 2 + 1, 0.0, cfg.sample_rate / 2, n_mels, cfg.sample_rate, norm="slaney", mel_scale="slaney")
            self.register_buffer(f"fb{s}", fb, persistent=False)
            self.register_buffer(f"win{s}", torch.hann_window(s), persistent=False)

    def mel(self, x: Tensor, s: int) -> Tensor:
        spec = torch.stft(x, s, hop_length=s // 4, window=getattr(self, f"win{s}"), return_complex=True).abs()
        return rearrange(spec, "b f t -> b t f") @ getattr(self, f"fb{s}")

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = x.new_zeros(())
        for s in self.scales:
            mx, my = self.mel(x, s), self.mel(y, s)
            l1 = (mx - my).abs().mean()
            l2 = (torch.log(mx + 1e-5) - torch.log(my + 1e-5)).pow(2).sum(-1).clamp(min=1e-8).sqrt().mean()
            total = total + l1 + math.sqrt(s / 2) * l2 / mx.shape[-1] ** 0.5
        return total / len(self.scales)


def log_mel_distance(x: Tensor, y: Tensor, sample_rate: int = 24000, n_fft: int = 1024, n_mels: int = 64) -> Tensor:
    """Mean absolute difference of natural-log mel spectrograms (dB-free, floor 1e-5) per batch item.

    The codec's quality figure: 0 for a perfect reconstruction; ~1 means an average factor e
    (≈ 8.7 dB) error per time-frequency bin.
    """
    import torchaudio.functional as AF

    fb = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney").to(x)
    win = torch.hann_window(n_fft, device=x.device)

    def lm(w):
        spec = torch.stft(w, n_fft, hop_length=n_fft // 4, window=win, return_complex=True).abs()
        return torch.log(rearrange(spec, "b f t -> b t f") @ fb + 1e-5)

    return (lm(x) - lm(y)).abs().mean(dim=(1, 2))


@dataclass
class CodecTrainConfig:
    steps: int = 2000
    batch_size: int = 8
    crop_seconds: float = 0.32  # 16 frames
    warmup_steps: int = 300  # steps without quantization before the k-means init (0 = init at step 0)
    init_crops: int = 64  # crops whose latents initialise the codebooks (k-means)
    lr: float = 5e-4  # at 2e-3 the C=16 encoder's output scale jumped by 100x within 250 steps
    seed: int = 0
    checkpoint_every: int = 50
    eval_clips: int = 8  # held-out clips scored per level (the first by id; the held-out rule picks them)
    threads: int = 1
    # Optional second phase (fine-tuning): start from an existing codec's weights (``init``); with
    # ``decoder_only`` the encoder, its latent statistics and the codebooks are frozen and only the
    # decoder learns, on the quantized latents with quantizer dropout. The tokens stay the same, so
    # stages trained on them stay valid. ``cosine`` decays the learning rate to 0 over the steps
    # (the shipped codec uses it in its single phase).
    init: str | None = None
    decoder_only: bool = False
    cosine: bool = False
    extra: dict = field(default_factory=dict)
    # the run, not the recipe (not recorded in the manifest's train_config: RUN_FIELDS)
    preset: str = "tiny"
    model: CodecConfig | None = None  # overrides the preset (tests use a micro codec)
    device: str = "cpu"
    on_error: str = "raise"
    progress: bool = True
    command: str = ""  # the command line the manifest records


RUN_FIELDS = ("preset", "model", "device", "on_error", "progress", "command")


def random_crops(waves: list[Tensor], n: int, length: int, g: torch.Generator) -> Tensor:
    """``n`` random ``length``-sample crops (zero-padded if a clip is shorter) from random clips."""
    out = torch.zeros(n, length)
    for i in range(n):
        w = waves[int(torch.randint(len(waves), (1,), generator=g))]
        start = int(torch.randint(max(1, len(w) - length + 1), (1,), generator=g))
        piece = w[start : start + length]
        out[i, : len(piece)] = piece
    return out


@torch.no_grad()
def evaluate_levels(codec: Codec, waves: list[Tensor], levels=None) -> dict[int, float]:
    """Mean log-mel distance of reconstructions using the first n levels, for each n in ``levels``."""
    codec.eval()
    levels = levels or range(1, codec.num_quantizers + 1)
    out = {}
    codes = [codec.encode(w) for w in waves]
    for n in levels:
        d = [float(log_mel_distance(w[None].to(codec.device), codec.decode(c[..., :n])[..., : len(w)], codec.sample_rate)[0])
             for w, c in zip(waves, codes)]
        out[int(n)] = float(np.mean(d))
    return out


def train_codec(data_dir: str | Path, out_dir: str | Path, tc: CodecTrainConfig) -> dict:
    """Train (or resume) a codec on the clips of ``data_dir``; writes ``out_dir/codec.pt`` + ``manifest.json``.

    Resumes from ``out_dir/codec_last.pt`` (model, optimizer, step, RNG state) when it exists, so an
    interrupted run continues to the same result. Returns the manifest entry.
    """
    from tqdm.auto import tqdm

    from metrics.audio import load_dir

    preset_name, device = tc.preset, tc.device
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(tc.threads)
    report = load_dir(data_dir, sr=24000, on_error=tc.on_error)
    for s in report.skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    clips = report.clips
    train_ids, held_ids = split_held_out(c.id for c in clips)  # the one held-out rule (metrics.artifacts)
    eval_ids = held_ids[: tc.eval_clips]  # never trained on; the first few are scored
    by_id = {c.id: torch.from_numpy(c.wave) for c in clips}
    train_waves = [by_id[i] for i in train_ids]
    eval_waves = [by_id[i] for i in eval_ids]

    last = out / "codec_last.pt"
    g = torch.Generator().manual_seed(tc.seed)
    cfg = tc.model or preset(preset_name)
    if last.exists():
        state, _ = read_checkpoint(last, RESUME_FORMAT, "a codec resume state", CodecError)
        codec = Codec.from_checkpoint(state["model"], str(last)).train()
        if state["model"]["config"] != asdict(cfg):
            raise CodecError(f"{last}: was trained with another config; use a fresh --out or the same --preset")
        step = int(state["step"])
        g.set_state(state["rng"])
        for layer, st in zip(codec.rvq.layers, state["rvq_rng"]):
            layer.generator.set_state(st)
        log.info("resuming from %s at step %d", last, step)
    elif tc.init:
        codec = load_codec(tc.init).train()
        if asdict(codec.cfg) != asdict(cfg):
            raise CodecError(f"{tc.init}: its config differs from preset {preset_name!r}; fine-tune with the same --preset")
        if not bool(codec.rvq.layers[0].initted):
            raise CodecError(f"{tc.init}: its codebooks were never initialised; train it further instead of fine-tuning")
        torch.manual_seed(tc.seed)
        codec.rvq.seed(tc.seed)
        state, step = None, 0
    else:
        torch.manual_seed(tc.seed)
        codec = Codec(cfg).train()
        codec.rvq.seed(tc.seed)
        state, step = None, 0
    warmup = 0 if tc.init else tc.warmup_steps  # an initialised codec needs no autoencoder warm-up
    codec.to(device)
    if tc.decoder_only:
        codec.encoder.requires_grad_(False)
    length = int(round(tc.crop_seconds * codec.sample_rate / codec.hop_length)) * codec.hop_length

    def kmeans_init():  # SoundStream's k-means init, on more latents than one batch holds
        with torch.no_grad():
            z = codec.encoder(random_crops(train_waves, tc.init_crops, length, g).to(device))
        codec.rvq.fit(z.reshape(-1, z.shape[-1]), iters=10, seed=tc.seed)
    opt = torch.optim.Adam([p for p in codec.parameters() if p.requires_grad], lr=tc.lr, betas=(0.9, 0.99))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    loss_fn = MelLoss(codec.cfg).to(device)
    history: list[dict] = list(state["history"]) if state is not None else []

    def save_last():
        save_checkpoint({"format": RESUME_FORMAT, "model": codec.to_checkpoint(), "optimizer": opt.state_dict(), "step": step,
                         "rng": g.get_state(), "rvq_rng": [layer.generator.get_state() for layer in codec.rvq.layers],
                         "history": history}, last)  # fmt: skip

    bar = tqdm(total=tc.steps, initial=step, desc="codec", disable=not tc.progress)
    while step < tc.steps:
        codec.train()
        if tc.cosine:
            for group in opt.param_groups:
                group["lr"] = tc.lr * 0.5 * (1 + math.cos(math.pi * step / tc.steps))
        x = random_crops(train_waves, tc.batch_size, length, g).to(device)
        if tc.decoder_only:
            n_q = int(torch.randint(1, codec.num_quantizers + 1, (1,), generator=g))
            with torch.no_grad():
                q = codec.rvq.decode(codec.rvq.encode(codec.encoder(x), n_q=n_q))
            recon, commit = codec.decoder(q), x.new_zeros(())
        elif step < warmup:  # plain autoencoder first: the RVQ is initialised on informative latents
            recon, commit, n_q = codec.decoder(codec.encoder(x)), x.new_zeros(()), 0
        else:
            if not bool(codec.rvq.layers[0].initted):
                kmeans_init()
            n_q = int(torch.randint(1, codec.num_quantizers + 1, (1,), generator=g)) if codec.cfg.quantizer_dropout else None
            recon, _, commit = codec(x, n_q=n_q)
        rec = loss_fn(recon, x)
        loss = rec + commit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 10.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(rec=f"{rec.item():.3f}", commit=f"{commit.item():.3f}", n_q=n_q)
        if step % 50 == 0:
            history.append({"step": step, "rec": round(rec.item(), 4), "commit": round(commit.item(), 4)})
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            save_last()
    bar.close()
    if not bool(codec.rvq.layers[0].initted):  # stopped inside the warm-up
        kmeans_init()

    codec.eval()
    metrics = {}
    if eval_waves:
        lv = evaluate_levels(codec, eval_waves)
        metrics = {"held_out_clips": len(eval_waves), "log_mel_distance_by_levels": {str(k): round(v, 4) for k, v in lv.items()}}
    entry = manifest_entry(tc.command, tc.seed, clips_hash(clips), metrics=metrics, preset=preset_name, steps=step,
                           data_clips=len(clips), skipped=[f"{s.path}: {s.reason}" for s in report.skipped],
                           train_config={k: v for k, v in asdict(tc).items() if k not in RUN_FIELDS}, history=history[-5:],
                           parameters=sum(p.numel() for p in codec.parameters()))
    if tc.init:  # the lineage of a fine-tune: which weights it started from
        entry["init_sha256"] = file_sha256(tc.init)
    codec.metadata = entry
    save_checkpoint(codec.cpu().to_checkpoint(entry), out / "codec.pt")
    entry["weights_sha256"] = codec.weights_hash()
    write_manifest_entry(out / "manifest.json", "codec.pt", entry)
    return entry

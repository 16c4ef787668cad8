"""Embedding extraction on CPU: clips/s, real-time factor, and decode/resample overlapped with inference.

Workload: 8 clips × 10 s, 44.1 kHz 16-bit WAV (so every clip is decoded *and* resampled to 16 kHz with
the project's kaiser-sinc filter), through ``metrics.extract.embed_clips`` — serially (``workers=0``) and
with 2 spawned decode workers (``workers=2``: decode + resample run in worker processes while the main
process embeds, since ``ProcessPoolExecutor.map`` submits every file at once). No cache, batch 8.

Embedders:
- ``mel``: the project's weight-free log-mel statistics embedder (numpy).
- ``vggish-size``: VGGish's architecture (Hershey et al. 2017: four conv groups 64-128-256²-512², 3×3,
  max-pool, then FC 4096-4096-128) with random weights, on VGGish's input — non-overlapping 0.96 s
  log-mel patches of 96 frames × 64 bands (25 ms window, 10 ms hop, 125–7500 Hz, log(mel + 0.01)),
  the front end reusing ``MelEmbedder.log_mel``. Its FLOPs per patch are counted with torch's
  ``FlopCounterMode`` and checked against the layer-by-layer formula.

``worker_startup_s``: one spawned worker's time to its first decoded clip (interpreter start, imports,
torch/torchaudio for the resampler) — the fixed cost the overlap has to win back.

Real-time factor (RTF) = wall seconds / audio seconds (below 1 = faster than real time). The
correctness gate: the worker path returns exactly the serial path's embeddings.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from einops import rearrange
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from metrics.audio import load_audio, save_audio
from metrics.embedders import Embedder
from metrics.embedders.mel import MelConfig, MelEmbedder
from metrics.extract import _one_thread_worker, embed_clips, load_in_worker

N_CLIPS, SECONDS, FILE_SR = 8, 10.0, 44100


# ----------------------------------------------------------------------------- a VGGish-size CNN


@dataclass(frozen=True)
class VGGishConfig:
    channels: tuple[int, ...] = (64, 128, 256, 256, 512, 512)
    pool_after: tuple[bool, ...] = (True, True, False, True, False, True)
    patch_frames: int = 96
    n_mels: int = 64
    fc: tuple[int, ...] = (4096, 4096, 128)


class VGGishNet(nn.Module):
    def __init__(self, cfg: VGGishConfig = VGGishConfig()):
        super().__init__()
        layers, c_in = [], 1
        for c_out, pool in zip(cfg.channels, cfg.pool_after):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        n_pool = sum(cfg.pool_after)
        flat = c_in * (cfg.patch_frames >> n_pool) * (cfg.n_mels >> n_pool)
        dims = [flat, *cfg.fc]
        fcs = []
        for i, (a, b) in enumerate(zip(dims, dims[1:])):
            fcs += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(dims) - 2 else [])
        self.head = nn.Sequential(*fcs)
        self.cfg = cfg

    def forward(self, patches):  # [n, 96, 64] → [n, 128]
        x = self.features(rearrange(patches, "n t f -> n 1 t f"))
        return self.head(rearrange(x, "n c t f -> n (c t f)"))


def vggish_flops_per_patch(cfg: VGGishConfig = VGGishConfig()) -> int:
    """2 × multiply-accumulates of every conv and linear layer (what FlopCounterMode counts)."""
    t, f, c_in, macs = cfg.patch_frames, cfg.n_mels, 1, 0
    for c_out, pool in zip(cfg.channels, cfg.pool_after):
        macs += t * f * c_out * c_in * 9
        c_in = c_out
        if pool:
            t, f = t // 2, f // 2
    dims = [c_in * t * f, *cfg.fc]
    macs += sum(a * b for a, b in zip(dims, dims[1:]))
    return 2 * macs


class VGGishSizeEmbedder(Embedder):
    """One 128-d frame per 0.96 s patch; all patches of a batch go through the CNN together."""

    name = "vggish-size"
    id = "vggish-size-random-init"
    sample_rate = 16000
    dim = 128
    min_seconds = 0.96

    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        self.net = VGGishNet().eval()
        self.frontend = MelEmbedder(MelConfig(f_min=125.0, f_max=7500.0, log_floor=0.01))

    def patches(self, wave: np.ndarray) -> np.ndarray:
        logmel = self.frontend.log_mel(wave)
        n = len(logmel) // self.net.cfg.patch_frames
        return logmel[: n * self.net.cfg.patch_frames].reshape(n, self.net.cfg.patch_frames, -1).astype(np.float32)

    def embed_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        patches = [self.patches(w) for w in waves]
        with torch.no_grad():
            out = self.net(torch.from_numpy(np.concatenate(patches))).numpy()
        return np.split(out, np.cumsum([len(p) for p in patches])[:-1])

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.embed_batch([wave])[0]


# ----------------------------------------------------------------------------- benchmarks


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * FILE_SR)) / FILE_SR
    paths = []
    for i in range(N_CLIPS):
        tone = 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t) + 0.05 * rng.standard_normal(len(t))
        paths.append(save_audio(root / f"clip{i:02d}.wav", tone.astype(np.float32), FILE_SR))
    return paths


EMBEDDERS = {"mel": lambda: MelEmbedder(), "vggish-size": lambda: VGGishSizeEmbedder()}


@pytest.mark.parametrize("name", sorted(EMBEDDERS))
def test_extraction_serial_vs_workers(benchmark, corpus, name):
    embedder = EMBEDDERS[name]()
    audio_s = N_CLIPS * SECONDS
    t0 = time.perf_counter()
    waves = [load_audio(p, sr=embedder.sample_rate).wave for p in corpus]
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    embedder.embed_batch(waves)
    infer_s = time.perf_counter() - t0
    t0 = time.perf_counter()  # what a pool costs before its first clip: spawn, imports, first resample
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread_worker) as pool:
        pool.submit(load_in_worker, str(corpus[0]), embedder.sample_rate).result()
    startup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    serial = embed_clips(corpus, embedder, batch_size=8)
    serial_s = time.perf_counter() - t0
    benchmark.group = f"extract {name}"
    parallel = benchmark.pedantic(embed_clips, args=(corpus, embedder), kwargs={"batch_size": 8, "workers": 2},
                                  rounds=1, iterations=1)
    assert list(parallel) == list(serial)
    for k in serial:
        np.testing.assert_array_equal(parallel[k], serial[k])
    workers_s = benchmark.stats.stats.min
    info = {
        "clips": N_CLIPS, "seconds_per_clip": SECONDS, "file_sr": FILE_SR, "frames": serial.n_frames,
        "decode_resample_s": decode_s, "inference_s": infer_s, "worker_startup_s": startup_s,
        "serial_s": serial_s, "workers2_s": workers_s,
        "clips_per_s_serial": N_CLIPS / serial_s, "clips_per_s_workers2": N_CLIPS / workers_s,
        "rtf_serial": serial_s / audio_s, "rtf_workers2": workers_s / audio_s,
        "overlap_speedup": serial_s / workers_s,
    }
    if isinstance(embedder, VGGishSizeEmbedder):
        patch = torch.zeros(1, 96, 64)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            embedder.net(patch)
        flops = counter.get_total_flops()
        assert flops == vggish_flops_per_patch(), (flops, vggish_flops_per_patch())  # the FLOP figure is right
        total = flops * serial.n_frames
        info.update({"gflop_per_patch": flops / 1e9, "parameters": sum(p.numel() for p in embedder.net.parameters()),
                     "gflops_inference_only": total / infer_s / 1e9, "gflops_workers2": total / workers_s / 1e9})
    benchmark.extra_info.update(info)

"""Stage training straight from audio: streamed crops → frozen tokenizers → a stage batch.

The token-corpus path (``train.stages.token_corpus``) tokenizes a corpus once and trains on crops of the
cached tokens; that fits the shipped tiny set but not a real collection at the paper's crop lengths.
Here the crop comes first, as in the paper: ``AudioFolder`` streams random crops of the stage's
length, ``Tokenizers`` turns each batch of crops into the tokens the stage reads (semantic tokens,
acoustic codes, MuLan M_A of the crop, melody tokens — each only where the stage uses it), and
``StreamingBatches`` is the ``fit_stage`` batch source that does both and tracks the data position.
A crop spans the whole stage context, so ``sample_batch`` takes each crop once, from its start.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from musiclm_ref.data.folder import AudioFolder, Crop, FolderError
from musiclm_ref.stages import Stage, TokenSpec
from musiclm_ref.token_corpus import StageRun, TokenCorpus, sample_batch

log = logging.getLogger(__name__)
NEEDS = {"semantic": ("semantic", "mulan", "melody"), "coarse": ("semantic", "acoustic", "mulan"), "fine": ("acoustic",)}


@dataclass
class Tokenizers:
    """The frozen models that make a stage's tokens (the same ones ``prepare_tokens`` uses)."""

    codec: object
    tokenizer: object
    mulan: object
    mulan_rvq: object
    melody: object | None
    sample_rate: int = 24000

    @property
    def spec(self) -> TokenSpec:
        from musiclm_ref.token_corpus import token_spec

        return token_spec(self.codec, self.tokenizer, self.mulan_rvq, self.melody)

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray], ids: list[str], stage: str) -> TokenCorpus:
        """Equal-length crops → a TokenCorpus of them; token types the stage does not read are zeros."""
        spec, n = self.spec, len(waves)
        seconds = len(waves[0]) / self.sample_rate
        ts, ta = int(round(seconds * spec.semantic_rate)), int(round(seconds * spec.acoustic_rate))
        need = NEEDS[stage]
        semantic = torch.zeros(n, ts, dtype=torch.long)
        acoustic = torch.zeros(n, ta, spec.acoustic_levels, dtype=torch.long)
        mulan = torch.zeros(n, spec.mulan_levels, dtype=torch.long)
        melody = None
        if "semantic" in need:
            semantic = torch.stack([torch.from_numpy(self.tokenizer.tokenize(w, self.sample_rate)[:ts]) for w in waves])
        if "acoustic" in need:
            device = next(self.codec.parameters()).device
            acoustic = self.codec.encode(torch.from_numpy(np.stack(waves)).to(device))[:, :ta].cpu()
        if "mulan" in need:
            mulan = self.mulan_rvq.encode(torch.from_numpy(self.mulan.embed_audio(list(waves), self.sample_rate)).float()).cpu()
        if "melody" in need and self.melody is not None:
            starts = list(range(0, max(1, math.floor(seconds) - 3)))  # a window at every whole second (prepare_tokens)
            melody = torch.stack([self.melody.tokens(w, self.sample_rate, starts) for w in waves])
        chroma = None
        if stage == "coarse":  # what a chroma=True coarse stage reads (cheap: an STFT per crop)
            from musiclm_ref.chroma import chroma_tokens

            chroma = torch.stack([torch.from_numpy(chroma_tokens(w, self.sample_rate, ts)) for w in waves])
        return TokenCorpus(ids=list(ids), semantic=semantic, acoustic=acoustic, mulan=mulan, melody=melody, spec=spec,
                           chroma=chroma)


def _identity(x):
    return x


class StreamingBatches:
    """``fit_stage`` batch source: ``batch`` crops per step from this rank's ``AudioFolder``.

    ``num_workers`` DataLoader processes decode ahead; the data position (epoch, next position) counts
    the crops actually used, so ``state_dict`` / ``load_state_dict`` resume mid-epoch exactly. Failed
    files raise (``on_error='raise'``) or go to ``skipped`` and, when given, a JSON-lines ``skip_log``.
    Like the token-corpus source, every rank draws the conditioning-dropout masks of the *global* batch
    from ``fit_stage``'s shared generator and keeps its rows, so W processes with B/W crops each follow
    the one-process run with B crops exactly (as long as no file fails: a skipped file shifts one
    rank's positions).
    """

    def __init__(self, folder: AudioFolder, tokenizers: Tokenizers, batch: int, num_workers: int = 0,
                 on_error: str = "raise", skip_log: str | Path | None = None):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.folder, self.tokenizers, self.batch = folder, tokenizers, int(batch)
        self.num_workers, self.on_error = int(num_workers), on_error
        self.skip_log = Path(skip_log) if skip_log else None
        self.epoch = self.position = 0
        self.skipped: list[dict] = []
        self._it = None
        self._used_this_epoch = 0

    def _next(self) -> Crop:
        while True:
            if self._it is None:
                self.folder.epoch, self.folder.start = self.epoch, self.position
                # its own generator: a DataLoader iterator otherwise draws its base seed from torch's global RNG,
                # which dropout also draws from, and a resumed run (a new iterator) would then diverge
                loader = DataLoader(self.folder, batch_size=None, num_workers=self.num_workers, collate_fn=_identity,
                                    generator=torch.Generator().manual_seed(self.epoch))
                self._it = iter(loader)
            try:
                crop = next(self._it)
            except StopIteration:
                if not self._used_this_epoch and self.position == len(self.folder):
                    raise FolderError(f"{self.folder.root}: no readable file in rank {self.folder.rank}'s share "
                                      f"({len(self.folder)} files, {len(self.skipped)} skipped)") from None
                self._it, self.epoch, self.position, self._used_this_epoch = None, self.epoch + 1, 0, 0
                continue
            self.position = crop.position + 1
            if crop.error is None:
                self._used_this_epoch += 1
                return crop
            self._report(crop)

    def _report(self, crop: Crop) -> None:
        if self.on_error == "raise":
            raise FolderError(f"{crop.path}: {crop.error} (use --on-error skip to skip such files with a report)")
        entry = {"path": crop.path, "reason": crop.error, "epoch": crop.epoch, "rank": self.folder.rank}
        log.warning("skipping %s: %s", crop.path, crop.error)
        self.skipped.append(entry)
        if self.skip_log is not None:
            with self.skip_log.open("a") as f:
                f.write(json.dumps(entry) + "\n")

    def crops(self, n: int) -> list[Crop]:
        return [self._next() for _ in range(n)]

    def __call__(self, stage: Stage, g: torch.Generator, ctx) -> tuple:
        crops = self.crops(self.batch)
        corpus = self.tokenizers([c.wave for c in crops], [c.id for c in crops], stage.config.stage)
        # global row j = rank r's crop j // W when j % W == r (the folder's shard rule); other rows are
        # placeholders whose only purpose is to draw their masks, and ctx.shard drops them
        w, r = ctx.world, ctx.rank
        rows = torch.tensor([j // w if j % w == r else 0 for j in range(self.batch * w)])
        return ctx.shard(*sample_batch(stage, corpus, len(rows), g, rows=rows))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "skipped": len(self.skipped)}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.epoch, self.position = int(state["epoch"]), int(state["position"])
            self._it, self._used_this_epoch = None, 1  # crops were used before the checkpoint


def _good_crops(folder: AudioFolder, limit: int, report) -> list[Crop]:
    """Up to ``limit`` readable crops of one pass over ``folder`` (failures go to ``report``)."""
    out = []
    for crop in folder:
        if crop.error is not None:
            report(crop)
        elif len(out) < limit:
            out.append(crop)
        if len(out) >= limit:
            break
    return out


def streaming_run(data, out: Path, components: Path, mulan_path: Path, preset: str, seed: int, ctx, on_error: str,
                  num_workers: int, hf_model, progress: bool, eval_crops: int = 64, rvq_files: int = 512) -> StageRun:
    """What ``train_stages`` needs to train from a folder tree: the token spec, the hashes for the manifest,
    and per stage a ``StreamingBatches`` source (this rank's share of the training files) and a held-out
    TokenCorpus (rank 0). Held-out files: the one held-out rule on file ids (``metrics.artifacts.split_held_out``);
    a missing ``out/mulan_rvq.pt`` is fitted by rank 0 on 10 s crops of up to ``rvq_files`` training files."""
    from metrics.artifacts import HELD_OUT_RULE, ids_sha256, split_held_out
    from metrics.io import file_sha256
    from musiclm_ref.codec import load_codec
    from musiclm_ref.data.folder import file_id, scan_tree
    from musiclm_ref.melody import load_melody
    from musiclm_ref.mulan import load_mulan
    from musiclm_ref.pipeline import SAMPLE_RATE, load_mulan_rvq
    from musiclm_ref.semantic import load_tokenizer
    from musiclm_ref.train.mulan_rvq import save_fitted

    root = Path(data)
    files = scan_tree(root)
    by_id = {file_id(p, root): p for p in files}
    train_ids, held_ids = split_held_out(by_id)
    train_files, held_files = [by_id[i] for i in train_ids], [by_id[i] for i in held_ids]
    codec = load_codec(components / "codec.pt", ctx.device).eval()
    tokenizer = load_tokenizer(components / "semantic_tokenizer.pt", hf_path=hf_model, device=ctx.device)
    mulan = load_mulan(mulan_path, ctx.device)
    melody_file = out / "melody.pt" if (out / "melody.pt").is_file() else components / "melody.pt"
    melody = load_melody(melody_file) if melody_file.is_file() else None
    train_folder = AudioFolder(root, 10.0, SAMPLE_RATE, files=train_files, seed=seed)
    rvq_path = out / "mulan_rvq.pt"
    reporter = StreamingBatches(train_folder, None, 0, on_error=on_error)  # only its skip report is used here
    if ctx.is_main and not rvq_path.is_file():
        fit_folder = AudioFolder(root, 10.0, SAMPLE_RATE, files=train_files[:rvq_files], seed=seed)
        waves = [c.wave for c in _good_crops(fit_folder, rvq_files, reporter._report)]
        save_fitted(mulan, waves, out, preset, seed, "ids:" + fit_folder.ids_hash(),
                    f"fitted by `musiclm-eval train stage --stream` on 10 s crops of {len(waves)} files of {root}")
    ctx.barrier()
    rvq_sha = file_sha256(rvq_path)
    toks = Tokenizers(codec, tokenizer, mulan, load_mulan_rvq(rvq_path), melody, SAMPLE_RATE)
    hashes = {"data_hash": "ids:" + train_folder.ids_hash(), "codec_tokens_sha256": codec.tokens_hash(),
              "tokenizer_id": tokenizer.id, "mulan_sha256": mulan.weights_sha256, "mulan_rvq_sha256": rvq_sha,
              "melody_sha256": file_sha256(melody_file) if melody is not None else None,
              "codec_sha256": file_sha256(components / "codec.pt")}
    info = {"data_dir": str(root), "train_files": len(train_files), "held_out_files": len(held_files),
            "held_out_ids_sha256": ids_sha256(held_ids) if held_ids else None, "held_out_rule": HELD_OUT_RULE}

    def source(stage: Stage, local_batch: int) -> StreamingBatches:
        folder = AudioFolder(root, stage.config.crop_seconds, SAMPLE_RATE, files=train_files, seed=seed, rank=ctx.rank, world=ctx.world)
        log_path = out / f"skipped-{stage.config.stage}-rank{ctx.rank}.jsonl"
        return StreamingBatches(folder, toks, local_batch, num_workers, on_error, skip_log=log_path)

    def held_out(stage: Stage) -> TokenCorpus | None:
        if not ctx.is_main or not held_files:
            return None
        folder = AudioFolder(root, stage.config.crop_seconds, SAMPLE_RATE, files=held_files, seed=seed + 1)
        crops = _good_crops(folder, eval_crops, reporter._report)
        return toks([c.wave for c in crops], [c.id for c in crops], stage.config.stage) if crops else None

    return StageRun(spec=toks.spec, hashes=hashes, info=info, corpus=None, source=source, held_out=held_out)

"""Stages + pipeline: token layouts, training, generation, windows, story mode, CLI, checkpoints.

The fixture builds a complete *micro* checkpoint set from the 24-clip test corpus (random codec with
a k-means-initialised RVQ, a fitted semantic tokenizer, an untrained MuLan with a fitted RVQ, micro
stages trained a few steps), so every test exercises the real loaders and the real sampling code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclm_ref.pipeline import SAMPLE_RATE, MusicLM, PipelineError, save_mulan_rvq
from musiclm_ref.stages import NULL, SEP, Stage, StageError, load_stage, stage_config, vocabulary
from musiclm_ref.token_corpus import prepare_tokens
from musiclm_ref.train.stage import StageTrainConfig, fit_stage

MICRO = dict(depth=1, dim=32, heads=2, ff_dim=32)
CROPS = {"semantic": 2.0, "coarse": 1.0, "fine": 0.5}  # short crops so a few seconds already need windows


def micro_stage(name, spec):
    cfg = stage_config(name, "tiny", spec, transformer=MICRO)
    from dataclasses import replace

    return Stage(replace(cfg, crop_seconds=CROPS[name]))


@pytest.fixture(scope="module")
def micro(small_corpus, tmp_path_factory):
    from metrics.audio import load_dir
    from musiclm_ref.codec import Codec
    from musiclm_ref.codec import preset as codec_preset
    from musiclm_ref.mulan import MuLan, MulanConfig, save_mulan
    from musiclm_ref.quantize import ResidualVQ
    from musiclm_ref.train.semantic import fit_tokenizer

    torch.manual_seed(0)
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("micro")
    clips = load_dir(small_corpus, SAMPLE_RATE).clips
    codec = Codec(codec_preset("tiny")).eval()
    with torch.no_grad():
        z = codec.encoder(torch.from_numpy(np.stack([c.wave for c in clips[:6]])))
    codec.rvq.fit(z.reshape(-1, z.shape[-1]), iters=3)
    torch.save(codec.to_checkpoint(), d / "codec.pt")
    tok = fit_tokenizer([(c.wave, SAMPLE_RATE) for c in clips[:6]], k=16, iters=3)
    tok.save(d / "semantic_tokenizer.pt")
    mulan = MuLan(MulanConfig()).eval()
    save_mulan(mulan, d / "mulan.pt")
    rvq = ResidualVQ(128, 12, 4).fit(torch.from_numpy(mulan.embed_audio([c.wave for c in clips], SAMPLE_RATE)), iters=3)
    save_mulan_rvq(rvq, d / "mulan_rvq.pt")
    corpus = prepare_tokens(small_corpus, codec, tok, mulan, rvq, None, progress=False)
    stages = []
    for name in ("semantic", "coarse", "fine"):
        st = micro_stage(name, corpus.spec)
        meta = {"codec_sha256": __import__("hashlib").sha256((d / "codec.pt").read_bytes()).hexdigest()}
        fit_stage(st, corpus, StageTrainConfig(steps=3, batch=4, warmup=1), d / f"{name}_stage.pt", progress=False, metadata=meta)
        stages.append(st)
    return {"dir": d, "corpus": corpus, "lm": MusicLM.from_pretrained(d), "clips": clips}


def test_vocabularies_are_contiguous_disjoint_and_paper_sized():
    for name in ("semantic", "coarse", "fine"):
        voc = vocabulary(stage_config(name))
        blocks = sorted(voc.values())
        assert blocks[0][0] == 3  # after PAD, NULL, SEP
        assert all(a + n == b for (a, n), (b, _) in zip(blocks, blocks[1:]))
    coarse = vocabulary(stage_config("coarse"))
    assert [k for k in coarse if k.startswith("acoustic")] == [f"acoustic{i}" for i in range(4)]
    assert len([k for k in coarse if k.startswith("mulan")]) == 12 and coarse["semantic"][1] == 1024
    assert [k for k in vocabulary(stage_config("fine")) if k.startswith("acoustic")] == [f"acoustic{i}" for i in range(12)]
    assert {k: v for k, v in stage_config("semantic").__dict__.items() if k == "crop_seconds"} == {"crop_seconds": 30.0}
    assert (stage_config("coarse").crop_seconds, stage_config("fine").crop_seconds) == (10.0, 3.0)


def test_acoustic_tokens_are_flattened_frame_major_and_decode_back(micro):
    spec = micro["corpus"].spec
    st = micro_stage("coarse", spec)
    codes = torch.randint(0, spec.acoustic_codebook, (2, 5, 4))
    cond = st.conditioning(2, None, None)
    seq = st.prompt(cond, st.semantic_context(torch.zeros(2, 3, dtype=torch.long)), prefix=codes)
    body = seq[:, cond.shape[1] + 3 + 1 :]
    assert seq[0, cond.shape[1] + 3] == SEP and (cond == NULL).all()
    assert torch.equal(st.decode_targets(body), codes)
    ranges = st.target_ranges(5)
    assert all(lo <= int(t) < hi for t, (lo, hi) in zip(body[0], ranges))  # level l of frame t sits at 4t + l
    fine = micro_stage("fine", spec)
    assert fine.target_ranges(1) == [fine.range_of(f"acoustic{i}") for i in range(4, 12)]
    with pytest.raises(StageError, match=r"acoustic codes must lie in \[0, 256\)"):
        st.prompt(cond, st.semantic_context(torch.zeros(2, 3, dtype=torch.long)), prefix=codes + 256)


def test_training_reduces_held_out_loss_and_resumes_exactly(micro, tmp_path):
    from musiclm_ref.train.stage import evaluate_stage

    corpus = micro["corpus"]
    torch.manual_seed(1)
    st = micro_stage("semantic", corpus.spec)
    before = evaluate_stage(st, corpus, batches=2, batch=8)
    fit_stage(st, corpus, StageTrainConfig(steps=40, batch=8, warmup=5, lr=5e-3), progress=False)
    assert evaluate_stage(st, corpus, batches=2, batch=8) < before - 0.3
    # a finished checkpoint is picked up again: more steps continue from its weights and step count
    torch.manual_seed(2)
    a = micro_stage("fine", corpus.spec)
    fit_stage(a, corpus, StageTrainConfig(steps=4, batch=4, warmup=2), tmp_path / "a.pt", progress=False)
    w4 = {k: v.clone() for k, v in a.net.state_dict().items()}
    b = micro_stage("fine", corpus.spec)  # fresh weights: must be replaced by the checkpoint's
    fit_stage(b, corpus, StageTrainConfig(steps=6, batch=4, warmup=2), tmp_path / "a.pt", progress=False)
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    assert ckpt["metadata"]["step"] == 6 and ckpt["metadata"]["train_state"] is None
    moved = [float((b.net.state_dict()[k] - w4[k]).abs().max()) for k in w4 if w4[k].is_floating_point()]
    assert 0 < max(moved) < 0.1  # two more small steps from step-4 weights, not a restart


def test_generate_shape_dtype_and_seed_determinism(micro):
    lm = micro["lm"]
    a = lm.generate(["a calm piano melody", "loud rock drums", "a flute"], seconds=1.5, seed=3)
    assert a.shape == (3, int(1.5 * SAMPLE_RATE)) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, lm.generate(["a calm piano melody", "loud rock drums", "a flute"], seconds=1.5, seed=3))
    assert not np.array_equal(a, lm.generate(["a calm piano melody", "loud rock drums", "a flute"], seconds=1.5, seed=4))
    with pytest.raises(PipelineError, match="seconds must be positive"):
        lm.generate(["x"], seconds=0)


def test_long_generation_has_the_requested_length_and_no_clicks_at_window_joins(micro):
    lm = micro["lm"]
    seconds = 3.3  # > 3 coarse crops, > 1 semantic crop: several windows in every stage
    w = lm.generate(["a piano"], seconds=seconds, seed=0)[0]
    assert w.shape == (int(round(seconds * SAMPLE_RATE)),)
    jumps = np.abs(np.diff(w))
    crop = lm.coarse.config.frames
    joins = [f * 480 for f in range(crop, int(seconds * 50), crop // 2)]  # coarse window starts (samples)
    near = np.concatenate([jumps[max(0, j - 3) : j + 3] for j in joins])
    assert near.max() <= 3 * np.quantile(jumps, 0.999) + 1e-6


def test_story_mode_switches_conditioning_at_the_given_times(micro):
    lm = micro["lm"]
    a, b, c = lm.text_tokens(["a calm piano", "heavy metal guitar", "jazz trumpet"]).split(1)
    assert not torch.equal(a, b) or not torch.equal(a, c)
    ab = lm.semantic_tokens([(a, 30), (b, 45)], seed=5)
    ac = lm.semantic_tokens([(a, 30), (c, 45)], seed=5)
    assert ab.shape == (1, 75)
    assert torch.equal(ab[:, :30], ac[:, :30])  # before the switch: identical
    # After it, every window is generated under the new caption's tokens. Checked on the conditioning
    # each window receives (a spy that calls through), not on sampled tokens: a micro model may sample
    # the same tokens under two captions.
    windows = []
    real = lm._semantic_window

    def spy(cond, hist, n_new, g, cfg):
        start = sum(n for _, n, _ in windows)
        windows.append((start, n_new, cond.clone()))
        return real(cond, hist, n_new, g, cfg)

    lm._semantic_window = spy
    try:
        again = lm.semantic_tokens([(a, 30), (b, 45)], seed=5)
    finally:
        del lm._semantic_window
    assert torch.equal(again, ab)
    cond_a, cond_b = (lm.semantic.conditioning(1, x, None, lm.device) for x in (a, b))
    assert not torch.equal(cond_a, cond_b)
    for start, n_new, cond in windows:
        assert start + n_new <= 30 or start >= 30  # no window straddles the switch
        assert torch.equal(cond, cond_a if start < 30 else cond_b), (start, n_new)
    assert {start >= 30 for start, _, _ in windows} == {False, True}
    story = lm.generate_story([("a calm piano", 1.2), ("heavy metal guitar", 1.0)], seed=5)
    assert story.shape == (int(2.2 * SAMPLE_RATE),)
    with pytest.raises(PipelineError, match="each segment must be"):
        lm.generate_story([("x", 0)])


def test_unconditional_and_skip_semantic_options(micro):
    lm = micro["lm"]
    cond = lm.generate(["a piano", "drums"], seconds=1.0, seed=1)[:1]
    unc = lm.generate(["a piano", "drums"], seconds=1.0, seed=1, drop_conditioning=True, ids=["a", "b"])
    unc2 = lm.generate(["completely different words", "x"], seconds=1.0, seed=1, drop_conditioning=True, ids=["a", "b"])
    assert unc.shape == (2, SAMPLE_RATE) and np.array_equal(unc, unc2)  # the captions are really dropped
    # the text's MuLan tokens reach the model (whether a barely trained micro stage then samples other
    # tokens from the same uniforms is chance, so the audio is not compared)
    sem = lm.semantic
    with torch.no_grad():
        logits_text = sem(sem.prompt(sem.conditioning(1, lm.text_tokens(["a piano"]), None)))[:, -1]
        logits_null = sem(sem.prompt(sem.conditioning(1, None, None)))[:, -1]
    assert not torch.allclose(logits_text, logits_null)
    skip = lm.generate(["a piano", "drums"], seconds=1.0, seed=1, skip_semantic=True)[:1]
    assert skip.shape == cond.shape and not np.array_equal(skip, cond)


def test_semantic_continuation_is_greedy_and_continues_the_prompt(micro):
    lm, corpus = micro["lm"], micro["corpus"]
    prompt, cond = corpus.semantic[:3, :20], corpus.mulan[:3]
    new = lm.semantic_continuation(cond, prompt, 12)
    assert new.shape == (3, 12) and new.min() >= 0 and new.max() < corpus.spec.semantic_codebook
    assert torch.equal(new, lm.semantic_continuation(cond, prompt, 12, seed=99))  # greedy: the seed is irrelevant
    # the first new token is the argmax of the model's next-token logits after [cond SEP prompt]
    st = lm.semantic
    logits = st(st.prompt(st.conditioning(3, cond, None), prefix=prompt))[:, -1]
    lo, hi = st.range_of("semantic")
    assert torch.equal(new[:, 0], logits[:, lo:hi].argmax(-1))


def test_from_pretrained_errors_name_the_file(micro, tmp_path):
    d = tmp_path / "set"
    shutil.copytree(micro["dir"], d)
    (d / "fine_stage.pt").unlink()
    with pytest.raises(PipelineError, match=r"missing fine_stage\.pt"):
        MusicLM.from_pretrained(d)
    shutil.copy(micro["dir"] / "fine_stage.pt", d / "fine_stage.pt")
    ck = torch.load(d / "coarse_stage.pt", weights_only=True)
    ck["metadata"]["codec_sha256"] = "0" * 64
    torch.save(ck, d / "coarse_stage.pt")
    with pytest.raises(PipelineError, match=r"coarse_stage\.pt: trained on acoustic tokens of another codec"):
        MusicLM.from_pretrained(d)
    # the token interface decides: a decoder-only change keeps the stages valid, an encoder change does not
    from musiclm_ref.codec import load_codec

    codec = load_codec(d / "codec.pt")
    ck["metadata"]["codec_tokens_sha256"] = codec.tokens_hash()
    torch.save(ck, d / "coarse_stage.pt")
    fine = torch.load(d / "fine_stage.pt", weights_only=True)
    fine["metadata"]["codec_tokens_sha256"] = codec.tokens_hash()
    torch.save(fine, d / "fine_stage.pt")
    with torch.no_grad():
        codec.decoder.net[-1].conv.bias.add_(0.01)
    torch.save(codec.to_checkpoint(), d / "codec.pt")
    MusicLM.from_pretrained(d)  # file sha differs, tokens hash matches
    with torch.no_grad():
        codec.encoder.net[0].conv.bias.add_(0.01)
    torch.save(codec.to_checkpoint(), d / "codec.pt")
    with pytest.raises(PipelineError, match=r"coarse_stage\.pt: trained on acoustic tokens of another codec"):
        MusicLM.from_pretrained(d)
    (d / "coarse_stage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(StageError, match=r"coarse_stage\.pt: unreadable checkpoint"):
        load_stage(d / "coarse_stage.pt")
    with pytest.raises(PipelineError, match="checkpoint directory not found"):
        MusicLM.from_pretrained(tmp_path / "nope")


def test_generate_cli_writes_one_wav_per_caption_id(micro, tmp_path):
    from click.testing import CliRunner

    from benchmarks.cli import main
    from metrics.audio import load_audio

    csv = tmp_path / "caps.csv"
    csv.write_text('ytid,caption\nabc,"a piano, slow"\nxyz,drums\n')
    out = tmp_path / "gen"
    r = CliRunner().invoke(main, ["generate", "--checkpoint", str(micro["dir"]), "--captions", str(csv),
                                  "--seconds", "0.6", "--clips", str(out), "--json", "-"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["abc.wav", "xyz.wav"]
    assert load_audio(out / "abc.wav").wave.shape == (int(0.6 * SAMPLE_RATE),)
    assert json.loads(r.output)["n"] == 2
    r = CliRunner().invoke(main, ["generate", "--checkpoint", str(micro["dir"]), "--clips", str(out)])
    assert r.exit_code != 0 and "exactly one of --captions" in r.output


def test_token_rates_agree_with_the_models_that_make_the_tokens():
    """The stages' token rates and level split must be the codec's and the tokenizer's, for both presets:
    a change in one module that the others do not follow fails here (not a restatement of defaults)."""
    from musiclm_ref import codec, semantic
    from musiclm_ref.stages import STAGES, TokenSpec, stage_config

    t = TokenSpec()
    for name in ("paper", "tiny"):
        cfg = codec.preset(name)
        assert cfg.frame_rate == t.acoustic_rate  # 24 kHz / prod(strides)
        assert t.coarse_levels + t.fine_levels == cfg.num_quantizers == t.acoustic_levels
        for stage in STAGES:
            sc = stage_config(stage, name)
            # a crop of audio gives exactly the frames the stage generates, through the real tokenizers
            n = int(sc.crop_seconds * cfg.sample_rate)
            want = semantic.n_frames(n, cfg.sample_rate) if stage == "semantic" else -(-n // cfg.hop_length)
            assert sc.frames == want, (name, stage)
    assert semantic.n_frames(24000 * 10, 24000) * 2 == 10 * t.acoustic_rate  # 25 Hz is half the codec rate
    # the paper's crops (30 s semantic, 10 s coarse, 3 s fine; docs/protocol.md) and its vocabularies
    assert [stage_config(s).frames for s in ("semantic", "coarse", "fine")] == [750, 500, 150]
    assert (t.mulan_codebook, t.melody_levels, t.melody_codebook) == (1024, 24, 512)


SHIPPED = Path(__file__).resolve().parents[1] / "musiclm_ref" / "checkpoints" / "tiny"


def test_shipped_tiny_model_generates_ten_seconds():
    """A missing or unloadable shipped checkpoint fails here (nothing is skipped)."""
    lm = MusicLM.from_pretrained()
    w = lm.generate(["a calm solo piano melody, slow tempo"], seconds=10, seed=0)
    assert w.shape == (1, 240000) and np.isfinite(w).all() and w.std() > 1e-3

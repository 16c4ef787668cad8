"""The memorization runs behind ``musiclm-eval memorization sweep|audit`` (and the demo's sweep).

It lives in ``benchmarks/`` because ``run_sweep`` drives the reference model (``musiclm_ref``), which
``metrics/`` must not import; ``run_audit`` is the model-agnostic audit with the CLI's default matchers.
The click commands (``benchmarks/cli/memorization.py``) only parse flags and print.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

from metrics.memorization import (  # noqa: E402
    DEFAULT_CLIP_FPR,
    DEFAULT_FPR,
    DEFAULT_TAU_CONFIDENCE,
    PROMPT_LENGTHS,
    WINDOW_TOKENS,
    Example,
    LevelConfig,
    MemorizationError,
    get_tokenizer,
    plot_match_rate,
    prompt_sweep,
    select_examples,
    write_outputs,
)
from metrics.memorization.pipeline import audit_dirs  # noqa: E402


def run_audit(generated: str | Path, train: str | Path, out: str | Path, tokenizer: str = "semantic-ref",
              fpr: float = DEFAULT_CLIP_FPR, window_s: float = WINDOW_TOKENS / 25, gen_hop_s: float = 1.0,
              train_hop_s: float = 0.04, eps: float | None = None, seed: int = 0, on_error: str = "raise",
              device: str = "cpu", level: LevelConfig = LevelConfig(), phases: int = 4, engine=None,
              embedders: tuple[str, ...] = ("mel",), null: str | Path | None = None, detect: int = 20,
              max_null: int = 200, heldout: float = 0.5, min_entropy_bits: float = 1.0, pooling: str = "centred",
              tau_confidence: float | None = DEFAULT_TAU_CONFIDENCE, cache=None, search_correction: bool = True) -> dict:
    """The audit with the semantic-token matcher and one embedding matcher per ``embedders`` (library:
    :func:`metrics.memorization.pipeline.audit_dirs`); ``cache``: an ``EmbeddingCache`` the features go
    through (a rerun after a kill resumes from it); ``search_correction``: τ's searched-windows correction
    (:mod:`metrics.memorization.calibration`)."""
    matchers = [tokenizer] + [f"embedding:{e}" for e in embedders if e and e != "none"]
    kw = {} if eps is None else {"eps": eps}
    return audit_dirs(generated, train, out, matchers, null, on_error, fpr=fpr, window_s=window_s, gen_hop_s=gen_hop_s,
                      train_hop_s=train_hop_s, level=level, phases=phases, seed=seed, heldout=heldout, max_null=max_null,
                      detect=detect, device=device, engine=engine, min_entropy_bits=min_entropy_bits, pooling=pooling,
                      tau_confidence=tau_confidence, cache=cache, search_correction=search_correction, **kw)


def load_examples(train: str | Path, model, tokenizer, on_error: str = "raise") -> list[Example]:
    """Training clips → (M_A audio tokens, semantic tokens) with the model's own conditioning."""
    from metrics.audio import load_dir

    report = load_dir(train, on_error=on_error)
    if not report.clips:
        raise MemorizationError(f"{train}: no usable audio clips")
    out = []
    for c in report.clips:
        cond = model.audio_tokens([c.wave], c.sr)[0].cpu().numpy()
        out.append(Example(c.id, cond, np.asarray(tokenizer.tokenize(c.wave, c.sr), dtype=np.int64)))
    return out


def run_sweep(checkpoint: str | Path | None, train: str | Path, out: str | Path, n: int | None = None,
              prompt_lengths=PROMPT_LENGTHS, fpr: float = DEFAULT_FPR, n_new: int = WINDOW_TOKENS,
              tokenizer: str | None = None, seed: int = 0, on_error: str = "raise", device: str = "cpu") -> dict:
    """The paper's sweep with the reference MusicLM's greedy ``semantic_continuation``."""
    import torch

    from musiclm_ref.pipeline import MusicLM

    model = MusicLM.from_pretrained(checkpoint, device=device)
    tok = get_tokenizer(tokenizer) if tokenizer else (getattr(model, "tokenizer", None) or get_tokenizer("semantic-ref"))
    trained_on = model.semantic.metadata.get("tokenizer_id")
    if trained_on and tok.id != trained_on:  # prompts cut with other tokens would be continued as if they were its own
        raise MemorizationError(f"tokenizer {tok.id} is not the one the semantic stage of {checkpoint or 'the shipped set'} "
                                f"was trained on ({trained_on}); leave --tokenizer out to use the model's")
    examples = select_examples(load_examples(train, model, tok, on_error), n, seed)

    def continue_fn(cond, prompt, n_new_):
        new = model.semantic_continuation(torch.as_tensor(cond)[None], torch.as_tensor(prompt)[None], n_new_, greedy=True)
        return new[0].cpu().numpy()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = prompt_sweep(examples, continue_fn, tok.centroids, prompt_lengths, n_new=n_new, fpr=fpr, seed=seed, device=device)
    summary = {**res.to_dict(), "tokenizer": tok.id, "checkpoint": str(checkpoint), "train_dir": str(train),
               "warnings": [str(w.message) for w in caught], "seed": seed}
    paths = write_outputs(out, summary, res.matches, lambda d: plot_match_rate(res, d))
    from metrics.store import write_store

    write_store(out, "memorization", {str(checkpoint or "shipped-tiny"): {"metrics": {
        "exact_rate": {"value": res.exact_rate, "ci95": res.extra["exact_ci95"]},
        "approx_rate": {"value": res.approx_rate, "ci95": res.extra["approx_ci95"]}}}},
        metadata={"protocol": "prompt-length sweep", "tau": res.tau, "memorization_json": "memorization.json"})
    paths["store"] = Path(out) / "results.json"
    return {**summary, "files": {k: str(v) for k, v in paths.items()}}

"""The memorization runs behind ``musiclm-eval memorization sweep|audit`` (and the demo's sweep).

It lives in ``benchmarks/`` because ``run_sweep`` drives the reference model (``musiclm_ref``), which
``metrics/`` must not import; ``run_audit`` is the model-agnostic audit with the CLI's default matchers.
The click commands (``benchmarks/cli/memorization.py``) only parse flags and print.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

from metrics.cache import CacheEntryWarning, EmbeddingCache, array_sha256, cached_array, module_sha256  # noqa: E402
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
from metrics.memorization.sweep import CachedContinuation  # noqa: E402

# bump when load_examples' tokens or run_sweep's continuations change in a way the sources hashed below do not show
EXAMPLE_VERSION = "memorization-sweep-example.v1"
SWEEP_CODE_VERSION = "memorization-sweep-greedy.v1"


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


def _code(version: str, *modules: str) -> str:
    """A cache entry's code version: ``version``, the sha256 of the named modules' source files and torch's
    version, so an edit of the code that computes an entry is a miss rather than a stale number."""
    import torch

    h = hashlib.sha256()
    for m in modules:
        h.update(Path(sys.modules[m].__file__).read_bytes())
    return f"{version}|src={h.hexdigest()[:16]}|torch={torch.__version__}"


def load_examples(train: str | Path, model, tokenizer, on_error: str = "raise",
                  cache: EmbeddingCache | None = None) -> list[Example]:
    """Training clips → (M_A audio tokens, semantic tokens) with the model's own conditioning. ``cache``: each
    clip's two token arrays are read from / written to it, keyed by the sha256 of the clip's samples and the
    model that makes them (MuLan and its RVQ's weights; the tokenizer id)."""
    from metrics.audio import load_dir

    report = load_dir(train, on_error=on_error)
    if not report.clips:
        raise MemorizationError(f"{train}: no usable audio clips")
    cond_id = f"mulan:{module_sha256(model.mulan, model.mulan.cfg)}|rvq:{module_sha256(model.mulan_rvq, model.mulan_rvq.config)}"
    code = _code(EXAMPLE_VERSION, "musiclm_ref.pipeline", "musiclm_ref.mulan", "musiclm_ref.quantize",
                 type(tokenizer).__module__)
    out = []
    for c in report.clips:
        sha, pre = array_sha256(np.asarray(c.wave)), json.dumps({"sr": c.sr, "device": model.device.type})
        cond, _ = cached_array(cache, EmbeddingCache.key(sha, cond_id, pre), code,
                               lambda c=c: model.audio_tokens([c.wave], c.sr)[0].cpu().numpy())
        sem, _ = cached_array(cache, EmbeddingCache.key(sha, tokenizer.id, pre), code,
                              lambda c=c: np.asarray(tokenizer.tokenize(c.wave, c.sr), dtype=np.int64))
        out.append(Example(c.id, cond, sem))
    return out


def run_sweep(checkpoint: str | Path | None, train: str | Path, out: str | Path, n: int | None = None,
              prompt_lengths=PROMPT_LENGTHS, fpr: float = DEFAULT_FPR, n_new: int = WINDOW_TOKENS,
              tokenizer: str | None = None, seed: int = 0, on_error: str = "raise", device: str = "cpu",
              cache: EmbeddingCache | None = None) -> dict:
    """The paper's sweep with the reference MusicLM's greedy ``semantic_continuation``. ``cache``: an
    ``EmbeddingCache`` the examples' tokens and every continuation go through (:class:`CachedContinuation`:
    keyed by the semantic stage's weights, the prompt and conditioning tokens, ``n_new``, greedy decoding),
    so a rerun after a kill computes only the continuations that were not cached and writes the uninterrupted
    run's outputs. The returned dict's ``cache`` (not in ``memorization.json``) counts them."""
    import torch

    from musiclm_ref.pipeline import MusicLM

    model = MusicLM.from_pretrained(checkpoint, device=device)
    tok = get_tokenizer(tokenizer) if tokenizer else (getattr(model, "tokenizer", None) or get_tokenizer("semantic-ref"))
    trained_on = model.semantic.metadata.get("tokenizer_id")
    if trained_on and tok.id != trained_on:  # prompts cut with other tokens would be continued as if they were its own
        raise MemorizationError(f"tokenizer {tok.id} is not the one the semantic stage of {checkpoint or 'the shipped set'} "
                                f"was trained on ({trained_on}); leave --tokenizer out to use the model's")
    examples = select_examples(load_examples(train, model, tok, on_error, cache), n, seed)

    def greedy(cond, prompt, n_new_):
        new = model.semantic_continuation(torch.as_tensor(cond)[None], torch.as_tensor(prompt)[None], n_new_, greedy=True)
        return new[0].cpu().numpy()

    continue_fn = CachedContinuation(
        greedy, cache, f"semantic-stage:{module_sha256(model.semantic, model.semantic.config)}",
        _code(SWEEP_CODE_VERSION, "musiclm_ref.pipeline", "musiclm_ref.sampling", "musiclm_ref.stages",
              "musiclm_ref.transformer"),
        {"decoding": "greedy", "tokenizer": tok.id, "device": model.device.type,
         "batch_invariant": model.batch_invariant, "row_tile": model.row_tile})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = prompt_sweep(examples, continue_fn, tok.centroids, prompt_lengths, n_new=n_new, fpr=fpr, seed=seed, device=device)
    summary = {**res.to_dict(), "tokenizer": tok.id, "checkpoint": str(checkpoint), "train_dir": str(train),
               "warnings": [str(w.message) for w in caught if not issubclass(w.category, CacheEntryWarning)], "seed": seed}
    for w in caught:  # a damaged cache entry is the cache's news, not the sweep's: told, kept out of memorization.json
        if issubclass(w.category, CacheEntryWarning):
            warnings.warn(w.message, stacklevel=2)
    paths = write_outputs(out, summary, res.matches, lambda d: plot_match_rate(res, d))
    from metrics.store import write_store

    write_store(out, "memorization", {str(checkpoint or "shipped-tiny"): {"metrics": {
        "exact_rate": {"value": res.exact_rate, "ci95": res.extra["exact_ci95"]},
        "approx_rate": {"value": res.approx_rate, "ci95": res.extra["approx_ci95"]}}}},
        metadata={"protocol": "prompt-length sweep", "tau": res.tau, "memorization_json": "memorization.json"})
    paths["store"] = Path(out) / "results.json"
    used = {"root": str(cache.root), "continuations_cached": continue_fn.cached,
            "continuations_computed": continue_fn.computed} if cache is not None else None
    return {**summary, "files": {k: str(v) for k, v in paths.items()}, "cache": used}

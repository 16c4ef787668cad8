"""Memorization: does a model reproduce its training data? (MusicLM §5 protocol + a model-agnostic audit).

One module per concern:

* ``registry`` — names, errors, the tokenizer registry (``semantic-ref`` resolved lazily by name).
* ``windows`` — validated sequences, sliding windows, sub-frame phases.
* ``matchers`` — the paper's semantic-token OT matcher and an embedding (cosine) matcher.
* ``search`` — the exact pruned search (pairs below τ; null clips' minima), per shard.
* ``calibration`` — τ per pair (the sweep) and per clip on null clips (the audit).
* ``sweep`` — the paper's prompt-length sweep.  ``audit`` — the model-agnostic audit.
* ``levels`` — loudness normalization and featurization of audio.
* ``alter`` / ``detection`` — planted altered copies and the measured detection table.
* ``pipeline`` — folders of audio in, the matchers side by side, files out (what the CLI calls).
* ``io`` / ``plots`` — memorization.json, matches.csv, PNGs.  ``ray`` — the audit on Ray.
"""

from metrics.memorization.audit import (
    AuditPlan,
    AuditResult,
    audit,
    calibrate_clips,
    finish_audit,
    leave_one_out_nulls,
    merge_hits,
    prepare_audit,
    run_shard,
)
from metrics.memorization.calibration import (
    DEFAULT_TAU_CONFIDENCE,
    Calibration,
    ClipCalibration,
    calibrate_tau,
    nulls_needed,
)
from metrics.memorization.io import MATCH_COLUMNS, write_outputs
from metrics.memorization.levels import LevelConfig, embed_clip, normalize_level, tokenize_clip, tokenize_dir
from metrics.memorization.matchers import EmbeddingMatcher, OTScorer, embedder_frame_rate, frame_distance
from metrics.memorization.plots import plot_audit, plot_detection, plot_match_rate
from metrics.memorization.registry import (
    DEFAULT_CLIP_FPR,
    DEFAULT_FPR,
    FRAME_RATE,
    PROMPT_LENGTHS,
    TOKENIZERS,
    WINDOW_TOKENS,
    FewNegativesWarning,
    MemorizationError,
    Tokenizer,
    check_tokenizer,
    get_tokenizer,
    register_tokenizer,
)
from metrics.memorization.search import (
    PairHits,
    audit_shard,
    candidate_hits,
    clip_minima,
    exact_hits,
    shard_clips,
    shards_by_size,
)
from metrics.memorization.sweep import Example, SweepResult, prompt_sweep, select_examples
from metrics.memorization.windows import Windows, check_tokens, cut_windows, entropy_bits, phases_of

__all__ = [
    "DEFAULT_CLIP_FPR", "DEFAULT_FPR", "DEFAULT_TAU_CONFIDENCE", "FRAME_RATE", "MATCH_COLUMNS", "PROMPT_LENGTHS", "TOKENIZERS", "WINDOW_TOKENS",
    "AuditPlan", "AuditResult", "Calibration", "ClipCalibration", "EmbeddingMatcher", "Example", "FewNegativesWarning",
    "LevelConfig", "MemorizationError", "OTScorer", "PairHits", "SweepResult", "Tokenizer", "Windows", "audit",
    "audit_shard", "calibrate_clips", "calibrate_tau", "candidate_hits", "check_tokenizer", "check_tokens", "clip_minima",
    "cut_windows", "embed_clip", "embedder_frame_rate", "entropy_bits", "exact_hits", "finish_audit", "frame_distance",
    "get_tokenizer", "leave_one_out_nulls", "merge_hits", "normalize_level", "nulls_needed", "phases_of",
    "plot_audit", "plot_detection", "plot_match_rate", "prepare_audit", "prompt_sweep", "register_tokenizer", "run_shard", "select_examples",
    "shard_clips", "shards_by_size", "tokenize_clip", "tokenize_dir", "write_outputs",
]

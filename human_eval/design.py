"""Study creation: a balanced, counterbalanced design and an opaque audio store.

Design = every pair of sources (systems, plus the reference when given) × one caption sample of
``ceil(ratings_per_pair / ratings_per_trial)`` captions, drawn from the ids every source shares.
Within a pair, clip A (the pair's first source) is on the left in exactly half of the trials (±1),
in a seeded random arrangement. The sample, the pairs and the orders are reproducible from ``seed``.

The store holds only re-encoded files named by random ids (``secrets``, not the seed: the seed is no
secret), so neither a file name, a tag nor a sample rate says which system made a clip; the mapping
is only in the database. Audio is decoded with ``metrics.audio`` (resampled to one common rate, cropped
to ``seconds``) and written fresh as PCM-16 WAV, which carries only ``fmt `` and ``data`` chunks.

Before it is written every stimulus is matched to one BS.1770 integrated loudness (``loudness_target``,
−23 LUFS by default, true peak held under ``true_peak_ceiling``; see ``human_eval.loudness``), so no
system is preferred for being louder; the loudness as received and as stored (measured again on the
written file) are both kept per clip. ``loudness_target=None`` stores clips at their own level.
"""

from __future__ import annotations

import itertools
import math
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from human_eval import db
from human_eval.loudness import (
    TARGET_LUFS,
    TRUE_PEAK_CEILING_DBTP,
    LoudnessInfo,
    integrated_loudness,
    match_loudness,
    true_peak_dbtp,
)
from metrics.audio import AudioError, load_audio, pair_ids, save_audio, scan_dir
from metrics.errors import InputError
from metrics.musiccaps import CaptionsError, captions_for

REFERENCE = "reference"


class DesignError(InputError):
    """A study that cannot be built as asked; the message names the input and the problem."""


@dataclass
class CreatedStudy:
    study_id: int
    admin_secret: str
    tokens: list[str]
    store: Path
    n_trials: int
    n_attention: int
    pairs: list[tuple[str, str]]
    skipped: list[str] = field(default_factory=list)


def default_store(url: str) -> Path | None:
    """``<db stem>_audio/`` beside a SQLite file; other databases need an explicit store."""
    path = db.sqlite_path(url)
    return None if path is None else path.with_name(f"{path.stem}_audio")


def create_study(
    url: str,
    systems: dict[str, str | Path],
    captions: str | Path,
    reference: str | Path | None = None,
    store: str | Path | None = None,
    ratings_per_pair: int = 200,
    ratings_per_trial: int = 1,
    raters: int = 0,
    trials_per_rater: int | None = None,
    attention_checks: int = 2,
    seed: int = 0,
    sample_rate: int = 24000,
    seconds: float = 10.0,
    name: str = "",
    prolific_study_id: str | None = None,
    completion_code: str | None = None,
    on_error: str = "raise",
    loudness_target: float | None = TARGET_LUFS,
    true_peak_ceiling: float = TRUE_PEAK_CEILING_DBTP,
    playback_min_fraction: float | None = None,
    headphone_check: bool = False,
) -> CreatedStudy:
    """Build the study in a new database and fill the opaque store. Returns the admin secret and tokens once.

    ``playback_min_fraction``: the answer unlocks only after both clips were heard to this fraction; 0 logs
    every play event without gating; None (the API default, as before play logging existed) shows plain
    players and logs nothing. ``rate create`` defaults to 1: heard to the end. ``headphone_check``: raters take the
    Woods et al. (2017) antiphase test before their first trial (``human_eval.screening``).
    """
    sources = {str(k): Path(v) for k, v in systems.items()}
    if reference is not None:
        if REFERENCE in sources:
            raise DesignError(f"system name {REFERENCE!r} is reserved for --reference")
        sources[REFERENCE] = Path(reference)
    if len(sources) < 2:
        raise DesignError("a study needs at least two sources (systems and/or --reference)")
    if ratings_per_pair < 1 or ratings_per_trial < 1:
        raise DesignError("--ratings-per-pair and --ratings-per-trial must be at least 1")
    if attention_checks < 0 or raters < 0:
        raise DesignError("--attention-checks and --raters cannot be negative")
    if playback_min_fraction is not None and not 0 <= playback_min_fraction <= 1:
        raise DesignError(f"--playback-min-fraction must be in [0, 1], not {playback_min_fraction}")
    if loudness_target is not None and not (-70 < loudness_target < 0 and true_peak_ceiling <= 0):
        raise DesignError(f"--loudness-target must be in (-70, 0) LUFS and --true-peak-ceiling <= 0 dBTP "
                          f"(got {loudness_target}, {true_peak_ceiling})")
    if on_error not in ("raise", "skip"):
        raise DesignError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    store = Path(store) if store is not None else default_store(url)
    if store is None:
        raise DesignError(f"{db.redact(url)}: not a SQLite file, so the audio store needs an explicit --store DIR")
    if store.exists() and any(store.iterdir()):
        raise DesignError(f"{store}: audio store directory is not empty")

    files = {name_: scan_dir(d) for name_, d in sources.items()}
    ids = pair_ids({name_: f.keys() for name_, f in files.items()})
    try:
        caps = captions_for(captions, ids)
    except CaptionsError as e:
        raise DesignError(str(e)) from None

    rng = np.random.default_rng(seed)
    trials_per_pair = math.ceil(ratings_per_pair / ratings_per_trial)
    n_sample = min(len(ids), trials_per_pair)
    order = [ids[i] for i in rng.permutation(len(ids))]
    names = list(sources)
    pairs = list(itertools.combinations(names, 2))

    engine = db.init_db(url)
    store.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(18)
    skipped: list[str] = []
    try:
        with db.sessions(engine).begin() as s:
            study = db.Study(
                name=name or "listening study", seed=seed, store_dir=str(store.resolve()), sample_rate=sample_rate,
                seconds=seconds, ratings_per_trial=ratings_per_trial, trials_per_rater=0,
                attention_checks=attention_checks, completion_code=completion_code or secrets.token_hex(4).upper(),
                prolific_study_id=prolific_study_id, admin_secret_hash=db.hash_secret(secret),
                loudness_target_lufs=loudness_target,
                true_peak_ceiling_dbtp=true_peak_ceiling if loudness_target is not None else None,
                playback_min_fraction=playback_min_fraction, headphone_check=bool(headphone_check),
            )
            s.add(study)
            s.flush()
            sys_rows = {}
            for pos, (n, d) in enumerate(sources.items()):
                sys_rows[n] = db.System(study_id=study.id, name=n, source_dir=str(d.resolve()),
                                        is_reference=(n == REFERENCE and reference is not None), position=pos)
                s.add(sys_rows[n])
            s.flush()
            # walk the seeded order until n_sample captions have every source's clip encoded
            sample: list[str] = []
            clips: dict[tuple[str, str], db.Clip] = {}
            for item in order:
                if len(sample) == n_sample:
                    break
                try:
                    encoded = {n: _encode(files[n][item], store, sample_rate, seconds, loudness_target,
                                          true_peak_ceiling) for n in names}
                except AudioError as e:
                    if on_error == "raise":
                        raise
                    skipped.append(str(e))
                    continue
                for n, (opaque, sha, secs, loud) in encoded.items():
                    clips[n, item] = db.Clip(study_id=study.id, system_id=sys_rows[n].id, item_id=item,
                                             opaque_id=opaque, source_sha256=sha, seconds=secs,
                                             **(loud.to_dict() if loud is not None else {}))
                    s.add(clips[n, item])
                sample.append(item)
            if not sample:
                raise DesignError("no caption has a usable clip from every source" + (f" ({len(skipped)} skipped)" if skipped else ""))
            s.flush()
            n_trials = 0
            for a, b in pairs:
                lefts = np.array([True] * math.ceil(trials_per_pair / 2) + [False] * (trials_per_pair // 2))
                lefts = lefts[rng.permutation(trials_per_pair)]
                for t in range(trials_per_pair):
                    item = sample[t % len(sample)]
                    s.add(db.Trial(study_id=study.id, kind="pair", item_id=item, caption=caps[item],
                                   clip_a_id=clips[a, item].id, clip_b_id=clips[b, item].id,
                                   a_on_left=bool(lefts[t]), required=ratings_per_trial))
                    n_trials += 1
            n_att = _attention_trials(s, study, clips, sample, caps, names, attention_checks, rng)
            total_ratings = n_trials * ratings_per_trial
            study.trials_per_rater = trials_per_rater or (math.ceil(total_ratings / raters) if raters else 20)
            tokens = [_add_rater(s, study, f"invite {i + 1}") for i in range(raters)]
    except BaseException:
        engine.dispose()
        raise
    engine.dispose()
    return CreatedStudy(study.id, secret, tokens, store, n_trials, n_att, pairs, skipped)


def _encode(src: Path, store: Path, sample_rate: int, seconds: float, target: float | None = None,
            ceiling: float = TRUE_PEAK_CEILING_DBTP) -> tuple[str, str, float, LoudnessInfo | None]:
    """Decode, crop, loudness-match (when ``target``) and write one stimulus under a fresh random name."""
    clip = load_audio(src, sr=sample_rate)
    wave = clip.wave[: int(round(seconds * sample_rate))]
    info = None
    if target is not None:
        wave, info = match_loudness(wave, sample_rate, target, ceiling, path=src)
    opaque = secrets.token_hex(16)
    path = save_audio(store / f"{opaque}.wav", wave, sample_rate)
    if info is not None:  # what raters hear is the PCM-16 file: measure that, not the float array
        stored = load_audio(path).wave
        info.stored_lufs, info.stored_true_peak_dbtp = integrated_loudness(stored, sample_rate), true_peak_dbtp(stored)
    return opaque, clip.sha256, len(wave) / sample_rate, info


def _attention_trials(s: Session, study: db.Study, clips: dict, sample: list[str], caps, names: list[str],
                      k: int, rng: np.random.Generator) -> int:
    """A pool of gold trials: the caption's own clip vs the same source's clip for another caption.

    The reference is the source when there is one (its clip is the ground truth for the caption);
    otherwise the sources take turns. The pool holds up to 4 checks per rater slot, so raters rarely share one.
    """
    if k == 0:
        return 0
    if len(sample) < 2:
        raise DesignError("attention checks need at least two captions in the sample (or --attention-checks 0)")
    n = min(len(sample), max(4 * k, 8))
    src_names = [REFERENCE] if REFERENCE in names else names
    for i in range(n):
        item = sample[i]
        decoy = sample[(i + 1 + int(rng.integers(len(sample) - 1))) % len(sample)]
        src = src_names[i % len(src_names)]
        correct, other = clips[src, item], clips[src, decoy]
        trial = db.Trial(study_id=study.id, kind="attention", item_id=item, caption=caps[item],
                         clip_a_id=correct.id, clip_b_id=other.id, a_on_left=bool(rng.integers(2)), required=0)
        s.add(trial)
        s.flush()
        s.add(db.AttentionCheck(trial_id=trial.id, correct_clip_id=correct.id, decoy_item_id=decoy))
    return n


def _add_rater(s: Session, study: db.Study, label: str) -> str:
    token = db.new_token()
    s.add(db.Rater(study_id=study.id, token_hash=db.token_hash(token), label=label))
    return token


def invite(url: str, n: int, label: str = "invite") -> list[str]:
    """Create ``n`` raters with fresh tokens; the tokens are returned once (the database keeps hashes)."""
    if n < 1:
        raise DesignError("invite needs n >= 1")
    engine = db.open_db(url)
    try:
        with db.sessions(engine).begin() as s:
            study = db.the_study(s)
            start = s.query(db.Rater).count()
            return [_add_rater(s, study, f"{label} {start + i + 1}") for i in range(n)]
    finally:
        engine.dispose()


def invite_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/?token={token}"

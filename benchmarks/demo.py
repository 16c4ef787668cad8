"""``musiclm-eval demo`` (= ``make run``): the whole pipeline on the embedded default, offline.

corpus (train split: what the model was fitted on) + held-out clips (the eval split of a corpus seed
no shipped piece saw, ``musiclm_ref.data.splits.HELD_OUT``) → audio for the held-out captions from
each built-in system → ``compare``
(FAD with the embedders available offline, KLD, MCC) → a small memorization sweep → a human-study
database with the generated pairs → the table and the commands that open the dashboard and the app.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from metrics.audio import save_audio
from metrics.errors import InputError
from metrics.musiccaps import load_captions, write_captions

SYSTEMS = ("musiclm-ref", "musiclm-ref-no-semantic", "unconditional", "retrieval")
ADHERENCE = ("musicnn-mtt",)  # the per-aspect judge: its logits are the KLD classifier's, no second pass
EMBEDDERS = ("trill", "vggish", "mel", "musicnn-mtt")  # the paper's two (TF-Hub; skipped offline), ours, a real tagger
CLASSIFIERS = "leaf-corpus,musicnn-mtt"  # KLD with the shipped LEAF classifier and with the real MagnaTagATune tagger
MUSICNN_SECONDS = 3.0  # musicnn's patch (187 frames at 16 kHz / 256 hop ≈ 2.98 s)
MELODY_CLIPS = 8  # captions generated again under one melody prompt (CREPE costs ~3 s per 10 s clip on one core)


class StepTimes:
    """Wall time of each demo step, said when the step ends and together at the end: where a newcomer's wait goes."""

    def __init__(self, log: Callable[[str], None]):
        self.log, self.seconds, self.started = log, {}, time.perf_counter()
        self.load_start = os.getloadavg()[0]  # wall time follows what else the cores run: recorded beside it

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 1)
            self.log(f"  [{name}: {self.seconds[name]:.1f} s]")

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.started, 1)

    def summary(self) -> str:
        return "step times: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items()) + f"; total {self.total:.0f} s"


def one_line_warnings(log: Callable[[str], None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that says a warning in one line of the demo's log (no file and source line)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        log(f"warning: {category.__name__}: {message}")

    return show


def skip_reason(reason: str) -> str:
    """One line per skipped model: the problem, without the how-to-provide text (said once after the list)."""
    return reason.splitlines()[0].split(" To use ", 1)[0] if reason else reason


def split_folder(corpus: Path, out: Path, split: str) -> Path:
    """Hard-link (or copy) one split of a corpus into its own folder with its captions/labels.

    The folder is the demo's own derived output and is rebuilt from scratch: clips left by an earlier
    run (other ids, or the same id with other audio) would otherwise be scored as this run's."""
    from musiclm_ref.data.synth import load_labels

    labels = load_labels(corpus)
    ids = list(labels.index[labels["split"] == split])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for i in ids:
        dst = out / f"{i}.wav"
        try:
            os.link(corpus / f"{i}.wav", dst)
        except OSError:
            shutil.copy(corpus / f"{i}.wav", dst)
    write_captions(load_captions(corpus / "captions.csv").loc[ids], out / "captions.csv")
    labels.loc[ids].assign(tags=lambda d: d["tags"].map(";".join), instruments=lambda d: d["instruments"].map(";".join)).to_csv(
        out / "labels.csv", index=False, lineterminator="\n"
    )
    return out


def prepare_data(out: Path, n: int, n_eval: int, seconds: float, seed: int, workers: int = 1):
    """The training-side corpus (``n`` clips of ``seed``; its train split in ``out/train``) and the first
    ``n_eval`` held-out clips (seed 1's eval split, in ``out/reference``); refuses if any held-out id
    appears in a shipped training manifest. Returns (corpus info, held-out info, train dir, eval dir)."""
    from musiclm_ref.data.splits import HELD_OUT, leaks
    from musiclm_ref.data.synth import generate_corpus

    info = generate_corpus(out / "corpus", n=n, seconds=seconds, seed=seed, workers=workers)
    held = generate_corpus(out / "held_out", n=n_eval, seconds=seconds, seed=HELD_OUT["seed"], split=HELD_OUT["split"],
                           workers=workers)
    train_dir = split_folder(out / "corpus", out / "train", "train")
    eval_dir = split_folder(out / "held_out", out / "reference", "eval")
    seen = leaks(load_captions(eval_dir / "captions.csv").index)
    if seen:  # a shipped piece was refitted on these clips: the table would score memory, not generalization
        raise RuntimeError(f"held-out clips appear in training manifests: {seen}")
    return info, held, train_dir, eval_dir


def generate_systems(eval_dir: Path, train_dir: Path, out: Path, seconds: float, seed: int, device: str,
                     log: Callable[[str], None]) -> dict[str, Path]:  # fmt: skip
    """Audio for every eval caption from each built-in system: ``out/<system>/<ytid>.wav``."""
    from benchmarks.baselines import retrieval_generate
    from musiclm_ref.pipeline import SAMPLE_RATE, MusicLM, PipelineError

    caps = load_captions(eval_dir / "captions.csv")["caption"].to_dict()
    ids = sorted(caps)
    dirs = {name: out / name for name in SYSTEMS}
    for d in dirs.values():  # an earlier run's clips must not be scored as this run's
        if d.exists():
            shutil.rmtree(d)
    try:
        model = MusicLM.from_pretrained(device=device)
    except PipelineError as e:
        # Said loudly, never hidden: the table then lacks the reference-model rows.
        log(f"  the shipped reference MusicLM cannot be loaded ({e}); its three systems are left out")
        model = None
        for name in ("musiclm-ref", "musiclm-ref-no-semantic", "unconditional"):
            dirs.pop(name)
    options = {} if model is None else {
        "musiclm-ref": {},
        "musiclm-ref-no-semantic": {"skip_semantic": True},
        "unconditional": {"drop_conditioning": True},
    }
    for name, kw in options.items():
        t0 = time.time()
        waves = model.generate([caps[i] for i in ids], seconds=seconds, seed=seed, progress=True, **kw)
        for i, w in zip(ids, waves):
            save_audio(dirs[name] / f"{i}.wav", w, SAMPLE_RATE)
        log(f"  {name}: {len(ids)} clips × {seconds:g} s in {time.time() - t0:.1f} s")
    t0 = time.time()
    retrieval_generate(train_dir, caps, dirs["retrieval"], seconds=seconds, sample_rate=SAMPLE_RATE)
    log(f"  retrieval: {len(ids)} clips in {time.time() - t0:.1f} s")
    return dirs


def run_demo(out: str | Path, n: int = 100, seconds: float = 10.0, seed: int = 0, device: str = "cpu",
             memorization_n: int = 16, log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Run every stage into ``out``; return the compare results document."""
    from benchmarks.harness import summarize
    from benchmarks.report import adherence_columns
    from metrics.warn_once import warn_once
    from musiclm_ref.data.splits import HELD_OUT

    if seed == HELD_OUT["seed"]:
        raise InputError(f"--seed {seed} is the held-out corpus seed; the demo's training-side corpus needs another")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times = StepTimes(log)
    with warnings.catch_warnings():
        warnings.showwarning = one_line_warnings(log)
        with warn_once():  # each warning of the run once, before the summary (not once per system, metric and clip)
            data, melody, memo, study_url = _run_steps(out, n, seconds, seed, device, memorization_n, log,
                                                                  times)
    log("")
    log(summarize(data))
    log("")
    for line in adherence_lines(data):
        log(line)
    if melody:
        log("melody adherence against one melody prompt (CREPE pitch RCA / audiocraft chroma cosine / Music ControlNet "
            "pitch-class accuracy, 95% BCa intervals):")
        for name, m in melody.items():
            log(f"  {name}: " + ", ".join(f"{label} {_with_ci(m[k])}" for k, label in MELODY_LABELS.items() if k in m))
    if memo:
        log(f"memorization: exact {memo['exact_rate']:.3f}, approximate {memo['approx_rate']:.3f} (τ = {memo['tau']:.3f})")
    log(times.summary())
    log(f"done in {times.total:.0f} s; everything is in {out}/")
    log(f"  dashboard:   musiclm-eval dashboard --results {out / 'results'} --db {study_url}")
    log(f"  rating app:  musiclm-eval rate serve --db {study_url}   (invite raters: musiclm-eval rate invite --db {study_url} --n 5)")
    log(f"  analysis:    musiclm-eval rate analyze --db {study_url} --out {out / 'study'}")
    log(f"  agreement:   musiclm-eval agreement --results {out / 'results'} --db {study_url} --rename "
        f"reference='ground truth' --out {out / 'agreement'}   (once real raters have rated; the table above is SIMULATED)")
    summary = {"results": str(out / "results"), "study_db": study_url, "elapsed_s": times.total, "steps_s": times.seconds,
               "loadavg_1min": {"start": round(times.load_start, 2), "end": round(os.getloadavg()[0], 2)},
               "adherence": sorted(k for k, _ in adherence_columns(data))}
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    return data


def _run_steps(out: Path, n: int, seconds: float, seed: int, device: str, memorization_n: int,
               log: Callable[[str], None], times: StepTimes) -> tuple:
    """The demo's steps in order, each timed: (compare document, melody adherence, memorization, study url)."""
    from benchmarks.demo_agreement import simulated_agreement
    from benchmarks.harness import compare
    from metrics.cache import EmbeddingCache
    from musiclm_ref.data.splits import HELD_OUT

    workers = min(2, os.cpu_count() or 1)
    n_eval = max(1, n // 5)
    log(f"[1/5] corpus: {n} clips × {seconds:g} s (seed {seed}; its train split feeds retrieval and the memorization "
        f"sweep) and {n_eval} held-out clips (seed {HELD_OUT['seed']}, eval split: unseen by every shipped piece)")
    with times.step("corpus"):
        info, held, train_dir, eval_dir = prepare_data(out, n, n_eval, seconds, seed, workers)
    log(info.summary())

    log("[2/5] generating audio for the eval captions with each built-in system")
    with times.step("generation"):
        dirs = generate_systems(eval_dir, train_dir, out / "systems", seconds, seed, device, log)

    log("[3/5] compare: FAD and KAD (embedders available offline), KLD (LEAF, musicnn), MCC, per-aspect caption "
        "adherence (musicnn-mtt), paired tests")
    cache = EmbeddingCache(out / "cache")
    embedders, classifiers = EMBEDDERS, CLASSIFIERS
    if seconds < MUSICNN_SECONDS:
        log(f"  musicnn skipped: its patches are {MUSICNN_SECONDS:g} s, the clips {seconds:g} s")
        embedders = tuple(e for e in EMBEDDERS if not e.startswith("musicnn"))
        classifiers = ",".join(c for c in CLASSIFIERS.split(",") if not c.startswith("musicnn"))
    with times.step("compare"):
        data = compare(
            dict(dirs), eval_dir, eval_dir / "captions.csv", out / "results",
            embedders=embedders, classifier=classifiers, kad=True, device=device, seed=seed, cache=cache,
            skip_unavailable_embedders=True, progress=True, adherence=ADHERENCE if seconds >= MUSICNN_SECONDS else (),
            extra_metadata={"demo": {"corpus_seed": seed, "n": n, "seconds": seconds, "corpus_sha256": info.data_sha256,
                                     "held_out": {**held.ids, "data_sha256": held.data_sha256}}},
        )  # fmt: skip
    unavailable = data["metadata"]["unavailable_embedders"]
    for name, reason in unavailable.items():
        log(f"  FAD_{name} skipped: {skip_reason(reason)}")
    if unavailable:
        log("  (VGGish/TRILL are TF-Hub models and nothing is downloaded here; pass --embedder-path DIR or set "
            "TFHUB_CACHE_DIR to a populated cache to include them. FAD_mel is not comparable to published FAD.)")

    with times.step("melody"):
        melody = _melody(dirs, eval_dir, out, seconds, seed, device, cache, log)

    log(f"[4/5] memorization sweep on {memorization_n} training examples")
    with times.step("memorization"):
        memo = _memorization(train_dir, out / "results" / "memorization", memorization_n, seed, device, log, seconds)

    log("[5/5] human-study database with the generated pairs, and a SIMULATED study on them with its agreement table")
    with times.step("study"):
        study_url = _study(dirs, eval_dir, out, seed, log)
    with times.step("agreement (simulated study)"):
        simulated_agreement(out, study_url, seed, log)
    return data, melody, memo, study_url


def _melody(dirs: dict[str, Path], eval_dir: Path, out: Path, seconds: float, seed: int, device: str, cache,
            log: Callable[[str], None]) -> dict | None:
    """Melody conditioning, measured: the first ``MELODY_CLIPS`` captions generated again under one melody
    prompt (an eval clip's own melody) and scored — beside the same captions generated without it —
    for melody adherence against that prompt (``compare --melody-prompts``)."""
    from benchmarks.harness import compare
    from metrics.audio import load_audio
    from musiclm_ref.pipeline import SAMPLE_RATE, MusicLM, PipelineError

    if "musiclm-ref" not in dirs:
        return None
    try:
        import torchcrepe  # noqa: F401
    except ImportError:
        log("  melody adherence skipped: the 'melody' extra (torchcrepe) is not installed")
        return None
    caps = load_captions(eval_dir / "captions.csv")["caption"].to_dict()
    ids = sorted(caps)[:MELODY_CLIPS]
    prompt = load_audio(eval_dir / f"{sorted(caps)[-1]}.wav", sr=SAMPLE_RATE)  # an eval clip not among `ids`
    root = out / "melody"
    if root.exists():  # an earlier run's clips must not be scored as this run's
        shutil.rmtree(root)
    prompts, with_melody, without = root / "prompts", root / "musiclm-ref+melody", root / "musiclm-ref"
    try:
        model = MusicLM.from_pretrained(device=device)
    except PipelineError as e:
        log(f"  melody adherence skipped: the reference model cannot be loaded ({e})")
        return None
    t0 = time.time()
    waves = model.generate([caps[i] for i in ids], seconds=seconds, seed=seed, melody=prompt.wave, melody_sr=prompt.sr,
                           progress=True)
    for i, w in zip(ids, waves):
        save_audio(with_melody / f"{i}.wav", w, SAMPLE_RATE)
        save_audio(prompts / f"{i}.wav", prompt.wave, prompt.sr)
        without.mkdir(parents=True, exist_ok=True)
        shutil.copy(dirs["musiclm-ref"] / f"{i}.wav", without / f"{i}.wav")
    log(f"  musiclm-ref+melody: {len(ids)} clips in {time.time() - t0:.1f} s; scoring melody adherence")
    doc = compare({"musiclm-ref+melody": with_melody, "musiclm-ref": without}, prompts, eval_dir / "captions.csv",
                  out / "results-melody", embedders=[], classifier=None, joint=None, melody_prompts=prompts,
                  device=device, seed=seed, cache=cache, progress=True)
    return {name: {k: s["metrics"][k] for k in MELODY_LABELS if k in s["metrics"]} for name, s in doc["systems"].items()}


MELODY_LABELS = {"melody_rca": "RCA", "chroma_cosine": "chroma cosine", "melody_accuracy": "pitch-class accuracy"}


def _with_ci(entry: dict) -> str:
    """``0.412 [0.301, 0.520]`` of a store entry (value and ci95)."""
    ci = entry.get("ci95")
    return f"{entry['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def adherence_lines(data: dict) -> list[str]:
    """The demo's per-aspect caption adherence block (``metrics.adherence``, scored inside ``compare``): per aspect,
    every system's AUC with its 95% BCa interval, the reference audio as the ceiling and the shuffled-caption
    chance level. Judged by musicnn-mtt, which conditioned no system (the MCC's MuLan conditions musiclm-ref)."""
    from benchmarks.report import adherence_columns

    cols = adherence_columns(data)
    if not cols:
        return []
    lines = ["per-aspect caption adherence (AUC of the musicnn-mtt tags for the concepts each caption states; 95% BCa "
             "interval over clips; 'ground truth' = the reference audio, the ceiling; chance = shuffled captions):"]
    for key, label in cols:
        rows = [(name, s["metrics"][key]) for name, s in data["systems"].items() if key in s["metrics"]]
        chance = next((m.get("shuffled_control") for _, m in rows if m.get("shuffled_control") is not None), None)
        cells = [f"{name} {m['value']:.2f}" + (f" [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]" if m.get("ci95") else "")
                 for name, m in rows]
        lines.append(f"  {label.rsplit(' ', 1)[0]}: " + "; ".join(cells) + (f"; chance {chance:.2f}" if chance is not None else ""))
    return lines


def _memorization(train_dir: Path, out: Path, n: int, seed: int, device: str, log: Callable[[str], None],
                  seconds: float = 10.0) -> dict | None:  # fmt: skip
    """The paper's sweep on the demo's training clips. Its T goes to 250 tokens (10 s) before a 125-token
    continuation, which needs 15 s clips; on shorter clips T stops where the continuation still fits."""
    try:
        from benchmarks.memorization_runs import run_sweep
        from musiclm_ref.pipeline import PipelineError
    except ImportError as e:
        log(f"  memorization sweep unavailable ({e})")
        return None
    try:
        max_t = min(250, int(seconds * 25) - 125)
        if max_t < 0:
            log(f"  memorization sweep skipped: {seconds:g} s clips are shorter than a 5 s continuation")
            return None
        prompts = tuple(range(0, max_t + 1, 25))
        log(f"  prompt lengths {prompts} tokens (clips of {seconds:g} s)")
        return run_sweep(checkpoint=None, train=train_dir, out=out, n=n, prompt_lengths=prompts,
                         seed=seed, device=device)  # fmt: skip
    except PipelineError as e:
        log(f"  memorization sweep skipped: the reference model cannot be loaded ({e})")
        return None


def _study(dirs: dict[str, Path], eval_dir: Path, out: Path, seed: int, log: Callable[[str], None]) -> str:
    from human_eval.design import create_study

    db = out / "study.db"
    if db.exists():
        db.unlink()
    url = f"sqlite:///{db.resolve()}"
    created = create_study(url, {k: dirs[k] for k in ("musiclm-ref", "unconditional", "retrieval") if k in dirs}, eval_dir / "captions.csv",
                           reference=eval_dir, ratings_per_pair=10, raters=3, seed=seed, name="demo",
                           loudness_target=-23.0, playback_min_fraction=1.0)  # fmt: skip
    secret = getattr(created, "admin_secret", None)
    (out / "study_admin.txt").write_text(f"admin secret: {secret}\ntokens: {getattr(created, 'tokens', [])}\n")
    log(f"  study database {url} (admin secret and rater tokens in {out / 'study_admin.txt'})")
    return url


"""``musiclm-eval score`` (FAD + KLD + MCC in one pass) and ``musiclm-eval train classifier``.

``compute_score`` is what tests and the harness call; the click commands only parse options.
Each clip is decoded once (``metrics.audio.load_dir``) and the same ``Clip`` objects go to every FAD
embedder (through the embedding cache), the KLD classifier and the MCC joint model.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from collections.abc import Sequence
from pathlib import Path

import click
import numpy as np

from metrics.audio import AudioError, PairingError, load_dir, pair_ids
from metrics.cache import EmbeddingCache, atomic_write_bytes
from metrics.engine import engine_options

SHIPPED_CLASSIFIER = "leaf-corpus"


def _ci(result) -> list[float] | None:
    return list(result.ci95) if result.ci95 else None


def load_classifier_spec(spec: str | None, device: str = "cpu", label_space: str | None = None, audioset_csv: str | None = None):
    """``leaf-corpus`` (shipped) or a checkpoint path; ``label_space`` checks what the checkpoint declares."""
    from metrics.classifier import ClassifierError, load_classifier

    if spec in (None, SHIPPED_CLASSIFIER):
        return load_classifier(None, expected=label_space or "corpus", device=device, audioset_csv=audioset_csv)
    if not Path(spec).exists():
        raise ClassifierError(f"unknown classifier {spec!r}: not {SHIPPED_CLASSIFIER!r} or an existing checkpoint file")
    return load_classifier(spec, expected=label_space, device=device, audioset_csv=audioset_csv)


def compute_score(
    generated: str | Path,
    reference: str | Path,
    captions: str | Path | None,
    embedders: Sequence[str] = ("mel",),
    classifier: str | None = SHIPPED_CLASSIFIER,
    joint: str | None = "mulan-ref",
    device: str = "cpu",
    seed: int = 0,
    on_error: str = "raise",
    cache: EmbeddingCache | None = None,
    per_clip: str | Path | None = None,
    kld_direction: str = "ref||gen",
    kld_mode: str = "sigmoid",
    label_space: str | None = None,
    audioset_csv: str | None = None,
    n_boot: int = 1000,
    fad_n_boot: int = 200,
    engine=None,
) -> dict:
    """FAD per embedder, KLD (all directions) and MCC over generated/reference pairs matched by id.

    ``classifier=None`` skips KLD; ``joint=None`` or ``captions=None`` skips MCC; an empty
    ``embedders`` skips FAD. Returns the JSON document (every metric with ``<key>_ci95``). ``engine``
    (``metrics.engine``; default local) runs the FAD embedding extraction; KLD and MCC run here.
    """
    from metrics.embedders import get_embedder
    from metrics.engine import LOCAL
    from metrics.extract import preprocessing_key
    from metrics.fad import EmbeddingStats, bootstrap_fad_ci, per_clip_fad
    from metrics.fad import fad as fad_metric
    from metrics.kld import class_distributions, kld
    from metrics.mcc import load_joint, mcc_for_clips
    from metrics.musiccaps import load_captions

    gen_report = load_dir(generated, on_error=on_error)
    ref_report = load_dir(reference, on_error=on_error)
    gen_ids, ref_ids = {c.id for c in gen_report.clips}, {c.id for c in ref_report.clips}
    # Under --on-error skip a skipped clip leaves its partner unpaired: drop it too, and say so.
    ids = pair_ids({"generated": gen_ids, "reference": ref_ids}, allow_missing=on_error == "skip")
    unpaired = sorted((gen_ids | ref_ids) - set(ids))
    gen = [c for c in gen_report.clips if c.id in ids]
    ref = [c for c in ref_report.clips if c.id in ids]
    doc: dict = {"n_pairs": len(ids), "seed": seed}
    per: dict[str, dict[str, float]] = {i: {} for i in ids}

    for name in embedders:
        emb = get_embedder(name, None, device)
        r = (engine or LOCAL).embed(ref, emb, cache, on_error=on_error)
        g = (engine or LOCAL).embed(gen, emb, cache, on_error=on_error)
        stats = [EmbeddingStats(embedder=emb.id, config={**emb.config, "preprocessing": preprocessing_key(emb)}) for _ in "rg"]
        for s, e in zip(stats, (r, g)):
            for arr in e.values():
                s.update(arr)
        res = fad_metric(stats[0], stats[1])
        doc[f"fad_{name}"] = res.value
        doc[f"fad_{name}_ci95"] = list(bootstrap_fad_ci(stats[0], g, n_boot=200, seed=seed)) if len(g) > 1 else None
        for cid, v in per_clip_fad(stats[0], g).items():
            per[cid][f"fad_{name}"] = v
        doc.setdefault("embedders", {})[name] = emb.config

    if classifier is not None:
        clf = load_classifier_spec(classifier, device, label_space, audioset_csv)
        result = kld(class_distributions(ref, clf, kld_mode, device), class_distributions(gen, clf, kld_mode, device), kld_direction, seed=seed, n_boot=n_boot)
        for key, res in result.items():
            doc[key], doc[f"{key}_ci95"] = res.value, _ci(res)
            for cid, v in res.per_item.items():
                per[cid][key] = v
        doc["kld_settings"] = {"direction": kld_direction, "mode": kld_mode, "eps": 1e-6, "window_seconds": 10.0,
                               "classifier": clf.path, "classifier_sha256": clf.weights_sha256, "label_space": clf.label_space.name}

    if joint is not None and captions is not None:
        caps = load_captions(captions, require_all_columns=False)["caption"].to_dict()
        model = load_joint(joint, device)
        res = mcc_for_clips(gen, caps, model, seed=seed)
        doc["mcc"], doc["mcc_ci95"] = res.value, _ci(res)
        for cid, v in res.per_item.items():
            per[cid]["mcc"] = v
        doc["mcc_settings"] = {"backend": joint, "comparable_to_paper": False}  # neither CLAP nor mulan-ref is the paper's MuLan

    doc["skipped"] = {"generated": [vars(s) for s in gen_report.skipped], "reference": [vars(s) for s in ref_report.skipped],
                      "unpaired": unpaired}
    if per_clip is not None:
        columns = sorted({k for row in per.values() for k in row})
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", *columns])
        writer.writerows([cid, *(repr(per[cid][c]) if c in per[cid] else "" for c in columns)] for cid in ids)
        atomic_write_bytes(Path(per_clip), buf.getvalue().encode())
        doc["per_clip"] = str(per_clip)
    return doc


def summary_line(doc: dict) -> str:
    parts = [f"{k} = {doc[k]:.4f}" for k in doc if (k.startswith(("fad_", "kld", "mcc")) and isinstance(doc[k], float))]
    return f"{doc['n_pairs']} pairs: " + ", ".join(parts)


@click.command()
@click.option("--generated", required=True, type=click.Path(), help="Directory of generated clips (<ytid>.wav).")
@click.option("--reference", required=True, type=click.Path(), help="Directory of reference clips, paired by id.")
@click.option("--captions", type=click.Path(dir_okay=False), default=None, help="MusicCaps-format CSV (ytid, caption) for MCC.")
@click.option("--embedders", default="mel", show_default=True, help="Comma-separated FAD embedders ('' for no FAD).")
@click.option("--classifier", default=SHIPPED_CLASSIFIER, show_default=True, help=f"{SHIPPED_CLASSIFIER} (shipped) or a checkpoint path; 'none' skips KLD.")
@click.option("--label-space", type=click.Choice(["corpus", "audioset"]), default=None, help="Label space the classifier must have.")
@click.option("--audioset-labels", type=click.Path(dir_okay=False), default=None, help="class_labels_indices.csv for --label-space audioset.")
@click.option("--joint", default="mulan-ref", show_default=True, help="mulan-ref, a MuLan checkpoint, or clap:CKPT; 'none' skips MCC.")
@click.option("--kld-direction", type=click.Choice(["ref||gen", "gen||ref"]), default="ref||gen", show_default=True)
@click.option("--kld-mode", type=click.Choice(["sigmoid", "softmax"]), default="sigmoid", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache.")
@click.option("--bootstrap", default=1000, show_default=True, help="Bootstrap resamples for the KLD/MCC 95% CIs.")
@click.option("--fad-bootstrap", default=200, show_default=True, help="Bootstrap resamples for the FAD 95% CI (each is a full FAD).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON.")
@click.option("--per-clip", type=click.Path(dir_okay=False), default=None, help="Per-clip CSV (default: beside --json).")
@engine_options
def score(generated, reference, captions, embedders, classifier, label_space, audioset_labels, joint, kld_direction, kld_mode,
          device, seed, on_error, no_cache, bootstrap, fad_bootstrap, json_out, per_clip, engine, ray_address):
    """FAD, KLD and MCC in one pass over paired audio."""
    from metrics.classifier import ClassifierError
    from metrics.embedders import EmbedderError
    from metrics.engine import EngineUnavailableError, make_engine
    from metrics.fad import FADError
    from metrics.mcc import JointModelError
    from metrics.musiccaps import CaptionsError

    if per_clip is None and json_out:
        per_clip = str(Path(json_out).with_suffix("")) + "_per_clip.csv"
    try:
        doc = compute_score(
            generated, reference, captions,
            embedders=[e.strip() for e in embedders.split(",") if e.strip()],
            classifier=None if classifier == "none" else classifier,
            joint=None if joint == "none" else joint,
            device=device, seed=seed, on_error=on_error, cache=None if no_cache else EmbeddingCache(),
            per_clip=per_clip, kld_direction=kld_direction, kld_mode=kld_mode, label_space=label_space,
            audioset_csv=audioset_labels, n_boot=bootstrap, fad_n_boot=fad_bootstrap,
            engine=make_engine(engine, ray_address),
        )
    except (AudioError, PairingError, ClassifierError, EmbedderError, FADError, JointModelError, CaptionsError,
            EngineUnavailableError) as e:
        raise click.ClickException(str(e)) from e
    if json_out:
        atomic_write_bytes(Path(json_out), (json.dumps(doc, indent=2) + "\n").encode())
    click.echo(summary_line(doc))


@click.command("classifier")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Corpus directory (clips, labels.csv).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write (.pt); a .json manifest goes beside it.")
@click.option("--epochs", default=12, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", default=1, show_default=True, help="torch CPU threads (1 is fastest on a shared CPU).")
def train_classifier(data, out, epochs, seed, device, threads):
    """Train the LEAF multi-label classifier on the corpus tags; report held-out mAP."""
    import torch

    from metrics.classifier import ClassifierError, n_parameters, save_classifier, write_manifest
    from metrics.classifier import train_classifier as train

    torch.set_num_threads(threads)
    try:
        res = train(data, epochs=epochs, seed=seed, device=device, progress=click.echo)
    except (AudioError, ClassifierError) as e:
        raise click.ClickException(str(e)) from e
    metrics = {"eval_map": res.eval_map, "n_train": res.n_train, "n_eval": res.n_eval, "final_loss": float(np.mean(res.losses[-10:])),
               "n_parameters": n_parameters(res.model)}
    manifest = {"command": "musiclm-eval train classifier " + shlex.join(["--data", data, "--out", out, "--epochs", str(epochs), "--seed", str(seed)]),
                "seed": seed, "epochs": epochs, "data_sha256": res.data_sha256, "label_space": res.label_space.name,
                "label_space_digest": res.label_space.digest, "metrics": metrics}
    path = save_classifier(res.model, res.label_space, out, meta=manifest)
    write_manifest(path, manifest)
    click.echo(f"wrote {path}: eval mAP {res.eval_map:.4f}" if res.eval_map is not None else f"wrote {path}")

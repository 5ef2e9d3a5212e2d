"""One-class detector (spec section 3): GMM on real images' features, per-set metrics and tables.

    python oc_main.py --config configs/oc.yaml oneclass.checkpoint=CKPT \
        'oneclass.train_dirs=[data/imagenet, data/lsun]' oneclass.test_root=data/test run.out_dir=runs/oc

Features of every image come from ALL its grid patches (one image per forward, the CNN run in
chunks of ``oneclass.batch_patches``) and are cached per (checkpoint hash, set, perturbation, cap)
under ``oneclass.cache_dir`` (default ``<out_dir>/cache``). The mixture is fitted on the real-only
training folders (first ``per_dir`` files of each after a seeded shuffle) and saved as ``gmm.npz``.
An image is predicted real iff its log-likelihood exceeds the training quantile threshold.

Writes: ``oc_metrics.csv`` / ``oc_metrics.md`` (one block per perturbation; AP with real as
positive is the official figure), ``scores/<perturbation>/<set>.npz`` (per-image log-likelihood,
label, path), ``gmm.npz``, ``skipped.jsonl``, ``summary.json``, ``config.yaml``, ``environment.json``.
Single process (the GMM and the per-image loop do not need DDP).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from sdaie.config import Config, to_dict
from sdaie.data.imageio import list_images
from sdaie.data.transforms import CLEAN, Perturbation, perturbation_list
from sdaie.device import resolve_device
from sdaie.metrics import detection_metrics
from sdaie.hashing import file_hash
from sdaie.oneclass.features import FeatureCache, FeatureSet, extract_features
from sdaie.oneclass.gmm import fit_one_class, save_gmm
from sdaie.runinfo import write_run_info
from sdaie.seeding import seed_all
from sdaie.engine.runlog import Timer, append_jsonl, setup_logging
from sdaie.stages.common import finish_evaluation, run_stage, stage_parser
from sdaie.tables import write_tables
from sdaie.data.testsets import discover_sets, list_labelled


def get_args_parser():
    return stage_parser("oc_main", "One-class (GMM) detector on pretext features.")


def training_files(dirs: list[str], per_dir: int, seed: int) -> list[Path]:
    """Per folder: images listed recursively (sorted), shuffled with ``seed``, first ``per_dir``."""
    out: list[Path] = []
    for d in dirs:
        files = list_images(d)
        if not files:
            raise FileNotFoundError(f"oneclass.train_dirs: no images under {d}")
        random.Random(seed).shuffle(files)
        out += files[:per_dir]
    return out


def save_scores(path: Path, fs: FeatureSet, scores: np.ndarray, **extra: Any) -> None:
    from sdaie.atomic import atomic_savez

    atomic_savez(path, scores=scores, labels=fs.labels, paths=np.array(fs.paths, dtype=str),
                 n_patches=fs.n_patches, **extra)


def run(cfg: Config) -> dict[str, Any]:
    from sdaie.data.patches import grid_patches
    from sdaie.models import load_extractor

    oc = cfg.oneclass
    for key in ("checkpoint", "test_root"):
        if not getattr(oc, key):
            raise SystemExit(f"oneclass.{key} is not set")
    if not oc.train_dirs:
        raise SystemExit("oneclass.train_dirs is empty: give real-only folders to fit the GMM on")
    out = Path(cfg.run.out_dir)
    log = setup_logging(out, True, "oc_main")
    timer = Timer()
    device = resolve_device(cfg.run.device)
    seed_all(cfg.run.seed)
    extractor = load_extractor(oc.checkpoint, map_location=device).eval()
    size = extractor.patch_size
    ckpt_hash = file_hash(oc.checkpoint)
    cache = FeatureCache(oc.cache_dir or out / "cache", ckpt_hash)
    env = write_run_info(out, cfg, stage="oc_main", checkpoint=str(oc.checkpoint),
                   checkpoint_sha256_16=ckpt_hash)
    skipped_log = out / "skipped.jsonl"
    skipped_log.unlink(missing_ok=True)
    shutil.rmtree(out / "scores", ignore_errors=True)  # the report plots every set found there

    def patcher(img):
        return grid_patches(img, size=size, cap=oc.max_patches, normalized=False)

    def features(name: str, paths: list[Path], labels: list[int], pert: Perturbation) -> FeatureSet:
        fs = cache.load(name, pert, oc.max_patches, paths)
        if fs is None:
            fs = extract_features(extractor, paths, labels, patcher, pert, oc.batch_patches, device,
                                  strict=cfg.run.strict, progress=True, desc=f"{name} {pert.spec}")
            cache.save(name, pert, oc.max_patches, paths, fs)
        else:
            log.info("features of %s (%s) from the cache", name, pert.spec)
        for s in fs.skipped:
            log.warning("skipped %s: %s", s["path"], s["reason"])
        append_jsonl(skipped_log, [{**s, "set": name, "perturbation": pert.spec} for s in fs.skipped])
        return fs

    train_paths = training_files(oc.train_dirs, oc.per_dir, oc.shuffle_seed)
    train = features("_train", train_paths, [0] * len(train_paths), CLEAN)
    if len(train.paths) < max(oc.components, 2):
        raise SystemExit(f"oneclass.train_dirs: only {len(train.paths)} of {len(train_paths)} "
                         f"training images are usable, too few for a {oc.components}-component "
                         f"GMM (reasons in {skipped_log})")
    log.info("fitting a %d-component %s GMM on %d real images (%d-d features)", oc.components,
             oc.covariance_type, len(train.paths), train.features.shape[1])
    model = fit_one_class(train.features, oc.components, oc.covariance_type, oc.init_params,
                          oc.random_state, oc.quantile)
    save_gmm(out / "gmm.npz", model, checkpoint=str(oc.checkpoint), checkpoint_hash=ckpt_hash,
             train_dirs=list(oc.train_dirs), n_train=len(train.paths),
             max_patches=oc.max_patches, patch_size=size)
    log.info("threshold %.4f (training log-likelihood quantile %.3f)", model.threshold, oc.quantile)

    sets = discover_sets(oc.test_root, oc.sets)
    blocks: dict[str, dict[str, dict[str, float]]] = {}
    for pert in perturbation_list(oc.perturbations):
        block = blocks.setdefault(pert.spec, {})
        for ts in sets:
            files = list_labelled(ts.path)
            if files.unlabelled or files.ambiguous:
                log.warning("%s: %d files without a label folder and %d under both kinds left out",
                            ts.name, len(files.unlabelled), len(files.ambiguous))
            if not files.paths:
                log.warning("test set %s has no labelled images; left out", ts.name)
                continue
            fs = features(ts.name, files.paths, files.labels, pert)
            ll = model.score(fs.features) if fs.paths else np.zeros(0)  # no usable image: NaN row
            block[ts.name] = detection_metrics(fs.labels, -ll, model.predict_fake(ll))
            save_scores(out / "scores" / pert.tag / f"{ts.name}.npz", fs, ll,
                        threshold=np.float64(model.threshold))
            m = block[ts.name]
            log.info("%-12s %-10s acc %.3f  AP(real+) %.3f  AUC %.3f", ts.display, pert.spec,
                     m["acc"], m["ap_real_pos"], m["roc_auc"])
    if not any(m["n_real"] + m["n_fake"] for block in blocks.values() for m in block.values()):
        raise SystemExit(f"no usable labelled test image under {oc.test_root!r} (reasons in {skipped_log})")
    notes = [f"checkpoint: {oc.checkpoint} (sha256 {ckpt_hash})",
             f"GMM: {oc.components} components, {oc.covariance_type} covariance, fitted on "
             f"{len(train.paths)} real images; threshold = training log-likelihood at the "
             f"{oc.quantile:g} quantile ({model.threshold:.4f}); real iff log p > threshold",
             "AP (real+): real images positive, ranked by log-likelihood (official convention); "
             "AP (fake+) and ROC-AUC rank by minus log-likelihood"]
    csv_path, md_path = write_tables(out, "oc_metrics", blocks, "One-class detector", "ap_real_pos",
                                     notes)
    summary = {"stage": "oc_main", "checkpoint": str(oc.checkpoint), "checkpoint_hash": ckpt_hash,
               "train_images": len(train.paths), "threshold": model.threshold,
               "gmm": str(out / "gmm.npz"), "results": blocks, "time_s": timer.elapsed(),
               "config": to_dict(cfg), "environment": env}
    return finish_evaluation(out, "oc", model.threshold, (csv_path, md_path), summary, log)


def main(argv: list[str] | None = None) -> int:
    return run_stage(get_args_parser(), argv, lambda cfg, _args: run(cfg))

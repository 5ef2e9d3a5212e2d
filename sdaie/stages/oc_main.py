"""One-class detector (spec section 3): GMM on real images' features, per-set metrics and tables.

    python oc_main.py --config configs/oc.yaml oneclass.checkpoint=CKPT \
        'oneclass.train_dirs=[data/imagenet, data/lsun]' oneclass.test_root=data/test run.out_dir=runs/oc

Features of every image come from ALL its grid patches (one image per forward, the CNN run in
chunks of ``oneclass.batch_patches``) and are cached per (checkpoint hash, set, perturbation, cap)
under ``oneclass.cache_dir`` (default ``<out_dir>/cache``). The mixture is fitted on the real-only
training folders (first ``per_dir`` files of each after a seeded shuffle) and saved as ``gmm.npz``.
An image is predicted real iff its log-likelihood exceeds the training quantile threshold.

``oneclass.protocol``: ``spec`` (default) follows the paper as written; ``official`` repeats the
authors' steps (:mod:`sdaie.data.official`): training images per folder in ``os.walk`` order,
shuffled with ``random.seed(42)``, first ``per_dir``; test images and labels by their path tests;
transposed zero-padded centre crop and floored resize sizes; the 20000-patch cap.

Writes: ``oc_metrics.csv`` / ``oc_metrics.md`` (one block per perturbation; AP with real as
positive is the official figure), ``scores/<perturbation>/<set>.npz`` (per-image log-likelihood,
label, path), ``gmm.npz``, ``skipped.jsonl``, ``summary.json``, ``config.yaml``, ``environment.json``.
Single process (the GMM and the per-image loop do not need DDP).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from sdaie.config import Config, ConfigError, LocalisationConfig, OneClassConfig, to_dict
from sdaie.data import official
from sdaie.data.testsets import TestSet, discover_sets
from sdaie.data.transforms import CLEAN, perturbation_list
from sdaie.data.walk import scan_folder
from sdaie.device import resolve_device
from sdaie.evaluation import (
    PROTOCOL_NOTES,
    CachedFeatures,
    EvalOutput,
    OneClassSets,
    evaluate,
    write_results,
)
from sdaie.hashing import file_hash
from sdaie.localisation import localisation_spec, one_class_patch_thresholds, run_localisation
from sdaie.models import load_extractor
from sdaie.oneclass.gmm import OneClassGMM, fit_one_class, save_gmm, small_training_set
from sdaie.scoring import FeatureCache, FeatureScorer
from sdaie.seeding import seed_all
from sdaie.stages.checks import check_oc_main
from sdaie.stages.common import stage_main, stage_parser


def get_args_parser() -> argparse.ArgumentParser:
    return stage_parser("oc_main")


def training_files(dirs: list[str], per_dir: int, seed: int, protocol: str = "spec") -> list[Path]:
    """Per folder: images listed recursively (sorted), shuffled with ``seed``, first ``per_dir``.

    ``official``: every file in ``os.walk`` order instead of the sorted images (their code).
    """
    if protocol == "official":
        return official.training_files(dirs, per_dir, seed)
    out: list[Path] = []
    for d in dirs:
        files = scan_folder(d).images
        if not files:
            raise ConfigError(f"oneclass.train_dirs: no image files under {d}")
        random.Random(seed).shuffle(files)
        out += files[:per_dir]
    return out


def fit_gmm(oc: OneClassConfig, features: CachedFeatures, output: EvalOutput,
            ckpt_hash: str, loc: LocalisationConfig | None = None,
            ) -> tuple[OneClassGMM, int, list[str]]:
    """Fit the mixture on the training folders' features, save ``gmm.npz``; (model, n images,
    warnings)."""
    paths = training_files(oc.train_dirs, oc.per_dir, oc.shuffle_seed, oc.protocol)
    train = features("_train", paths, [0] * len(paths), CLEAN)
    output.report_skipped("_train", CLEAN, train.skipped)
    if len(train.paths) < max(oc.components, 2):
        raise SystemExit(f"oneclass.train_dirs: only {len(train.paths)} of {len(paths)} "
                         f"training images are usable, too few for a {oc.components}-component "
                         f"GMM (reasons in {output.skipped_log})")
    output.log.info("fitting a %d-component %s GMM on %d real images (%d-d features)",
                    oc.components, oc.covariance_type, len(train.paths), train.features.shape[1])
    warning = small_training_set(len(train.paths), train.features.shape[1], oc.components,
                                 oc.covariance_type)
    if warning:
        output.log.warning("%s", warning)
    model = fit_one_class(train.features, oc.components, oc.covariance_type, oc.init_params,
                          oc.random_state, oc.quantile, oc.reg_covar)
    if loc is not None:  # heatmaps: the patch thresholds (localisation.calibration_images)
        scorer = FeatureScorer(features.extractor, oc.batch_patches, features.device, model)
        model.patch_thresholds = one_class_patch_thresholds(
            scorer, train.paths, loc, oc.max_patches, oc.quantile, output.log, oc.protocol)
    save_gmm(output.out / "gmm.npz", model, checkpoint=str(oc.checkpoint),
             checkpoint_hash=ckpt_hash, train_dirs=list(oc.train_dirs), n_train=len(train.paths),
             max_patches=oc.max_patches, patch_size=features.extractor.patch_size,
             protocol=oc.protocol)
    output.log.info("threshold %.4f (training log-likelihood quantile %.3f)", model.threshold,
                    oc.quantile)
    return model, len(train.paths), [warning] if warning else []


def evaluation_sets(oc: OneClassConfig) -> list[TestSet]:
    """spec: sets with label folders (or ``oneclass.sets``); official: every sub-folder."""
    if oc.protocol == "official":
        return official.sub_folder_sets(oc.test_root, oc.sets)
    return discover_sets(oc.test_root, oc.sets)


def run(cfg: Config) -> dict[str, Any]:
    oc = cfg.oneclass
    check_oc_main(cfg)
    test_sets = evaluation_sets(oc)  # before any model is loaded
    output = EvalOutput(cfg.run.out_dir, "oc_main")
    device = resolve_device(cfg.run.device)
    seed_all(cfg.run.seed)
    extractor = load_extractor(oc.checkpoint, map_location=device).eval()
    ckpt_hash = file_hash(oc.checkpoint)
    cache = FeatureCache(oc.cache_dir or output.out / "cache", ckpt_hash, oc.protocol)
    features = CachedFeatures(extractor, cache, oc.max_patches, oc.batch_patches, device,
                              cfg.run.strict, output.log, oc.protocol)
    loc_spec = localisation_spec(cfg.localisation, "oc", extractor.patch_size)
    env = output.begin(cfg, checkpoint=str(oc.checkpoint), checkpoint_sha256_16=ckpt_hash)
    model, n_train, warnings = fit_gmm(oc, features, output, ckpt_hash, cfg.localisation)
    sets = OneClassSets(features, model)
    results = evaluate(sets, test_sets, perturbation_list(oc.perturbations), output)
    if not results.n_scored:
        raise SystemExit(f"no usable labelled test image under {oc.test_root!r} "
                         f"(reasons in {output.skipped_log})")
    notes = [f"checkpoint: {oc.checkpoint} (sha256 {ckpt_hash})", PROTOCOL_NOTES[oc.protocol],
             f"GMM: {oc.components} components, {oc.covariance_type} covariance, fitted on "
             f"{n_train} real images; threshold = training log-likelihood at the "
             f"{oc.quantile:g} quantile ({model.threshold:.4f}); real iff log p > threshold",
             "AP (real+): real images positive, ranked by log-likelihood (official convention); "
             "AP (fake+) and ROC-AUC rank by minus log-likelihood",
             *(f"warning: {w}" for w in warnings)]
    summary = {"stage": "oc_main", "checkpoint": str(oc.checkpoint), "checkpoint_hash": ckpt_hash,
               "protocol": oc.protocol, "train_images": n_train, "threshold": model.threshold,
               "warnings": warnings,
               "gmm": str(output.out / "gmm.npz"), "results": results.blocks,
               "ignored": results.ignored,
               "time_s": output.timer.elapsed(), "config": to_dict(cfg), "environment": env}
    summary.update(run_localisation(
        FeatureScorer(extractor, oc.batch_patches, device, model), sets.decision, "oc",
        sets.title, cfg.localisation, loc_spec, oc.max_patches, output, model.patch_thresholds,
        oc.protocol))
    summary["time_s"] = output.timer.elapsed()
    return write_results(output, sets, results, notes, summary)


def execute(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    return run(cfg)


def main(argv: list[str] | None = None) -> int:
    return stage_main("oc_main", argv)

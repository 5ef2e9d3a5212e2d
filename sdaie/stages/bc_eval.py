"""Binary detector evaluation (spec section 4): full-image grid patches, per-set tables.

    python bc_eval.py --config configs/bc_eval.yaml eval.checkpoint=CKPT eval.test_root=data/test \
        run.out_dir=runs/bc_eval

Each image is tiled into all non-overlapping patches (cap ``eval.max_patches``); the trainable
extractor runs over them ``eval.batch_patches`` at a time and its transformer over all tokens;
p(fake) = 1 - softmax(logits)[0]; predicted fake iff p(fake) > ``eval.threshold`` (0.5). Every
set under ``eval.test_root`` (official order, then others) and every ``eval.wild_dirs`` folder is
scored clean and under each of ``eval.perturbations`` (``jpeg=Q``, ``blur=SIGMA``, ``resize=S``).

Writes: ``bc_metrics.csv`` / ``bc_metrics.md`` (AP with fake as positive is the official figure),
``scores/<perturbation>/<set>.npz`` (per-image p(fake), label, path, patch count),
``wild_unlabelled.json`` (folders without label folders: share flagged fake, mean p(fake)),
``skipped.jsonl``, ``summary.json``, ``config.yaml``, ``environment.json``. Single process.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sdaie.atomic import atomic_savez
from sdaie.config import Config, to_dict
from sdaie.data.imageio import ImageLoadError, load_image
from sdaie.data.transforms import Perturbation, perturbation_list
from sdaie.device import resolve_device
from sdaie.metrics import detection_metrics
from sdaie.hashing import file_hash
from sdaie.runinfo import write_run_info
from sdaie.engine.runlog import Timer, append_jsonl, setup_logging, write_json
from sdaie.stages.common import finish_evaluation, run_stage, stage_parser
from sdaie.tables import write_tables
from sdaie.data.testsets import TestSet, discover_sets, list_labelled


def get_args_parser():
    return stage_parser("bc_eval", "Evaluate a binary detector on test sets (full-image patches).")


@torch.no_grad()
def p_fake(detector, patches: torch.Tensor, batch_patches: int, device: torch.device) -> float:
    """1 - softmax(logits)[0] of one image (the official expression)."""
    logits = detector.image_logits(patches.to(device), chunk=batch_patches).float()
    return float(1.0 - torch.softmax(logits, dim=0)[0])


def score_files(detector, paths: list[Path], pert: Perturbation, size: int, cfg: Config,
                device: torch.device, desc: str) -> tuple[np.ndarray, list[int], np.ndarray, list[dict]]:
    """p(fake) per readable file; returns (scores, kept positions, patch counts, skipped)."""
    from sdaie.data.patches import grid_patches

    scores, kept, counts, skipped = [], [], [], []
    for i, path in enumerate(tqdm(paths, desc=desc, leave=False)):
        try:
            img = pert(load_image(path))
        except ImageLoadError as exc:
            if cfg.run.strict:
                raise
            skipped.append({"path": str(path), "reason": str(exc)})
            continue
        patches = grid_patches(img, size=size, cap=cfg.eval.max_patches, normalized=False)
        scores.append(p_fake(detector, patches, cfg.eval.batch_patches, device))
        kept.append(i)
        counts.append(patches.shape[0])
    return np.asarray(scores, np.float64), kept, np.asarray(counts, np.int64), skipped


def run(cfg: Config) -> dict[str, Any]:
    from sdaie.models import load_binary_detector

    ev = cfg.eval
    if not ev.checkpoint:
        raise SystemExit("eval.checkpoint is not set")
    if not ev.test_root and not ev.wild_dirs:
        raise SystemExit("set eval.test_root and/or eval.wild_dirs")
    out = Path(cfg.run.out_dir)
    log = setup_logging(out, True, "bc_eval")
    timer = Timer()
    device = resolve_device(cfg.run.device)
    detector = load_binary_detector(ev.checkpoint, map_location=device).eval()
    size = detector.patch_size
    ckpt_hash = file_hash(ev.checkpoint)
    env = write_run_info(out, cfg, stage="bc_eval", checkpoint=str(ev.checkpoint),
                   checkpoint_sha256_16=ckpt_hash)
    skipped_log = out / "skipped.jsonl"
    skipped_log.unlink(missing_ok=True)
    shutil.rmtree(out / "scores", ignore_errors=True)  # the report plots every set found there

    sets: list[TestSet] = discover_sets(ev.test_root, ev.sets) if ev.test_root else []
    wild = [TestSet(f"wild/{Path(d).name}", Path(d)) for d in ev.wild_dirs]
    blocks: dict[str, dict[str, dict[str, float]]] = {}
    unlabelled: dict[str, dict[str, dict[str, float]]] = {}
    for pert in perturbation_list(ev.perturbations):
        block = blocks.setdefault(pert.spec, {})
        for ts in sets + wild:
            files = list_labelled(ts.path)
            is_wild = ts in wild
            if files.paths and (files.unlabelled or files.ambiguous):
                log.warning("%s: %d files without a label folder and %d under both kinds left out",
                            ts.name, len(files.unlabelled), len(files.ambiguous))
            if not files.paths and not (is_wild and files.unlabelled):
                log.warning("%s has no images under 0_real/1_fake (or nature/ai); left out", ts.path)
                continue
            if files.paths:
                scores, kept, counts, skipped = score_files(detector, files.paths, pert, size, cfg,
                                                            device, f"{ts.name} {pert.spec}")
                labels = np.asarray(files.labels, np.int64)[kept]
                block[ts.name] = detection_metrics(labels, scores, scores > ev.threshold)
                m = block[ts.name]
                log.info("%-12s %-10s acc %.3f  AP(fake+) %.3f  AUC %.3f", ts.display, pert.spec,
                         m["acc"], m["ap_fake_pos"], m["roc_auc"])
                paths = [str(files.paths[i]) for i in kept]
            else:  # an in-the-wild folder without labels: report what the detector says
                scores, kept, counts, skipped = score_files(detector, files.unlabelled, pert, size,
                                                            cfg, device, f"{ts.name} {pert.spec}")
                labels = np.full(len(kept), -1, np.int64)
                unlabelled.setdefault(pert.spec, {})[ts.name] = {
                    "n": int(len(scores)), "flagged_fake": float(np.mean(scores > ev.threshold)) if len(scores) else float("nan"),
                    "mean_p_fake": float(np.mean(scores)) if len(scores) else float("nan")}
                paths = [str(files.unlabelled[i]) for i in kept]
            safe = ts.name.replace("/", "_")
            atomic_savez(out / "scores" / pert.tag / f"{safe}.npz", scores=scores, labels=labels,
                         paths=np.array(paths, dtype=str), n_patches=counts)
            for s in skipped:
                log.warning("skipped %s: %s", s["path"], s["reason"])
            append_jsonl(skipped_log, [{**s, "set": ts.name, "perturbation": pert.spec}
                                       for s in skipped])
    scored = sum(m["n_real"] + m["n_fake"] for block in blocks.values() for m in block.values())
    scored += sum(m["n"] for block in unlabelled.values() for m in block.values())
    if not scored:
        raise SystemExit(f"no usable test image under {ev.test_root!r} (reasons in {skipped_log})")
    notes = [f"checkpoint: {ev.checkpoint} (sha256 {ckpt_hash})",
             f"p(fake) = 1 - softmax[0] over all grid patches (cap {ev.max_patches}); "
             f"fake iff p(fake) > {ev.threshold:g}",
             "AP (fake+): generated images positive, ranked by p(fake) (official convention)"]
    csv_path, md_path = write_tables(out, "bc_metrics", blocks, "Binary detector", "ap_fake_pos",
                                     notes)
    if unlabelled:
        write_json(out / "wild_unlabelled.json", unlabelled)
    summary = {"stage": "bc_eval", "checkpoint": str(ev.checkpoint), "checkpoint_hash": ckpt_hash,
               "results": blocks, "wild_unlabelled": unlabelled, "time_s": timer.elapsed(),
               "config": to_dict(cfg), "environment": env}
    return finish_evaluation(out, "bc", ev.threshold, (csv_path, md_path), summary, log)


def main(argv: list[str] | None = None) -> int:
    return run_stage(get_args_parser(), argv, lambda cfg, _args: run(cfg))

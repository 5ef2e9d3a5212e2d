"""Binary detector evaluation (spec section 4): full-image grid patches, per-set tables.

    python bc_eval.py --config configs/bc_eval.yaml eval.checkpoint=CKPT eval.test_root=data/test \
        run.out_dir=runs/bc_eval

Each image is tiled into all non-overlapping patches (cap ``eval.max_patches``); the trainable
extractor runs over them ``eval.batch_patches`` at a time and its transformer over all tokens;
p(fake) = 1 - softmax(logits)[0]; predicted fake iff p(fake) > ``eval.threshold`` (0.5). Every
set under ``eval.test_root`` (official order, then others) and every ``eval.wild_dirs`` folder is
scored clean and under each of ``eval.perturbations`` (``jpeg=Q``, ``blur=SIGMA``, ``resize=S``).

``eval.protocol``: ``spec`` (default) follows the paper as written; ``official`` repeats the
authors' steps (:mod:`sdaie.data.official`): every sub-folder of the test root is a set, every file
below it an image, real iff ``0_real`` is in its path; transposed zero-padded centre crop, floored
resize sizes, the 40000-patch cap; each ``eval.wild_dirs`` root is run as they run it, its
sub-folders being sets with their own block and average (``<perturbation>, wild/<root>``).

Writes: ``bc_metrics.csv`` / ``bc_metrics.md`` (AP with fake as positive is the official figure),
``scores/<perturbation>/<set>.npz`` (per-image p(fake), label, path, patch count),
``wild_unlabelled.json`` (folders without label folders: share flagged fake, mean p(fake)),
``skipped.jsonl``, ``summary.json``, ``config.yaml``, ``environment.json``. Single process.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sdaie.config import Config, EvalConfig, to_dict
from sdaie.data import official
from sdaie.data.testsets import TestSet, discover_sets
from sdaie.data.transforms import perturbation_list
from sdaie.device import resolve_device
from sdaie.evaluation import PROTOCOL_NOTES, BinarySets, EvalOutput, evaluate, write_results
from sdaie.hashing import file_hash
from sdaie.localisation import localisation_spec, run_localisation
from sdaie.models import load_binary_detector
from sdaie.scoring import BinaryScorer
from sdaie.stages.checks import check_bc_eval
from sdaie.stages.common import stage_main, stage_parser


def get_args_parser() -> argparse.ArgumentParser:
    return stage_parser("bc_eval")


def evaluation_sets(ev: EvalConfig) -> tuple[list[TestSet], list[TestSet], dict[str, list[TestSet]]]:
    """(test sets, pooled wild sets, wild groups). spec: sets with label folders, each wild
    folder one pooled set; official: every sub-folder a set, each wild root a group of its
    sub-folders."""
    if ev.protocol == "official":
        tests = official.sub_folder_sets(ev.test_root, ev.sets) if ev.test_root else []
        groups = {f"wild/{Path(d).name}": official.sub_folder_sets(d, prefix=f"wild/{Path(d).name}/")
                  for d in ev.wild_dirs}
        empty = [d for d, members in zip(ev.wild_dirs, groups.values()) if not members]
        if empty:
            raise SystemExit(f"eval.wild_dirs: {empty[0]} has no sub-folder; under protocol "
                             "official each sub-folder of a wild root is one set, as the authors "
                             "run it (put the images in sub-folders, or use protocol spec)")
        return tests, [], groups
    tests = discover_sets(ev.test_root, ev.sets) if ev.test_root else []
    return tests, [TestSet(f"wild/{Path(d).name}", Path(d)) for d in ev.wild_dirs], {}


def run(cfg: Config) -> dict[str, Any]:
    ev = cfg.eval
    check_bc_eval(cfg)
    test_sets, wild, groups = evaluation_sets(ev)  # before any model is loaded
    output = EvalOutput(cfg.run.out_dir, "bc_eval")
    device = resolve_device(cfg.run.device)
    detector = load_binary_detector(ev.checkpoint, map_location=device).eval()
    ckpt_hash = file_hash(ev.checkpoint)
    loc_spec = localisation_spec(cfg.localisation, "bc", detector.patch_size)
    env = output.begin(cfg, checkpoint=str(ev.checkpoint), checkpoint_sha256_16=ckpt_hash)
    sets = BinarySets(BinaryScorer(detector, ev.batch_patches, device), ev.max_patches,
                      ev.threshold, cfg.run.strict, ev.protocol)
    results = evaluate(sets, test_sets, perturbation_list(ev.perturbations), output, wild,
                       groups)
    if not results.n_scored:
        raise SystemExit(f"no usable test image under {ev.test_root!r} "
                         f"(reasons in {output.skipped_log})")
    notes = [f"checkpoint: {ev.checkpoint} (sha256 {ckpt_hash})", PROTOCOL_NOTES[ev.protocol],
             f"p(fake) = 1 - softmax[0] over all grid patches (cap {ev.max_patches}); "
             f"fake iff p(fake) > {ev.threshold:g}",
             "AP (fake+): generated images positive, ranked by p(fake) (official convention)"]
    summary = {"stage": "bc_eval", "checkpoint": str(ev.checkpoint), "checkpoint_hash": ckpt_hash,
               "protocol": ev.protocol,
               "results": results.blocks, "wild_unlabelled": results.unlabelled,
               "ignored": results.ignored,
               "time_s": output.timer.elapsed(), "config": to_dict(cfg), "environment": env}
    summary.update(run_localisation(sets.scorer, sets.decision, "bc", sets.title,
                                    cfg.localisation, loc_spec, ev.max_patches, output,
                                    protocol=ev.protocol))
    summary["time_s"] = output.timer.elapsed()
    return write_results(output, sets, results, notes, summary)


def execute(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    return run(cfg)


def main(argv: list[str] | None = None) -> int:
    return stage_main("bc_eval", argv)

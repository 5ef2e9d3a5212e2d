"""Binary detector training (spec section 4), one process or torchrun/DDP.

    torchrun --nproc_per_node=8 bc_train.py --config configs/bc_train.yaml \
        binary.pretext_checkpoint=CKPT binary.train_root=data/progan_train run.out_dir=runs/bc

A frozen copy of the pretext extractor, a trainable copy of the same architecture initialised at
random, and Linear(D, 2) on the trainable copy's feature. Loss = cross-entropy + alpha * sum of
MSE(f1..f5) between the copies. Input: the augmented image (resize / blur / JPEG with the
configured probabilities) cut into ``data.patches`` random patches. Adam on the trainable copy and
``fc`` only (the frozen copy has no gradients; DDP runs with ``find_unused_parameters=False``).

Writes into ``run.out_dir``: ``checkpoints/epoch_<e>.pt`` after every epoch (this project's format:
model, optimiser, epoch, RNG states) and ``checkpoints/last.pt``; ``train_log.csv`` every
``binary.log_every`` steps (loss, CE, each MSE term, batch accuracy); ``val_log.csv`` after each
epoch when ``binary.val_root`` is set: accuracy / AP / ROC-AUC of the QUICK validation on
``data.patches`` random patches per image (not the full-image protocol of bc_eval); plus
``skipped.jsonl``, ``summary.json``, ``config.yaml``, ``environment.json``.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from sdaie.config import Config, to_dict
from sdaie.data.labelled import LabelledPatches, collate_skips
from sdaie.data.pairs import worker_init
from sdaie.data.transforms import AugmentConfig
from sdaie.distributed import DistInfo, all_gather_objects, all_reduce_sum, barrier, distributed
from sdaie.metrics import detection_metrics
from sdaie.runinfo import write_run_info
from sdaie.seeding import seed_all
from sdaie.engine.checkpointing import check_resumable, link_latest, resolve_resume, restore_training, rng_state
from sdaie.engine.runlog import CsvLog, SkipReporter, Timer, setup_logging, write_json
from sdaie.stages.common import run_stage, stage_parser

CKPT_PREFIX = "epoch"
MSE_TERMS = ("mse_f1", "mse_f2", "mse_f3", "mse_f4", "mse_f5")


def get_args_parser():
    return stage_parser("bc_train", "Binary (real vs generated) detector training.", resume=True)


class WithTaps(nn.Module):
    """``forward`` = the detector's ``forward_with_taps``, so DDP sees (and syncs) that call."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor):
        return self.detector.forward_with_taps(x)


def _loader(dataset, batch_size: int, sampler, cfg: Config, info: DistInfo, seed_step: int) -> DataLoader:
    workers = cfg.data.workers
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate_skips, drop_last=False,
                      pin_memory=cfg.data.pin_memory and info.device.type == "cuda",
                      worker_init_fn=worker_init(cfg.run.seed, seed_step) if workers else None)


@torch.no_grad()
def quick_validation(detector: nn.Module, dataset: LabelledPatches, cfg: Config, info: DistInfo,
                     autocast) -> dict[str, float]:
    """p(fake) on ``data.patches`` random patches per image (fixed seeds), gathered over ranks."""
    n = len(dataset)
    limit = cfg.binary.val_batches * cfg.binary.batch_size if cfg.binary.val_batches > 0 else n
    ids = list(range(min(n, limit)))[info.rank::info.world_size]
    detector.eval()
    scores, labels = [], []
    for x, y, _ in _loader(Subset(dataset, ids), cfg.binary.batch_size, None, cfg, info, 0):
        with autocast():
            logits = detector(x.to(info.device)).float()
        scores.append((1.0 - torch.softmax(logits, dim=1)[:, 0]).cpu().numpy())
        labels.append(y.numpy())
    detector.train()
    parts = all_gather_objects((np.concatenate(scores) if scores else np.zeros(0),
                                np.concatenate(labels) if labels else np.zeros(0, np.int64)))
    p = np.concatenate([s for s, _ in parts])
    y = np.concatenate([lab for _, lab in parts]).astype(np.int64)
    m = detection_metrics(y, p, p > cfg.eval.threshold)
    return {f"val_random_patches_{k}": v for k, v in m.items()}


def train(cfg: Config, resume_arg: str | None = None) -> dict[str, Any]:
    from sdaie.models.checkpoint import (binary_from_pretext, load_checkpoint, save_checkpoint)
    from sdaie.models.losses import binary_loss

    bc = cfg.binary
    for key in ("pretext_checkpoint", "train_root"):
        if not getattr(bc, key):
            raise SystemExit(f"binary.{key} is not set")
    out = Path(cfg.run.out_dir)
    ckpt_dir = out / "checkpoints"
    with distributed(cfg.run.device, cfg.run.dist_timeout_s) as info:
        log = setup_logging(out if info.is_main else None, info.is_main, "bc_train")
        timer = Timer()
        seed_all(cfg.run.seed)  # identical random copy on every rank
        detector = binary_from_pretext(bc.pretext_checkpoint).to(info.device)
        size = detector.patch_size
        trainable = [p for p in detector.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=bc.lr)
        epoch = 0
        resume = resolve_resume(resume_arg, cfg.run.resume, ckpt_dir, CKPT_PREFIX)
        if resume is not None:
            ckpt = load_checkpoint(resume)
            check_resumable(ckpt, "binary", "epoch", detector.trainable_extractor.cfg, None,
                            str(resume))
            restore_training(ckpt, detector, optimizer, str(resume))
            epoch = int(ckpt["epoch"])
            log.info("resumed from %s after epoch %d", resume, epoch)
        wrapped: nn.Module = WithTaps(detector)
        if info.distributed:
            wrapped = DistributedDataParallel(
                wrapped, device_ids=[info.device] if info.device.type == "cuda" else None,
                find_unused_parameters=False)

        train_set = LabelledPatches(bc.train_root, cfg.data.patches, size,
                                    AugmentConfig.from_binary(bc), cfg.run.seed)
        val_set = (LabelledPatches(bc.val_root, cfg.data.patches, size, None, cfg.run.seed + 1,
                                   genimage_split="val") if bc.val_root else None)
        sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank,
                                     shuffle=True, seed=cfg.run.seed, drop_last=False)
        env: dict = {}
        if info.is_main:
            env = write_run_info(out, cfg, stage="bc_train", world_size=info.world_size,
                           resumed_from=str(resume) if resume else None,
                           train_images=len(train_set), unlabelled=len(train_set.files.unlabelled))
            for p in train_set.files.unlabelled[:20]:
                log.warning("no 0_real/1_fake (or nature/ai) folder on the path, left out: %s", p)
        log.info("%d training images (%d real, %d fake), %d ranks x %d, epochs %d -> %d, device %s",
                 len(train_set), train_set.files.n_real, train_set.files.n_fake, info.world_size,
                 bc.batch_size, epoch, bc.epochs, info.device)

        steps_per_epoch = math.ceil(len(sampler) / bc.batch_size)
        train_log = CsvLog(out / "train_log.csv", truncate_after=epoch * steps_per_epoch) if info.is_main else None
        val_log = CsvLog(out / "val_log.csv", truncate_after=epoch, key="epoch") if info.is_main else None
        use_amp = bc.amp and info.device.type == "cuda"

        def autocast():
            return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()

        report_skipped = SkipReporter(out / "skipped.jsonl", info.is_main, log)

        val_metrics: dict[str, float] = {}
        detector.train()
        while epoch < bc.epochs:
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            loader = _loader(train_set, bc.batch_size, sampler, cfg, info, epoch)
            sums = torch.zeros(3 + len(MSE_TERMS), dtype=torch.float64)  # loss, ce, mse..., correct
            count, skipped_buf, tick = 0, [], Timer()
            for i, (x, y, skipped) in enumerate(loader, start=1):
                step = epoch * steps_per_epoch + i
                x, y = x.to(info.device, non_blocking=True), y.to(info.device)
                with autocast():
                    logits, taps_r, taps_p = wrapped(x)
                total, parts = binary_loss(logits.float(), y, [t.float() for t in taps_r],
                                           [t.float() for t in taps_p], bc.alpha)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                if not math.isfinite(total.item()):
                    raise FloatingPointError(f"non-finite loss at epoch {epoch + 1} step {i}: {parts}")
                b = y.shape[0]
                sums += torch.tensor([total.item() * b, parts["ce"].item() * b,
                                      *[parts[k].item() * b for k in MSE_TERMS],
                                      float((logits.argmax(1) == y).sum())], dtype=torch.float64)
                count += b
                skipped_buf += skipped
                if i % bc.log_every == 0 or i == steps_per_epoch:
                    tot = all_reduce_sum(torch.cat([sums, torch.tensor([count], dtype=torch.float64)]).to(info.device)).cpu()
                    report_skipped(skipped_buf)
                    if info.is_main:
                        n = max(float(tot[-1]), 1.0)
                        row = {"epoch": epoch + 1, "step": step, "loss": float(tot[0]) / n,
                               "ce": float(tot[1]) / n,
                               **{k: float(tot[2 + j]) / n for j, k in enumerate(MSE_TERMS)},
                               "train_acc": float(tot[2 + len(MSE_TERMS)]) / n,
                               "images_per_s": n / max(tick.elapsed(), 1e-9), "elapsed_s": timer.elapsed()}
                        train_log.append(row)
                        log.info("epoch %d step %d/%d loss %.4f ce %.4f acc %.3f", epoch + 1, i,
                                 steps_per_epoch, row["loss"], row["ce"], row["train_acc"])
                    sums.zero_()
                    count, skipped_buf, tick = 0, [], Timer()
            epoch += 1
            if val_set is not None:
                val_metrics = quick_validation(detector, val_set, cfg, info, autocast)
                if info.is_main:
                    val_log.append({"epoch": epoch, **val_metrics})
                    log.info("epoch %d quick validation on random patches: acc %.3f AP(fake+) %.3f",
                             epoch, val_metrics["val_random_patches_acc"],
                             val_metrics["val_random_patches_ap_fake_pos"])
            if info.is_main:
                path = ckpt_dir / f"{CKPT_PREFIX}_{epoch:03d}.pt"
                save_checkpoint(path, "binary", detector, cfg, optimizer=optimizer.state_dict(),
                                epoch=epoch, rng=rng_state(),
                                pretext_checkpoint=str(bc.pretext_checkpoint))
                link_latest(path, ckpt_dir / "last.pt")
            barrier()

        summary = {"stage": "bc_train", "epochs": epoch, "world_size": info.world_size,
                   "checkpoint": str(ckpt_dir / "last.pt"), "train_images": len(train_set),
                   "skipped_images": sorted(report_skipped.seen), "last_validation": val_metrics,
                   "time_s": timer.elapsed(), "config": to_dict(cfg),
                   "environment": env}
        if info.is_main:
            write_json(out / "summary.json", summary)
            log.info("done: %d epochs in %.1f s; checkpoint %s", epoch, summary["time_s"],
                     summary["checkpoint"])
        return summary


def main(argv: list[str] | None = None) -> int:
    return run_stage(get_args_parser(), argv, lambda cfg, args: train(cfg, args.resume))

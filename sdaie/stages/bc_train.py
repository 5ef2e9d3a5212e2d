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
``skipped.jsonl``, ``summary.json``, ``config.yaml``, ``environment.json``. The loop itself is
:mod:`sdaie.engine.trainer`; this module supplies the model, the image batches and the loss.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from sdaie.config import Config
from sdaie.data.labelled import LabelledPatches
from sdaie.data.loading import EpochBatches, seeded_loader
from sdaie.data.transforms import AugmentConfig
from sdaie.data.walk import ignored_text
from sdaie.engine.checkpointing import check_resumable, check_same_epochs
from sdaie.engine.schedule import Schedule
from sdaie.engine.task import Interval, RunContext, StepOutput, TrainingTask
from sdaie.engine.trainer import run_training
from sdaie.engine.validation import quick_validation
from sdaie.models.checkpoint import binary_from_pretext
from sdaie.models.losses import binary_loss
from sdaie.stages.checks import check_bc_train
from sdaie.stages.common import stage_main, stage_parser

MSE_TERMS = ("mse_f1", "mse_f2", "mse_f3", "mse_f4", "mse_f5")


def get_args_parser() -> argparse.ArgumentParser:
    return stage_parser("bc_train")


class WithTaps(nn.Module):
    """``forward`` = the detector's ``forward_with_taps``, so DDP sees (and syncs) that call."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor):
        return self.detector.forward_with_taps(x)


class BinaryTask(TrainingTask):
    """Labelled images in; cross-entropy plus the distance to the frozen extractor out."""

    kind = "binary"

    def __init__(self, run: RunContext):
        cfg, bc, info = run.cfg, run.cfg.binary, run.info
        self.run, self.cfg, self.bc = run, cfg, bc
        self.model = binary_from_pretext(bc.pretext_checkpoint).to(info.device)
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad],
                                          lr=bc.lr)
        size = self.model.patch_size
        self.train_set = LabelledPatches(bc.train_root, cfg.data.patches, size,
                                         AugmentConfig.from_binary(bc), cfg.run.seed)
        self.val_set = (LabelledPatches(bc.val_root, cfg.data.patches, size, None, cfg.run.seed + 1,
                                        genimage_split="val") if bc.val_root else None)
        self.sampler = DistributedSampler(self.train_set, num_replicas=info.world_size,
                                          rank=info.rank, shuffle=True, seed=cfg.run.seed,
                                          drop_last=False)
        self.epoch_batches = EpochBatches(self.sampler, bc.batch_size)
        self.steps_per_epoch = len(self.epoch_batches)
        self.schedule = Schedule.by_epochs(bc.epochs, self.steps_per_epoch, bc.log_every)
        self.loader: DataLoader | None = None  # made at the first epoch, its workers kept

    def forward_module(self) -> nn.Module:
        return WithTaps(self.model)

    def epochs(self) -> dict[str, int]:
        """What places a global step within an epoch's batches (checked when resuming)."""
        return {"images": len(self.train_set), "seed": self.cfg.run.seed,
                "batch_size": self.bc.batch_size, "world_size": self.run.info.world_size,
                "steps_per_epoch": self.steps_per_epoch}

    def check_resume(self, ckpt: dict, source: str) -> None:
        check_resumable(ckpt, self.kind, "epoch", self.model.trainable_extractor.cfg, None, source)
        check_same_epochs(ckpt.get("epochs"), self.epochs(), source)

    def checkpoint_extra(self, progress: int) -> dict[str, Any]:
        return {"pretext_checkpoint": str(self.bc.pretext_checkpoint), "epochs": self.epochs()}

    def run_facts(self) -> dict[str, Any]:
        return {"train_images": len(self.train_set), "unlabelled": len(self.train_set.files.unlabelled),
                "ignored": dict(self.train_set.files.ignored)}

    def announce(self, start: int) -> None:
        files, info, log = self.train_set.files, self.run.info, self.run.log
        if info.is_main:
            for p in files.unlabelled[:20]:
                log.warning("no 0_real/1_fake (or nature/ai) folder on the path, left out: %s", p)
        if files.ignored and info.is_main:
            log.info("%s: %s (not images)", self.bc.train_root, ignored_text(files.ignored))
        log.info("%d training images (%d real, %d fake), %d ranks x %d, epochs %d -> %d, device %s",
                 len(self.train_set), files.n_real, files.n_fake, info.world_size,
                 self.bc.batch_size, start, self.bc.epochs, info.device)

    def batches(self, round_index: int, start_step: int) -> DataLoader:
        """Epoch ``round_index`` from global step ``start_step`` on (a run stopped within an
        epoch resumes at its next batch); one loader for the whole run, its workers persistent."""
        self.epoch_batches.set_epoch(round_index, start_step - round_index * self.steps_per_epoch)
        if self.loader is None:
            self.loader = seeded_loader(self.train_set, self.cfg.data, self.run.info.device,
                                        self.cfg.run.seed, round_index, persistent=True,
                                        batch_sampler=self.epoch_batches)
        return self.loader

    def forward(self, net: nn.Module, batch: Sequence[torch.Tensor]) -> Any:
        return net(batch[0])

    def loss(self, outputs: Any, batch: Sequence[torch.Tensor]) -> StepOutput:
        logits, taps_r, taps_p = outputs
        y = batch[1]
        total, parts = binary_loss(logits.float(), y, [t.float() for t in taps_r],
                                   [t.float() for t in taps_p], self.bc.alpha)
        return StepOutput(total, parts, {"correct": (logits.argmax(1) == y).sum()},
                          weight=y.shape[0])

    def log_row(self, iv: Interval) -> tuple[dict[str, Any], str]:
        n = max(iv.weight, 1.0)
        row = {"epoch": iv.round + 1, "step": iv.step, "loss": iv.loss, "ce": iv.terms["ce"],
               **{k: iv.terms[k] for k in MSE_TERMS}, "train_acc": float(iv.counts["correct"]) / n,
               "images_per_s": n / max(iv.seconds, 1e-9), "elapsed_s": iv.elapsed}
        return row, (f"epoch {iv.round + 1} step {iv.step_in_round}/{self.steps_per_epoch} "
                     f"loss {row['loss']:.4f} ce {row['ce']:.4f} acc {row['train_acc']:.3f}")

    def validate(self, progress: int) -> dict[str, Any] | None:
        if self.val_set is None:
            return None
        m = quick_validation(self.model, self.val_set, self.cfg, self.run.info,
                             self.run.precision.autocast)
        if self.run.info.is_main:
            self.run.log.info("epoch %d quick validation on random patches: acc %.3f AP(fake+) %.3f",
                              progress, m["val_random_patches_acc"],
                              m["val_random_patches_ap_fake_pos"])
        return m

    def summary_facts(self, skipped: list[str], last_validation: dict[str, Any]) -> dict[str, Any]:
        return {"train_images": len(self.train_set), "skipped_images": skipped,
                "last_validation": last_validation}


def train(cfg: Config, resume_arg: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    check_bc_train(cfg)
    return run_training("bc_train", cfg, resume_arg, BinaryTask, amp=cfg.binary.amp,
                        overwrite=overwrite)


def execute(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    return train(cfg, args.resume, args.overwrite)


def main(argv: list[str] | None = None) -> int:
    return stage_main("bc_train", argv)

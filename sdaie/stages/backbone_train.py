"""Pretext training (spec section 1): EXIF heads on pairs of photos, one process or torchrun/DDP.

    python backbone_train.py --config configs/backbone.yaml data.index=IDX run.out_dir=runs/bb
    torchrun --nproc_per_node=8 backbone_train.py --config configs/backbone.yaml ...

Writes into ``run.out_dir``: ``checkpoints/step_<n>.pt`` every ``pretext.ckpt_every`` steps and at
the end (atomic; model, optimiser, step, sampler and RNG states) with ``checkpoints/last.pt``
pointing at the newest; ``train_log.csv`` (every ``pretext.log_every`` steps: loss, per-head loss
and per-head train metric, averaged over the interval and the ranks); with
``data.val_fraction > 0`` held-out photos (split by photo) are each scored once at every
checkpoint (seeded patches) into ``val_log.csv`` and ``val_metrics.json``: all-pairs ranking
accuracy per rank head, top-1 accuracy and the majority-class baseline per class head;
``skipped.jsonl`` (unreadable photos, each once); ``config.yaml``, ``environment.json``,
``summary.json``.

Resuming (``--resume`` or ``run.resume=auto``) restores everything a step depends on, so an
interrupted run ends with the same weights as an uninterrupted one. The loop itself is
:mod:`sdaie.engine.trainer`; this module supplies the model, the pair batches and the loss.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from sdaie.config import Config, head_names
from sdaie.data.loading import seeded_loader
from sdaie.data.pairs import (
    PairBatchSampler,
    PairDataset,
    check_index_schema,
    photos_with_all_tags,
    split_by_photo,
)
from sdaie.data.sources import check_source_fits_index
from sdaie.engine.checkpointing import check_resumable, check_same_stream
from sdaie.engine.runlog import write_json
from sdaie.engine.schedule import Schedule
from sdaie.engine.task import Interval, RunContext, StepOutput, TrainingTask
from sdaie.engine.trainer import run_training
from sdaie.engine.validation import validate_heldout
from sdaie.exif.authors import is_tensor_index
from sdaie.exif.index import load_index
from sdaie.metrics import PretextMetrics, pretext_counts
from sdaie.models import PretextModel
from sdaie.models.losses import pretext_loss, resolve_rank_loss
from sdaie.stages.checks import check_backbone_train
from sdaie.stages.common import stage_main, stage_parser


def get_args_parser() -> argparse.ArgumentParser:
    return stage_parser("backbone_train")


def photo_split(labels, cfg: Config) -> tuple:
    """(train ids, held-out ids) of the index's photos; with ``data.require_all_tags`` only
    among the photos that have every head's label."""
    if not cfg.data.require_all_tags:
        return split_by_photo(len(labels), cfg.data.val_fraction, cfg.run.seed)
    complete = photos_with_all_tags(labels)
    if len(complete) < 2:
        raise SystemExit(f"data.require_all_tags: {len(complete)} of {len(labels)} photos of the "
                          "index have every head's label; at least 2 are needed")
    train, val = split_by_photo(len(complete), cfg.data.val_fraction, cfg.run.seed)
    return complete[train], complete[val]


class PretextTask(TrainingTask):
    """Pairs of different photos in; per-head EXIF losses and train accuracies out."""

    kind = "pretext"

    def __init__(self, run: RunContext):
        self.run, cfg = run, run.cfg
        self.cfg, self.pc, self.heads = cfg, cfg.pretext, cfg.schema.heads
        self.names = head_names(self.heads)
        try:
            self.rank_loss = resolve_rank_loss(self.pc.rank_loss)
        except ValueError as exc:
            raise SystemExit(f"pretext.{exc}") from None
        index = load_index(cfg.data.index)
        check_index_schema(index.vocab, self.heads)
        self.train_ids, self.val_ids = photo_split(index.labels_array(), cfg)
        check_source_fits_index(cfg.data.source, is_tensor_index(cfg.data.index), cfg.data.index)
        mk = dict(n_patches=cfg.data.patches, patch_size=cfg.model.patch_size,
                  source=cfg.data.source, decoder=cfg.data.decoder)
        self.train_set = PairDataset(index, self.train_ids, **mk)
        self.val_set = PairDataset(index, self.val_ids, **mk) if len(self.val_ids) >= 2 else None
        self.model = PretextModel(cfg.model, self.heads).to(run.info.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.pc.lr,
                                          weight_decay=self.pc.weight_decay)
        self.schedule = Schedule.by_steps(self.pc.steps, self.pc.log_every, self.pc.ckpt_every)

    def stream(self) -> dict[str, int]:
        """What the pair stream depends on besides the step (checked when resuming)."""
        return {"seed": self.cfg.run.seed, "n": len(self.train_ids), "batch_size": self.pc.batch_size,
                "world_size": self.run.info.world_size}

    def check_resume(self, ckpt: dict, source: str) -> None:
        check_resumable(ckpt, self.kind, "step", self.cfg.model, self.heads, source)
        check_same_stream(ckpt.get("sampler"), self.stream(), source)

    def checkpoint_extra(self, progress: int) -> dict[str, Any]:
        return {"sampler": {"step": progress, **self.stream()}}

    def run_facts(self) -> dict[str, Any]:
        return {"train_photos": len(self.train_ids), "val_photos": len(self.val_ids)}

    def announce(self, start: int) -> None:
        info = self.run.info
        self.run.log.info("%d train / %d held-out photos, %d ranks x %d pairs, steps %d -> %d, "
                          "device %s", len(self.train_ids), len(self.val_ids), info.world_size,
                          self.pc.batch_size, start, self.pc.steps, info.device)

    def batches(self, round_index: int, start_step: int) -> DataLoader:
        info = self.run.info
        sampler = PairBatchSampler(len(self.train_ids), self.pc.batch_size, self.cfg.run.seed,
                                   info.rank, info.world_size, start_step=start_step,
                                   total_steps=self.pc.steps)
        return seeded_loader(self.train_set, self.cfg.data, info.device, self.cfg.run.seed,
                             start_step, batch_sampler=sampler)

    def forward(self, net: nn.Module, batch: Sequence[torch.Tensor]) -> tuple[list, list]:
        """Both photos of each pair in ONE forward (the transformer sees each image's patches alone)."""
        x1, x2 = batch[0], batch[1]
        outs = net(torch.cat([x1, x2]))
        b = x1.shape[0]
        return [o[:b] for o in outs], [o[b:] for o in outs]

    def loss(self, outputs: tuple[list, list], batch: Sequence[torch.Tensor]) -> StepOutput:
        out1, out2 = [o.float() for o in outputs[0]], [o.float() for o in outputs[1]]
        y1, y2 = batch[2], batch[3]
        total, per_head = pretext_loss(out1, out2, y1, y2, self.heads, rank_loss=self.rank_loss)
        return StepOutput(total, per_head, {"heads": pretext_counts(out1, out2, y1, y2, self.heads)})

    def log_row(self, iv: Interval) -> tuple[dict[str, Any], str]:
        metrics = PretextMetrics(self.heads)
        metrics.counts = iv.counts["heads"]
        acc = metrics.accuracy()
        row = {"step": iv.step, "loss": iv.loss, "lr": self.optimizer.param_groups[0]["lr"],
               "pairs_per_s": iv.steps * self.pc.batch_size * iv.world_size / max(iv.seconds, 1e-9),
               "elapsed_s": iv.elapsed}
        row.update({f"{n}_loss": iv.terms[n] for n in self.names})
        row.update({f"{n}_acc": acc[n] for n in self.names})
        return row, (f"step {iv.step}/{self.pc.steps} loss {row['loss']:.4f} "
                     f"({row['pairs_per_s']:.1f} pairs/s)")

    def validate(self, progress: int) -> dict[str, Any] | None:
        if self.val_set is None:
            return None
        run, names = self.run, self.names
        summary, skipped = validate_heldout(self.model, self.val_set, self.cfg, run.info,
                                            run.precision.autocast)
        run.report_skipped(skipped)
        if run.info.is_main:
            write_json(run.out / "val_metrics.json", {"step": progress, "heads": summary,
                                                      "photos": len(self.val_ids)})
            run.log.info("val step %d (accuracy / baseline): %s", progress, ", ".join(
                f"{n} {summary[n]['accuracy']:.3f}/{summary[n]['baseline']:.3f}" for n in names))
        return {**{f"{n}_acc": summary[n]["accuracy"] for n in names},
                **{f"{n}_n": summary[n]["count"] for n in names},
                **{f"{n}_baseline": summary[n]["baseline"] for n in names}}

    def summary_facts(self, skipped: list[str], last_validation: dict[str, Any]) -> dict[str, Any]:
        return {"train_photos": len(self.train_ids), "val_photos": len(self.val_ids),
                "skipped_photos": skipped}


def train(cfg: Config, resume_arg: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    check_backbone_train(cfg, resume_arg)
    return run_training("backbone_train", cfg, resume_arg, PretextTask, amp=cfg.pretext.amp,
                        tf32=cfg.pretext.tf32, overwrite=overwrite)


def execute(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    return train(cfg, args.resume, args.overwrite)


def main(argv: list[str] | None = None) -> int:
    return stage_main("backbone_train", argv)

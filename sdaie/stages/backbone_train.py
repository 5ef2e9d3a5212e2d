"""Pretext training (spec section 1): EXIF heads on pairs of photos, one process or torchrun/DDP.

    python backbone_train.py --config configs/backbone.yaml data.index=IDX run.out_dir=runs/bb
    torchrun --nproc_per_node=8 backbone_train.py --config configs/backbone.yaml ...

Writes into ``run.out_dir``: ``checkpoints/step_<n>.pt`` every ``pretext.ckpt_every`` steps and at
the end (atomic; model, optimiser, step, sampler and RNG states) with ``checkpoints/last.pt``
pointing at the newest; ``train_log.csv`` (every ``pretext.log_every`` steps: loss, per-head loss
and per-head train metric, averaged over the interval and the ranks); with
``data.val_fraction > 0`` held-out photos (split by photo) are each scored once at every
checkpoint (seeded patches) into ``val_log.csv`` and ``val_metrics.json``: all-pairs ranking
accuracy per rank head, top-1 accuracy and the majority-class baseline per class head; ``skipped.jsonl`` (unreadable photos, each once);
``config.yaml``, ``environment.json``, ``summary.json``.

Resuming (``--resume`` or ``run.resume=auto``) restores everything a step depends on, so an
interrupted run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from sdaie.config import Config, ConfigError, HeadConfig, to_dict
from sdaie.data.imageio import ImageLoadError, load_image
from sdaie.data.labelled import collate_skips
from sdaie.data.pairs import PairBatchSampler, PairDataset, split_by_photo, worker_init
from sdaie.data.patches import random_patches
from sdaie.distributed import DistInfo, all_gather_objects, all_reduce_sum, barrier, distributed
from sdaie.runinfo import write_run_info
from sdaie.seeding import Stream, derive_seed, seed_all
from sdaie.engine.checkpointing import check_resumable, link_latest, resolve_resume, restore_training, rng_state
from sdaie.engine.runlog import CsvLog, SkipReporter, Timer, setup_logging, write_json
from sdaie.stages.common import run_stage, stage_parser

CKPT_PREFIX = "step"


def get_args_parser():
    return stage_parser("backbone_train", "Pretext (EXIF) training of the SDAIE extractor.",
                        resume=True)


def check_heads(index_vocab: dict, cfg: Config) -> None:
    """The index must have been built with the schema the model is configured with."""
    vocab_heads = index_vocab.get("heads")
    if vocab_heads is None:
        return
    want = [(h.tag, h.kind) for h in cfg.schema.heads]
    have = [(h.get("tag"), h.get("kind")) for h in vocab_heads]
    if want != have:
        raise ConfigError(f"the index's heads {have} differ from schema.heads {want}; rebuild the "
                          "index with the same schema config")
    for h, v in zip(cfg.schema.heads, vocab_heads):
        if h.kind == "class" and v.get("classes") not in (None, h.classes):
            raise ConfigError(f"head {h.tag}: index has {v.get('classes')} classes, schema {h.classes}")


def check_same_stream(saved: dict | None, now: dict[str, int], source: str) -> None:
    """A resumed run continues the same pair stream only with the same training photos, seed and
    global batch (per-rank batch x ranks); anything else would silently train on other data."""
    from sdaie.models.checkpoint import CheckpointError

    if not saved:
        return
    diffs = [f"{what}: checkpoint {saved.get(key)}, now {now[key]}" for key, what in
             (("n", "training photos"), ("seed", "run.seed")) if saved.get(key) != now[key]]
    before = int(saved.get("batch_size", 0)) * int(saved.get("world_size", 1))
    after = now["batch_size"] * now["world_size"]
    if before != after:
        diffs.append(f"global batch: checkpoint {before}, now {after} (pretext.batch_size x ranks)")
    if diffs:
        raise CheckpointError(f"{source} continues another data stream ({'; '.join(diffs)}); resume "
                              "with the same index, run.seed and global batch, or start a new run")


def _loader(dataset: PairDataset, batches: Any, cfg: Config, info: DistInfo,
            start_step: int) -> DataLoader:
    workers = cfg.data.workers
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                      collate_fn=collate_skips, pin_memory=cfg.data.pin_memory and info.device.type == "cuda",
                      worker_init_fn=worker_init(cfg.run.seed, start_step) if workers else None,
                      persistent_workers=False)


def _split_outputs(outs: Sequence[torch.Tensor], b: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [o[:b] for o in outs], [o[b:] for o in outs]


def _forward(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> tuple[list, list]:
    """Both photos of each pair in ONE forward (the transformer sees each image's patches alone)."""
    outs = model(torch.cat([x1, x2]))
    return _split_outputs(outs, x1.shape[0])


class HeldOutPhotos(Dataset):
    """``(patches, labels, position, readable, skipped)`` per held-out position: seeded patches.

    Each photo is scored once with patches fixed by (run seed, position), so the validation
    figures of two checkpoints differ only through the weights. An unreadable photo yields
    zero patches and ``readable = False`` (left out of the metrics) and is reported.
    """

    def __init__(self, pairs: PairDataset, seed: int):
        self.index, self.ids, self.labels = pairs.index, pairs.ids, pairs.labels
        self.n_patches, self.patch_size, self.use_shards = pairs.n_patches, pairs.patch_size, pairs.use_shards
        self.seed = seed

    def __len__(self) -> int:
        return len(self.ids)

    def _pixels(self, i: int) -> Any:
        crop = self.index.crop(i) if self.use_shards else None
        return crop if crop is not None else load_image(self.index.image_path(i))

    def __getitem__(self, q: int) -> tuple[Any, ...]:
        i = int(self.ids[q])
        try:
            px = self._pixels(i)
        except ImageLoadError as exc:
            blank = torch.zeros(self.n_patches, 3, self.patch_size, self.patch_size)
            return blank, self.labels[i], q, False, [{"path": str(self.index.image_path(i)),
                                                      "reason": str(exc)}]
        gen = torch.Generator().manual_seed(derive_seed(self.seed, Stream.HELDOUT_PATCHES, q))
        patches = random_patches(px, n=self.n_patches, size=self.patch_size, generator=gen)
        return patches, self.labels[i], q, True, []


def heldout_metrics(outputs: Sequence[torch.Tensor], labels: torch.Tensor,
                    heads: Sequence[HeadConfig]) -> dict[str, dict[str, Any]]:
    """Per-head figures over a set of photos scored once each.

    Rank heads: pairwise ranking accuracy over ALL pairs of photos with different labels (chance
    0.5); ``count`` = such pairs, ``photos`` = labelled photos. Class heads: top-1 accuracy over
    labelled photos, with the majority-class baseline (the best any constant guess scores on
    this very set) so a head that learnt only the class frequencies is seen as such.
    """
    from sdaie.config import head_names
    from sdaie.metrics import pairwise_ranking_accuracy

    summary: dict[str, dict[str, Any]] = {}
    for name, head, out, y in zip(head_names(heads), heads, outputs, labels.T):
        known = ~torch.isnan(y)
        if head.kind == "rank":
            acc, pairs = pairwise_ranking_accuracy(out[:, 0], y)
            summary[name] = {"kind": "rank", "accuracy": acc, "count": pairs,
                             "photos": int(known.sum()), "baseline": 0.5}
            continue
        y_known = y[known].long()
        n = int(known.sum())
        hits = int((out[known].argmax(dim=1) == y_known).sum()) if n else 0
        freq = torch.bincount(y_known, minlength=out.shape[1]) if n else torch.zeros(1, dtype=torch.long)
        summary[name] = {"kind": "class", "accuracy": hits / n if n else math.nan, "count": n,
                         "baseline": int(freq.max()) / n if n else math.nan,
                         "majority_class": int(freq.argmax()) if n else None}
    return summary


@torch.no_grad()
def validate(model: torch.nn.Module, dataset: PairDataset, cfg: Config, info: DistInfo,
             autocast) -> tuple[dict[str, dict[str, Any]], list[dict]]:
    """(:func:`heldout_metrics` of the held-out photos, unreadable files met on this rank).

    Each rank scores every ``world_size``-th photo; the per-photo outputs (a few floats each)
    are gathered so every rank computes the same all-pairs figures. ``model`` must be the bare
    module, not its DDP wrapper: ranks may hold different numbers of batches, and a DDP forward
    would wait for the others (buffer broadcast).
    """
    photos = HeldOutPhotos(dataset, cfg.run.seed)
    mine = list(range(info.rank, len(photos), info.world_size))
    size = 2 * cfg.pretext.batch_size  # photos per forward, as in training
    batches = [mine[i:i + size] for i in range(0, len(mine), size)]
    loader = DataLoader(photos, batch_sampler=batches, num_workers=cfg.data.workers,
                        collate_fn=collate_skips)
    n_heads = len(cfg.schema.heads)
    outs: list[list[torch.Tensor]] = [[] for _ in range(n_heads)]
    labels, positions, skipped = [], [], []
    was_training = model.training
    model.eval()
    for x, y, pos, ok, bad in loader:
        with autocast():
            batch_out = model(x.to(info.device))
        for h, o in enumerate(batch_out):
            outs[h].append(o.float().cpu()[ok])
        labels.append(y[ok])
        positions.append(pos[ok])
        skipped += bad
    model.train(was_training)
    local = ([torch.cat(o) if o else torch.empty(0, 1) for o in outs],
             torch.cat(labels) if labels else torch.empty(0, n_heads),
             torch.cat(positions) if positions else torch.empty(0, dtype=torch.long))
    parts = [p for p in all_gather_objects(local) if len(p[2])]
    if not parts:
        return heldout_metrics([torch.empty(0, h.classes) for h in cfg.schema.heads],
                               torch.empty(0, n_heads), cfg.schema.heads), skipped
    order = torch.argsort(torch.cat([p[2] for p in parts]))  # photo order, whatever the ranks
    merged = [torch.cat([p[0][h] for p in parts])[order] for h in range(n_heads)]
    return heldout_metrics(merged, torch.cat([p[1] for p in parts])[order], cfg.schema.heads), skipped


def train(cfg: Config, resume_arg: str | None = None) -> dict[str, Any]:
    from sdaie.exif.index import load_index
    from sdaie.models import PretextModel
    from sdaie.models.checkpoint import load_checkpoint, save_checkpoint
    from sdaie.config import head_names
    from sdaie.models.losses import pretext_loss
    from sdaie.metrics import PretextMetrics

    out = Path(cfg.run.out_dir)
    ckpt_dir = out / "checkpoints"
    pc = cfg.pretext
    if not cfg.data.index:
        raise SystemExit("data.index is not set: build one with `sdaie index PHOTOS --out IDX` "
                         "and pass data.index=IDX")
    with distributed(cfg.run.device, cfg.run.dist_timeout_s) as info:
        log = setup_logging(out if info.is_main else None, info.is_main, "backbone_train")
        timer = Timer()
        seed_all(cfg.run.seed)  # identical initial weights on every rank
        if info.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = pc.tf32
            torch.backends.cudnn.allow_tf32 = pc.tf32

        index = load_index(cfg.data.index)
        check_heads(index.vocab, cfg)
        train_ids, val_ids = split_by_photo(len(index.records), cfg.data.val_fraction, cfg.run.seed)
        mk = dict(n_patches=cfg.data.patches, patch_size=cfg.model.patch_size,
                  use_shards=cfg.data.use_shards)
        train_set = PairDataset(index, train_ids, **mk)
        val_set = PairDataset(index, val_ids, **mk) if len(val_ids) >= 2 else None

        model = PretextModel(cfg.model, cfg.schema.heads).to(info.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=pc.lr, weight_decay=pc.weight_decay)
        step = 0

        def sampler_facts() -> dict[str, int]:
            return {"seed": cfg.run.seed, "n": len(train_ids), "batch_size": pc.batch_size,
                    "world_size": info.world_size}

        resume = resolve_resume(resume_arg, cfg.run.resume, ckpt_dir, CKPT_PREFIX)
        if resume is not None:
            ckpt = load_checkpoint(resume)
            check_resumable(ckpt, "pretext", "step", cfg.model, cfg.schema.heads, str(resume))
            check_same_stream(ckpt.get("sampler"), sampler_facts(), str(resume))
            restore_training(ckpt, model, optimizer, str(resume))
            step = int(ckpt["step"])
            log.info("resumed from %s at step %d", resume, step)
        ddp = (DistributedDataParallel(model, device_ids=[info.device] if info.device.type == "cuda" else None)
               if info.distributed else model)

        env: dict = {}
        if info.is_main:
            env = write_run_info(out, cfg, stage="backbone_train", world_size=info.world_size,
                           resumed_from=str(resume) if resume else None,
                           train_photos=len(train_ids), val_photos=len(val_ids))
        log.info("%d train / %d held-out photos, %d ranks x %d pairs, steps %d -> %d, device %s",
                 len(train_ids), len(val_ids), info.world_size, pc.batch_size, step, pc.steps,
                 info.device)

        names = head_names(cfg.schema.heads)
        train_log = CsvLog(out / "train_log.csv", truncate_after=step) if info.is_main else None
        val_log = CsvLog(out / "val_log.csv", truncate_after=step) if info.is_main else None
        use_amp = pc.amp and info.device.type == "cuda"

        def autocast():
            return (torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext())

        def save(step_now: int) -> Path:
            path = ckpt_dir / f"{CKPT_PREFIX}_{step_now:08d}.pt"
            sampler_state = {"step": step_now, **sampler_facts()}
            save_checkpoint(path, "pretext", model, cfg, optimizer=optimizer.state_dict(),
                            step=step_now, sampler=sampler_state, rng=rng_state())
            link_latest(path, ckpt_dir / "last.pt")
            return path

        def run_validation(step_now: int) -> None:
            if val_set is None:
                return
            summary, skipped = validate(model, val_set, cfg, info, autocast)
            report_skipped(skipped)
            if info.is_main:
                val_log.append({"step": step_now, **{f"{n}_acc": summary[n]["accuracy"] for n in names},
                                **{f"{n}_n": summary[n]["count"] for n in names},
                                **{f"{n}_baseline": summary[n]["baseline"] for n in names}})
                write_json(out / "val_metrics.json", {"step": step_now, "heads": summary,
                                                       "photos": len(val_ids)})
                log.info("val step %d (accuracy / baseline): %s", step_now, ", ".join(
                    f"{n} {summary[n]['accuracy']:.3f}/{summary[n]['baseline']:.3f}" for n in names))

        report_skipped = SkipReporter(out / "skipped.jsonl", info.is_main, log)

        sampler = PairBatchSampler(len(train_ids), pc.batch_size, cfg.run.seed, info.rank,
                                   info.world_size, start_step=step, total_steps=pc.steps)
        loader = _loader(train_set, sampler, cfg, info, step)
        heads = cfg.schema.heads
        acc_loss = torch.zeros(1 + len(heads), dtype=torch.float64)
        metrics = PretextMetrics(heads)
        interval_steps, skipped_buf = 0, []
        last_saved = step if resume is not None else -1
        tick = Timer()
        model.train()
        for x1, x2, y1, y2, skipped in loader:
            x1, x2 = x1.to(info.device, non_blocking=True), x2.to(info.device, non_blocking=True)
            y1, y2 = y1.to(info.device), y2.to(info.device)
            with autocast():
                out1, out2 = _forward(ddp, x1, x2)
            out1, out2 = [o.float() for o in out1], [o.float() for o in out2]
            total, per_head = pretext_loss(out1, out2, y1, y2, heads, rank_loss=pc.rank_loss)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            step += 1
            if not math.isfinite(total.item()):
                raise FloatingPointError(f"non-finite pretext loss at step {step}: {per_head}")
            acc_loss += torch.tensor([total.item()] + [per_head[n].item() for n in names], dtype=torch.float64)
            metrics.update(out1, out2, y1, y2)
            interval_steps += 1
            skipped_buf += skipped

            if step % pc.log_every == 0 or step == pc.steps:
                losses = all_reduce_sum(acc_loss.to(info.device)).cpu() / (interval_steps * info.world_size)
                metrics.counts = all_reduce_sum(metrics.counts.to(info.device)).cpu()
                report_skipped(skipped_buf)
                if info.is_main:
                    acc = metrics.accuracy()
                    secs = tick.elapsed()
                    row = {"step": step, "loss": float(losses[0]), "lr": optimizer.param_groups[0]["lr"],
                           "pairs_per_s": interval_steps * pc.batch_size * info.world_size / max(secs, 1e-9),
                           "elapsed_s": timer.elapsed()}
                    row.update({f"{n}_loss": float(losses[1 + i]) for i, n in enumerate(names)})
                    row.update({f"{n}_acc": acc[n] for n in names})
                    train_log.append(row)
                    log.info("step %d/%d loss %.4f (%.1f pairs/s)", step, pc.steps, row["loss"],
                             row["pairs_per_s"])
                acc_loss.zero_()
                metrics = PretextMetrics(heads)
                interval_steps, skipped_buf, tick = 0, [], Timer()
            if step % pc.ckpt_every == 0 or step == pc.steps:
                if info.is_main:
                    save(step)
                    last_saved = step
                run_validation(step)
                barrier()

        final = ckpt_dir / "last.pt"
        if info.is_main and last_saved != step and step > 0:
            save(step)
        barrier()
        summary = {"stage": "backbone_train", "steps": step, "world_size": info.world_size,
                   "checkpoint": str(final), "train_photos": len(train_ids),
                   "val_photos": len(val_ids), "skipped_photos": sorted(report_skipped.seen),
                   "time_s": timer.elapsed(), "config": to_dict(cfg),
                   "environment": env}
        if info.is_main:
            write_json(out / "summary.json", summary)
            log.info("done: %d steps in %.1f s; checkpoint %s", step, summary["time_s"], final)
        return summary


def main(argv: list[str] | None = None) -> int:
    return run_stage(get_args_parser(), argv, lambda cfg, args: train(cfg, args.resume))

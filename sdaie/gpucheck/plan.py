"""The sizes a gpu-check runs at: the paper's on a GPU, tiny with ``--cpu`` (minutes on 2 cores)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import torch

from sdaie.config import ModelConfig


def tiny_model() -> ModelConfig:
    """``configs/tiny/base.yaml``'s extractor (feature 36, 32x32 patches)."""
    return ModelConfig(width=8, depths=[1, 1, 1, 1], transformer_depth=1, attn_heads=2,
                       dim_head=8, mlp_dim=32, patch_size=32)


@dataclass(frozen=True)
class Plan:
    """What each section measures and on which device."""

    device: torch.device
    cpu_mode: bool
    model: ModelConfig = field(default_factory=ModelConfig)
    pairs: int = 64  # training pairs per step and GPU (spec: 64)
    patches: int = 16  # patches per image (spec: 16)
    warmup: int = 3  # untimed steps before each timing (cuDNN autotuning, allocator, compile)
    steps: int = 10  # timed steps
    infer_batch: int = 4096  # patches per inference forward
    photos: int = 16  # camera-sized JPEGs for the loader section
    photo_size: tuple[int, int] = (4000, 3000)  # 12 MP, 4:3: a typical camera photo
    crop: int = 512  # the centre-crop shards' size (sdaie index --crops 512)
    workers: tuple[int, ...] = (0, 2, 4, 8)  # loader workers to time (0 = in the main process)
    ddp_steps: int = 20
    compile_backend: str = "inductor"

    @property
    def images_per_step(self) -> int:
        return 2 * self.pairs


def usable_cores() -> int:
    """The cores this process may run on (its affinity, e.g. a scheduler's share of the node)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_plan(cpu: bool, device: torch.device) -> Plan:
    """The paper's sizes on ``device``; ``cpu``: tiny sizes on the CPU (the same code paths)."""
    cores = usable_cores()
    if not cpu:
        per_gpu = max(1, cores // max(1, torch.cuda.device_count()))
        workers = tuple(sorted({0, *[k for k in (2, 4, 8, 16) if k <= per_gpu]}))
        return Plan(device=device, cpu_mode=False, workers=workers)
    # torch.compile's inductor backend needs minutes of C++ compilation on a CPU; dynamo's
    # "eager" backend still traces the model (what breaks compilation shows up) in seconds.
    return Plan(device=torch.device("cpu"), cpu_mode=True, model=tiny_model(), pairs=2,
                patches=4, warmup=1, steps=2, infer_batch=64, photos=4,
                photo_size=(640, 480), crop=128, workers=(0, 2), ddp_steps=20,
                compile_backend="eager")


def with_model(plan: Plan, **changes: object) -> ModelConfig:
    return dataclasses.replace(plan.model, **changes)

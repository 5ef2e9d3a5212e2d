"""Shared fixtures of the reliability tests: the odd-input zoo and tiny random-weight models.

The models are random (no training): these tests are about what the code does with bad input,
not about detection quality. 64-pixel patches as in the paper, a 4-channel CNN (10-d feature).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from sdaie.config import HeadConfig, ModelConfig
from support.odd_inputs import OddFile, make_odd_inputs

REPO = Path(__file__).resolve().parents[2]
COPIES = 4  # ~70 recipes per copy -> a few hundred files


def tiny_model_cfg(**kw) -> ModelConfig:
    base = dict(width=4, patch_size=64, depths=[1, 1, 1, 1], transformer_depth=1, attn_heads=2,
                dim_head=4, mlp_dim=8)
    base.update(kw)
    return ModelConfig(**base)


TINY_HEADS = [HeadConfig("ISOSpeedRatings", "rank", transform="log"),
              HeadConfig("Make", "class", classes=3, binning="topk")]




@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> list[OddFile]:
    return make_odd_inputs(tmp_path_factory.mktemp("zoo"), seed=7, copies=COPIES)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A random binary detector and a random pretext model, saved in this project's format."""
    from sdaie.models import BinaryDetector, PretextModel, save_checkpoint

    base = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    cfg = tiny_model_cfg()
    return {"bc": save_checkpoint(base / "bc.pt", "binary", BinaryDetector(cfg), cfg),
            "pretext": save_checkpoint(base / "pretext.pt", "pretext",
                                       PretextModel(cfg, TINY_HEADS), cfg)}


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory) -> Path:
    """``sdaie index`` of a tiny synthetic camera world (10 photos, 96 px) for training runs."""
    from sdaie.exif.index import main as index_main
    from sdaie.synth import make_world

    base = tmp_path_factory.mktemp("world")
    make_world(base / "world", photos=10, size=96, gen_images=0, bc_train=0, bc_val=0)
    assert index_main([str(base / "world" / "photos"), "--out", str(base / "index"),
                       "--workers", "1", "--no-progress"]) == 0
    return base / "index"


TINY_BACKBONE = REPO / "configs" / "tiny" / "backbone.yaml"


def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes: this checkout importable, one thread each."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    return env


PYTHON = sys.executable

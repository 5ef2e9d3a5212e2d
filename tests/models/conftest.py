"""Shared fixtures for the model tests: tiny configs and the official key list (committed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sdaie.config import HeadConfig, ModelConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SHARED_SPEC = Path(__file__).resolve().parents[2] / "../shared/spec"  # beside a clone, sometimes


def _tiny(**kw) -> ModelConfig:
    base = dict(width=4, patch_size=16, depths=[1, 1, 1, 1], transformer_depth=1, attn_heads=2,
                dim_head=4, mlp_dim=8, implementation="reference")
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture
def tiny_cfg() -> Callable[..., ModelConfig]:
    """Factory: width 4 (feature 10), 16x16 patches (2x2 final map), one small transformer block."""
    return _tiny


@pytest.fixture
def tiny_heads() -> list[HeadConfig]:
    return [HeadConfig("ISOSpeedRatings", "rank", transform="log"),
            HeadConfig("Make", "class", classes=3, binning="topk"),
            HeadConfig("ExposureTime", "rank", transform="log")]


@pytest.fixture
def official_keys() -> list[tuple[str, list[int]]]:
    """(key, shape) rows of the official extractor's state dict, in order: a fact of the official
    code, committed as ``tests/fixtures/official_backbone_keys.tsv`` (a copy of the spec's file,
    compared with it whenever the spec folder sits beside the clone)."""
    text = (FIXTURES / "official_backbone_keys.tsv").read_text()
    shared = SHARED_SPEC / "official_backbone_keys.tsv"
    if shared.is_file():
        assert shared.read_text() == text, "tests/fixtures copy differs from the spec's key list"
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        rows.append((key, [int(s) for s in shape.strip("[]").split(",")]))
    return rows


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)

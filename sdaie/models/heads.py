"""The pretext network: an extractor plus one linear EXIF head per schema tag.

Attribute names (``backbone``, ``fc1`` .. ``fcH`` in schema order) are the official checkpoint's,
so its ``state_net`` loads after dropping the ``module.`` prefix.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from sdaie.config import ConfigError, HeadConfig, ModelConfig
from sdaie.models.registry import build_extractor

HEAD_KINDS = ("class", "rank")


def head_out_features(head: HeadConfig) -> int:
    """Output size: ``classes`` for a class head, one score for a rank head."""
    if head.kind == "rank":
        return 1
    if head.kind == "class":
        if head.classes < 2:
            raise ConfigError(f"class head {head.tag!r} needs at least 2 classes, got {head.classes}")
        return head.classes
    raise ConfigError(f"head {head.tag!r}: kind {head.kind!r}; valid: {list(HEAD_KINDS)}")


class PretextModel(nn.Module):
    """``backbone`` (the extractor) and heads ``fc1..fcH``; ``forward`` -> per-head outputs."""

    def __init__(self, model_cfg: ModelConfig, heads: Sequence[HeadConfig]) -> None:
        super().__init__()
        if not heads:
            raise ConfigError("the pretext model needs at least one EXIF head")
        self.heads = [copy.deepcopy(h) for h in heads]
        self.backbone = build_extractor(model_cfg)
        for i, head in enumerate(self.heads, start=1):
            setattr(self, f"fc{i}", nn.Linear(self.backbone.feature_dim, head_out_features(head)))

    @property
    def fcs(self) -> list[nn.Linear]:
        return [getattr(self, f"fc{i}") for i in range(1, len(self.heads) + 1)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3, P, P] -> [B, D]``."""
        return self.backbone(x)

    def head_outputs(self, feature: torch.Tensor) -> list[torch.Tensor]:
        """``[B, D]`` -> one ``[B, classes]`` tensor per head (``[B, 1]`` scores for rank heads)."""
        return [fc(feature) for fc in self.fcs]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.head_outputs(self.features(x))

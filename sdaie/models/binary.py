"""The binary detector (spec section 4): a trainable extractor tied to a frozen pretext copy.

``frozen`` holds the pretext weights and never changes (eval mode, ``requires_grad=False``, run
under ``no_grad``); ``trainable`` starts from random init and is pulled towards the frozen copy's
intermediate outputs f1..f5 by the regulariser in :func:`sdaie.models.losses.binary_loss`. The
official checkpoint names these two differently; :mod:`sdaie.models.checkpoint` maps its keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import nn

from sdaie.config import ModelConfig
from sdaie.labels import REAL
from sdaie.models.base import PatchExtractor
from sdaie.models.registry import build_extractor


def fake_probability(logits: torch.Tensor) -> torch.Tensor:
    """p(AI-generated) = 1 - softmax(logits)[real] over the last dimension: the official
    expression (not softmax[fake], which differs in the last bits), for one image or a batch."""
    return 1.0 - torch.softmax(logits, dim=-1)[..., REAL]


class BinaryDetector(nn.Module):
    """Real (0) vs AI-generated (1) logits from the trainable copy's feature."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        super().__init__()
        # Registration order (frozen, trainable, fc) is the official state-dict order.
        self.frozen = build_extractor(model_cfg)
        self.trainable = build_extractor(model_cfg)
        self.fc = nn.Linear(self.trainable.feature_dim, 2)
        self.frozen.requires_grad_(False)
        self.frozen.eval()

    @property
    def trainable_extractor(self) -> PatchExtractor:
        """The copy that learns (its feature feeds ``fc``)."""
        return self.trainable

    @property
    def frozen_extractor(self) -> PatchExtractor:
        """The pretext copy the regulariser pulls towards."""
        return self.frozen

    @property
    def patch_size(self) -> int:
        return self.trainable.patch_size

    def train(self, mode: bool = True) -> BinaryDetector:
        super().train(mode)
        self.frozen.eval()  # frozen: always in eval mode
        return self

    def load_pretrained(self, extractor_state: Mapping[str, torch.Tensor]) -> None:
        """Copy pretext extractor weights into the frozen copy (strict keys and shapes)."""
        self.frozen.load_state_dict(dict(extractor_state), strict=True)
        self.frozen.requires_grad_(False)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters the optimiser should see (trainable copy and ``fc``)."""
        return (p for p in self.parameters() if p.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3, P, P] -> [B, 2]`` logits (index 1 = AI-generated)."""
        return self.fc(self.trainable(x))

    def forward_with_taps(
            self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Logits, taps of the trainable copy, taps of the frozen copy (no graph)."""
        feature, taps_trainable = self.trainable.forward_with_taps(x)
        with torch.no_grad():
            _, taps_frozen = self.frozen.forward_with_taps(x)
        return self.fc(feature), taps_trainable, taps_frozen

    def image_logits(self, patches: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Logits ``[2]`` of one image from all its patches ``[N, 3, P, P]`` (chunked CNN)."""
        return self.fc(self.trainable.image_feature(patches, chunk=chunk))

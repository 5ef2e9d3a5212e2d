"""The binary detector (spec section 4): a trainable extractor tied to a frozen pretext copy.

``diffusionextractor_pretrained`` holds the pretext weights and never changes (eval mode,
``requires_grad=False``, run under ``no_grad``); ``diffusionextractor_random`` starts from random
init and is pulled towards the frozen copy's intermediate outputs f1..f5 by the regulariser in
:func:`sdaie.models.losses.binary_loss`. Attribute names are the official checkpoint's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import nn

from sdaie.config import ModelConfig
from sdaie.models.registry import build_extractor



class BinaryDetector(nn.Module):
    """Real (0) vs AI-generated (1) logits from the trainable copy's feature."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        super().__init__()
        self.diffusionextractor_pretrained = build_extractor(model_cfg)
        self.diffusionextractor_random = build_extractor(model_cfg)
        self.fc = nn.Linear(self.diffusionextractor_random.feature_dim, 2)
        self.diffusionextractor_pretrained.requires_grad_(False)
        self.diffusionextractor_pretrained.eval()

    @property
    def trainable_extractor(self) -> nn.Module:
        """The copy that learns (its feature feeds ``fc``)."""
        return self.diffusionextractor_random

    @property
    def frozen_extractor(self) -> nn.Module:
        """The pretext copy the regulariser pulls towards."""
        return self.diffusionextractor_pretrained

    @property
    def patch_size(self) -> int:
        return self.diffusionextractor_random.patch_size

    def train(self, mode: bool = True) -> "BinaryDetector":
        super().train(mode)
        self.diffusionextractor_pretrained.eval()  # frozen: always in eval mode
        return self

    def load_pretrained(self, extractor_state: Mapping[str, torch.Tensor]) -> None:
        """Copy pretext extractor weights into the frozen copy (strict keys and shapes)."""
        self.diffusionextractor_pretrained.load_state_dict(dict(extractor_state), strict=True)
        self.diffusionextractor_pretrained.requires_grad_(False)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters the optimiser should see (trainable copy and ``fc``)."""
        return (p for p in self.parameters() if p.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3, P, P] -> [B, 2]`` logits (index 1 = AI-generated)."""
        return self.fc(self.diffusionextractor_random(x))

    def forward_with_taps(
            self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Logits, taps of the trainable copy, taps of the frozen copy (no graph)."""
        feature, taps_random = self.diffusionextractor_random.forward_with_taps(x)
        with torch.no_grad():
            _, taps_pretrained = self.diffusionextractor_pretrained.forward_with_taps(x)
        return self.fc(feature), taps_random, taps_pretrained

    def image_logits(self, patches: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Logits ``[2]`` of one image from all its patches ``[N, 3, P, P]`` (chunked CNN)."""
        return self.fc(self.diffusionextractor_random.image_feature(patches, chunk=chunk))

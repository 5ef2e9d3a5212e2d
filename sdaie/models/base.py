"""What every extractor shares: per-patch tokens, then the tokens of one image meet.

An extractor maps ``x: [B, N, 3, P, P]`` (N patches per image) to a feature ``[B, D]``. Subclasses
only say how one patch becomes a D-dim token (:meth:`PatchExtractor.patch_tokens`, which also
returns the taps f1..f5 for the binary regulariser); aggregation, shape checks and chunked
inference over tens of thousands of patches live here, identical for every backbone.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sdaie.config import ConfigError, ModelConfig
from sdaie.models.cpu_memory import keep_freed_memory
from sdaie.models.transformer import Transformer
from sdaie.pixels import normalize

AGGREGATES = ("transformer", "mean")


def feature_dim(cfg: ModelConfig) -> int:
    """Token/feature size: the upper triangle of a ``width x width`` covariance (528 at width 32)."""
    return cfg.width * (cfg.width + 1) // 2


class PatchExtractor(nn.Module):
    """Base class: subclasses implement :meth:`patch_tokens`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.aggregate not in AGGREGATES:
            raise ConfigError(f"model.aggregate={cfg.aggregate!r}; valid: {list(AGGREGATES)}")
        if cfg.width < 2:
            raise ConfigError(f"model.width must be >= 2, got {cfg.width}")
        self.cfg = copy.deepcopy(cfg)
        self.feature_dim = feature_dim(cfg)
        self.patch_size = cfg.patch_size
        if cfg.aggregate == "transformer":
            # Registered first so the state-dict order follows the official checkpoint's.
            self.transformer = Transformer(self.feature_dim, cfg.transformer_depth, cfg.attn_heads,
                                           cfg.dim_head, cfg.mlp_dim)

    # -- to be provided by subclasses ---------------------------------------------------------
    def patch_tokens(self, patches: torch.Tensor,
                     with_taps: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``[P, 3, S, S] -> ([P, D], taps)``; taps = [f1..f5] per patch (empty unless asked)."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    def aggregate(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, N, D] -> [B, D]``: transformer output at token 0, or the mean token."""
        if self.cfg.aggregate == "transformer":
            return self.transformer(tokens)[:, 0]
        return tokens.mean(dim=1)

    def _check_input(self, x: torch.Tensor) -> None:
        """Shape check; on CPU also the allocator setting every extractor runs under (once per
        process; ``docs/performance.md``, "Freed memory is kept")."""
        s = self.patch_size
        if x.dim() != 5 or tuple(x.shape[2:]) != (3, s, s):
            raise ValueError(f"expected patches [B, N, 3, {s}, {s}], got {list(x.shape)}")
        if x.shape[1] < 1:
            raise ValueError("an image needs at least one patch")
        if x.device.type == "cpu":
            keep_freed_memory()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3, S, S] -> [B, D]``."""
        self._check_input(x)
        b, n = x.shape[:2]
        tokens, _ = self.patch_tokens(x.flatten(0, 1), with_taps=False)
        return self.aggregate(tokens.view(b, n, -1))

    def forward_with_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Feature ``[B, D]`` and the taps f1..f5, each ``[B, N, ...]``."""
        self._check_input(x)
        b, n = x.shape[:2]
        tokens, taps = self.patch_tokens(x.flatten(0, 1), with_taps=True)
        feature = self.aggregate(tokens.view(b, n, -1))
        return feature, [t.reshape(b, n, *t.shape[1:]) for t in taps]

    def image_feature(self, patches: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Feature ``[D]`` of one image given all its patches ``[N, 3, S, S]``, CNN run in chunks.

        Same result as ``self(patches[None])[0]`` with bounded memory: only the per-patch part is
        chunked, the tokens then meet in one pass (evaluation uses up to 40000 patches). uint8
        patches (``grid_patches(..., normalized=False)``) are normalised one chunk at a time.
        """
        self._check_input(patches.unsqueeze(0))
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        parts = (normalize(p) if p.dtype == torch.uint8 else p for p in patches.split(chunk))
        tokens = torch.cat([self.patch_tokens(part)[0] for part in parts])
        return self.aggregate(tokens.unsqueeze(0))[0]

"""The official SDAIE extractor (spec section 2), layer for layer, sizes from :class:`ModelConfig`.

Parameter names are the official checkpoint's (``group1.hpf.weight``, ``group1_b.0``,
``group2.0/1/3/4/...``, ``transformer.layers...``), so official weights load strictly.

The module holds the parameters; how a patch becomes a token is a function chosen by
``cfg.implementation`` from :data:`IMPLEMENTATIONS`. ``"reference"`` is the plain composition of
the spec's layers (the oracle). ``"fast"`` (:mod:`sdaie.models.fast`, the default) computes the
same function from the same state dict, several times faster.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sdaie.config import ConfigError, ModelConfig
from sdaie.models.base import PatchExtractor
from sdaie.models.covpool import cov_sqrt_feature
from sdaie.models.fast import fast_patch_tokens
from sdaie.models.srm import N_KERNELS, SRMResidual

N_GROUPS = 4  # group2..group5; AvgPool after all but the last


def pooled_size(size: int) -> int:
    """Side after AvgPool2d(kernel 3, stride 2, padding 1)."""
    return (size + 2 * 1 - 3) // 2 + 1


def group_sizes(patch_size: int) -> list[int]:
    """Spatial side inside group1_b, group2, group3, group4, group5 (64, 64, 32, 16, 8 at paper cfg)."""
    sizes = [patch_size, patch_size]
    for _ in range(N_GROUPS - 1):
        sizes.append(pooled_size(sizes[-1]))
    return sizes


def _conv_group(width: int, depth: int, size: int, pool: bool) -> nn.Sequential:
    """``depth`` x [conv 3x3, LayerNorm(width, size, size), ReLU] (+ AvgPool); official indices."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.LayerNorm([width, size, size]),
                   nn.ReLU()]
    if pool:
        layers.append(nn.AvgPool2d(3, stride=2, padding=1))  # count_include_pad=True (default)
    return nn.Sequential(*layers)


class SDAIEExtractor(PatchExtractor):
    """SRM residual -> group1_b -> group2..5 -> covariance square root -> transformer -> token 0."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        if len(cfg.depths) != N_GROUPS or min(cfg.depths) < 1:
            raise ConfigError(f"model.depths needs {N_GROUPS} positive conv counts (group2..group5), "
                              f"got {cfg.depths}")
        sizes = group_sizes(cfg.patch_size)
        if sizes[-1] < 2:
            raise ConfigError(f"model.patch_size={cfg.patch_size} leaves a {sizes[-1]}x{sizes[-1]} map "
                              "for the covariance; it needs at least 2x2")
        if cfg.implementation not in IMPLEMENTATIONS:
            raise ConfigError(f"model.implementation={cfg.implementation!r}; "
                              f"valid: {sorted(IMPLEMENTATIONS)}")
        w = cfg.width
        self.group1 = SRMResidual()
        self.group1_b = nn.Sequential(
            nn.Conv2d(3 * N_KERNELS, w, 3, padding=1), nn.LayerNorm([w, sizes[0], sizes[0]]),
            nn.Hardtanh(-cfg.hardtanh, cfg.hardtanh))
        self.group2 = _conv_group(w, cfg.depths[0], sizes[1], pool=True)
        self.group3 = _conv_group(w, cfg.depths[1], sizes[2], pool=True)
        self.group4 = _conv_group(w, cfg.depths[2], sizes[3], pool=True)
        self.group5 = _conv_group(w, cfg.depths[3], sizes[4], pool=False)
        self.implementation = cfg.implementation

    def patch_tokens(self, patches: torch.Tensor,
                     with_taps: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        tokens, taps = IMPLEMENTATIONS[self.implementation](self, patches)
        return tokens, (taps if with_taps else [])


PatchTokensFn = Callable[[SDAIEExtractor, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]


def reference_patch_tokens(m: SDAIEExtractor,
                           patches: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The spec's layers in order; returns the 528-d token f5 and taps [f1, f2, f3, f4, f5]."""
    x = m.group1_b(m.group1(patches))
    f1 = m.group2(x)
    f2 = m.group3(f1)
    f3 = m.group4(f2)
    f4 = m.group5(f3)
    f5 = cov_sqrt_feature(f4, iters=m.cfg.isqrt_iters, trace_eps=m.cfg.trace_eps)
    return f5, [f1, f2, f3, f4, f5]


# name -> per-patch function; every entry must give the reference's outputs from the same weights.
IMPLEMENTATIONS: dict[str, PatchTokensFn] = {
    "reference": reference_patch_tokens,
    "fast": fast_patch_tokens,  # sdaie.models.fast: folded SRM, channels-last, chunked on CPU
}

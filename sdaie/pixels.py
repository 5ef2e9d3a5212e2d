"""The pixel convention of every network's input: RGB in [0, 1], then CLIP mean/std per channel.

Fixed, not configurable: the official checkpoints were trained on this normalisation, and a
checkpoint of ours is only meaningful with the normalisation it was trained with. It sits below
both the data package (which cuts patches) and the models (which normalise uint8 patches chunk by
chunk), so neither reaches into the other for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize(t: torch.Tensor, mean: Sequence[float] = CLIP_MEAN,
              std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """``[..., 3, H, W]`` uint8 (0..255) or float (already in [0, 1]) -> normalised float32.

    Same arithmetic as torchvision ``ToTensor`` + ``Normalize`` (x / 255, then (x - m) / s).
    """
    if t.dtype == torch.uint8:
        x = t.to(torch.float32).div(255.0)
    elif t.is_floating_point():
        x = t.to(torch.float32)
    else:
        raise TypeError(f"normalize expects uint8 or float pixels, got {t.dtype}")
    if x.dim() < 3 or x.shape[-3] != len(mean):
        raise ValueError(f"expected [..., {len(mean)}, H, W], got {list(x.shape)}")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x.sub(m).div(s)

"""A feature per patch from the tokens of one image: how a heatmap scores a patch on its own.

The extractor's feature is the transformer output at token 0 with every other token of the image
as context (spec section 2); without positional embeddings, the output at token ``i`` is the
feature the image would have with patch ``i`` first. A patch can therefore be given a feature in
three ways, all from the same per-patch tokens (the CNN runs once):

- ``alone``: the patch as an image of one patch (N = 1);
- ``window``: the patch first, then its neighbours on the evaluation grid (``window x window``
  patches, ``size`` pixels apart, shifted to stay inside the image), as an image of those patches;
- ``image``: the output at the patch's token when the transformer runs over all patches at once.

Which one localises best is measured on the synthetic world (``docs/heatmaps.md``); the
extractor's ``aggregate`` is used unchanged, so a ``mean``-aggregating backbone works too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from sdaie.config import PATCH_CONTEXTS
from sdaie.models.base import PatchExtractor
from sdaie.pixels import normalize

CONTEXTS = PATCH_CONTEXTS
WINDOW_BATCH = 4096  # windows per transformer call (bounds memory at tens of thousands of patches)


def check_context(context: str, window: int = 3) -> None:
    if context not in CONTEXTS:
        raise ValueError(f"patch context {context!r}; valid: {list(CONTEXTS)}")
    if window < 1:
        raise ValueError(f"window must be >= 1 patch, got {window}")


@torch.no_grad()
def chunked_tokens(extractor: PatchExtractor, patches: torch.Tensor, chunk: int) -> torch.Tensor:
    """Tokens ``[N, D]`` of patches ``[N, 3, S, S]``, ``chunk`` at a time, normalising uint8
    chunks as they come: the per-patch half of ``PatchExtractor.image_feature``, same operations,
    so ``extractor.aggregate(tokens[None])[0]`` is the image feature bit for bit."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    parts = (normalize(p) if p.dtype == torch.uint8 else p for p in patches.split(chunk))
    return torch.cat([extractor.patch_tokens(part)[0] for part in parts])


def _axis_windows(n: int, step: int, k: int) -> list[np.ndarray]:
    """Per position along one lattice axis, the positions of its window: ``k`` members of its
    own class modulo ``step`` (the neighbours ``step`` cells apart), centred where possible."""
    out = []
    for p in range(n):
        first, q = p % step, p // step
        count = (n - 1 - first) // step + 1
        kk = min(k, count)
        start = min(max(q - k // 2, 0), count - kk)
        out.append(first + step * (start + np.arange(kk)))
    return out


def window_index(rows: int, cols: int, step: int, window: int) -> list[torch.Tensor]:
    """Index rows ``[cells, K]`` grouped by window shape; each row is one cell's window with the
    cell itself first (raster order after it)."""
    rw, cw = _axis_windows(rows, step, window), _axis_windows(cols, step, window)
    groups: dict[tuple[int, int], list[np.ndarray]] = {}
    for r in range(rows):
        for c in range(cols):
            cells = (rw[r][:, None] * cols + cw[c][None, :]).reshape(-1)
            me = r * cols + c
            groups.setdefault((len(rw[r]), len(cw[c])), []).append(
                np.concatenate([[me], cells[cells != me]]))
    return [torch.from_numpy(np.stack(g)) for g in groups.values()]


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(part) for part in x.split(WINDOW_BATCH)])


@torch.no_grad()
def patch_features(extractor: PatchExtractor, tokens: torch.Tensor, context: str, rows: int,
                   cols: int, step: int = 1, window: int = 3) -> torch.Tensor:
    """A feature ``[rows * cols, D]`` per lattice cell (raster order) under ``context``.

    ``step``: lattice cells between neighbouring evaluation-grid patches (patch size / stride),
    so the window's neighbours are whole patches apart at every stride.
    """
    check_context(context, window)
    if tokens.shape[0] != rows * cols:
        raise ValueError(f"{tokens.shape[0]} tokens for a {rows} x {cols} lattice")
    if context == "alone":
        return _batched(lambda t: extractor.aggregate(t[:, None]), tokens)
    if context == "image":
        if getattr(extractor.cfg, "aggregate", "transformer") == "transformer":
            return extractor.transformer(tokens[None])[0]
        return extractor.aggregate(tokens[None]).expand(tokens.shape[0], -1)
    out = torch.empty_like(tokens)
    for index in window_index(rows, cols, step, window):
        out[index[:, 0]] = _batched(lambda i: extractor.aggregate(tokens[i]), index)
    return out

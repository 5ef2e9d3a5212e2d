"""The fast per-patch path of the SDAIE extractor: the reference's function, from the same weights.

Registered as ``model.implementation="fast"`` (the default). It reads the parameters of the SDAIE
extractor as they are (official checkpoints load unchanged) and returns the same tokens and taps
as the plain spec composition up to float rounding (``tests/models/test_fast.py`` checks forward
and gradients). It folds the SRM bank into the first convolution with an exact border
correction, runs channels-last with in-place activations, and on CPU goes through patches in
cache-sized chunks, one block of patches per thread in inference. Why each of these, and what
was measured: ``docs/performance.md`` (items 1-7 there are referred to below).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from sdaie.config import ModelConfig
from sdaie.models.covpool import isqrt_cov, triu_vector

CL = torch.channels_last
CPU_CHUNK_INFERENCE = 4  # patches per pass and thread on CPU without autograd (item 5)
CPU_CHUNK_TRAIN = 16  # ... and with autograd

Affine = tuple[torch.Tensor | None, torch.Tensor | None]
Tokens = tuple[torch.Tensor, list[torch.Tensor]]  # token f5 [P, D], taps [f1..f5]


class SDAIELayers(Protocol):
    """What the fast path reads from the SDAIE extractor: its layers, in the official names, and
    its config (the module itself is :class:`~sdaie.models.sdaie_extractor.SDAIEExtractor`)."""

    cfg: ModelConfig
    group1: nn.Module  # .hpf.weight: the SRM bank [30, 1, 5, 5]
    group1_b: nn.Sequential
    group2: nn.Sequential
    group3: nn.Sequential
    group4: nn.Sequential
    group5: nn.Sequential

    def modules(self) -> Iterator[nn.Module]: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


def fold_srm(conv_weight: torch.Tensor, srm: torch.Tensor) -> torch.Tensor:
    """Weights ``[O, C*K, kh, kw]`` after the ``[K, 1, s, s]`` bank -> one ``[O, C, kh+s-1, ...]``.

    Cross-correlating with the bank and then with ``W`` is one cross-correlation with the full
    (true) convolution ``sum_k W[o, c*K + k] * S_k``, which a correlation with the flipped bank
    computes. Differentiable in ``conv_weight``.
    """
    o, ck, kh, kw = conv_weight.shape
    k = srm.shape[0]
    if ck % k:
        raise ValueError(f"{ck} input channels are not a multiple of the {k} SRM kernels")
    per_colour = conv_weight.reshape(o * (ck // k), k, kh, kw)
    bank = srm.reshape(1, k, *srm.shape[-2:]).flip(-1, -2).to(conv_weight.dtype)
    with torch.autocast(conv_weight.device.type, enabled=False):  # fold at full precision under AMP
        folded = F.conv2d(per_colour, bank, padding=srm.shape[-1] - 1)
    return folded.reshape(o, ck // k, *folded.shape[-2:])


def srm_grouped(x: torch.Tensor, srm: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """The SRM residual with colour-major channels ``c*K + k`` as one grouped convolution."""
    c = x.shape[1]
    return F.conv2d(x, srm.to(x.dtype).repeat(c, 1, 1, 1), padding=padding, groups=c)


def ring_corrections(x: torch.Tensor, srm: torch.Tensor,
                     weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What the folded convolution adds on the outer ring of its output and the reference does not.

    The folded kernel sees the residual one step outside the image (row -1, row H, column -1,
    column W), where the reference's 3x3 convolution (padding 1) sees zeros. Each of these lines
    depends only on the ``r`` pixel lines next to it (``r`` = 2 for a 5x5 bank); its contribution
    to the first/last output row (column) is the first/last row (column) of the 3x3 kernel run along
    it. The outside rows include the 4 corner positions and the outside columns do not, so no
    position is subtracted twice. Returns (top ``[P,O,1,W]``, bottom, left ``[P,O,H,1]``, right).
    """
    r = srm.shape[-1] // 2
    p = x.shape[0]
    top = F.pad(x[:, :, :r], (r + 1, r + 1, r + 1, 0))  # pixel rows -r-1..r-1, columns -r-1..W+r
    bottom = F.pad(x[:, :, -r:], (r + 1, r + 1, 0, r + 1))
    rows = srm_grouped(torch.cat([top, bottom]), srm)  # residual rows -1 and H: [2P, CK, 1, W+2]
    left = F.pad(x[..., :r], (r + 1, 0, r, r))
    right = F.pad(x[..., -r:], (0, r + 1, r, r))
    cols = srm_grouped(torch.cat([left, right]), srm)  # residual columns -1 and W: [2P, CK, H, 1]
    return (F.conv2d(rows[:p], weight[:, :, :1]), F.conv2d(rows[p:], weight[:, :, -1:]),
            F.conv2d(cols[:p], weight[..., :1], padding=(1, 0)),
            F.conv2d(cols[p:], weight[..., -1:], padding=(1, 0)))


class _SubtractRing(torch.autograd.Function):
    """``out`` minus corrections on its first/last row and column, in place.

    Its gradient w.r.t. ``out`` is the incoming gradient as is; a slice assignment instead would
    make autograd clone the whole map in the backward pass.
    """

    @staticmethod
    def forward(ctx, out, top, bottom, left, right):  # type: ignore[override]
        ctx.mark_dirty(out)
        out[:, :, :1].sub_(top)
        out[:, :, -1:].sub_(bottom)
        out[..., :1].sub_(left)
        out[..., -1:].sub_(right)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, -grad[:, :, :1], -grad[:, :, -1:], -grad[..., :1], -grad[..., -1:]


def first_conv(x: torch.Tensor, srm: torch.Tensor, conv: nn.Conv2d,
               folded: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(SRM(x))`` of the reference: one folded convolution plus the exact ring correction.

    ``folded`` (:func:`fold_srm` of ``conv.weight``) may be passed in so that chunks share one
    fold. Layers other than a padding-1 3x3 convolution take the two-step path.
    """
    if (tuple(conv.kernel_size) != (3, 3) or tuple(conv.padding) != (1, 1)
            or tuple(conv.stride) != (1, 1) or tuple(conv.dilation) != (1, 1) or conv.groups != 1
            or min(x.shape[-2:]) < 2):
        return conv(srm_grouped(x, srm, padding=srm.shape[-1] // 2))
    if folded is None:
        folded = fold_srm(conv.weight, srm)
    out = F.conv2d(x, folded, conv.bias, padding=folded.shape[-1] // 2)
    return _SubtractRing.apply(out, *ring_corrections(x, srm, conv.weight))


class _HardtanhInPlace(torch.autograd.Function):
    """``hardtanh_`` whose backward reads the clamped output instead of a saved copy of the input.

    The output is strictly inside (min, max) exactly where the input is, so the gradient mask is
    the same; autograd's own in-place hardtanh would clone the whole input to keep it.
    """

    @staticmethod
    def forward(ctx, x, min_val, max_val):  # type: ignore[override]
        ctx.mark_dirty(x)
        out = F.hardtanh_(x, min_val, max_val)
        ctx.save_for_backward(out)
        ctx.bounds = (min_val, max_val)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (out,) = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, out, *ctx.bounds), None, None


def nhwc_affine(ln: nn.LayerNorm) -> Affine:
    """A LayerNorm's (C, H, W) weight and bias as contiguous (H, W, C) tensors (differentiable)."""
    def perm(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.permute(1, 2, 0).contiguous()
    return perm(ln.weight), perm(ln.bias)


def layer_norm_cl(x: torch.Tensor, ln: nn.LayerNorm, act: nn.Module | None = None,
                  affine: Affine | None = None) -> torch.Tensor:
    """``act(ln(x))`` for a ``[P, C, H, W]`` map, computed on its contiguous NHWC view.

    The activation runs on the normalised tensor itself, never in place on a permuted view of it
    (autograd would then copy the whole base). ``affine`` is :func:`nhwc_affine` of ``ln``.
    """
    nhwc = x.contiguous(memory_format=CL).permute(0, 2, 3, 1)
    weight, bias = nhwc_affine(ln) if affine is None else affine
    out = F.layer_norm(nhwc, nhwc.shape[1:], weight, bias, ln.eps)
    if isinstance(act, nn.ReLU):
        out = F.relu_(out)
    elif isinstance(act, nn.Hardtanh):
        out = _HardtanhInPlace.apply(out, act.min_val, act.max_val)
    elif act is not None:
        raise TypeError(f"unexpected activation {type(act).__name__} after a LayerNorm")
    return out.permute(0, 3, 1, 2)


def avg_pool_cl(x: torch.Tensor, pool: nn.AvgPool2d) -> torch.Tensor:
    """``pool(x)`` as a depthwise convolution with constant 1/k^2 weights when that is the same map.

    With padding counted in the divisor every window is divided by k^2, which is exactly a
    depthwise convolution; oneDNN runs it (and its input gradient) on channels-last maps in about
    half the time of the pooling kernels. Other pooling settings run the module itself.
    """
    k, s, p = pool.kernel_size, pool.stride, pool.padding
    if (not isinstance(k, int) or not isinstance(s, int) or not isinstance(p, int)
            or pool.ceil_mode or not pool.count_include_pad or pool.divisor_override is not None):
        return pool(x)
    c = x.shape[1]
    weight = torch.full((c, 1, k, k), 1.0 / (k * k), dtype=x.dtype, device=x.device)
    return F.conv2d(x, weight, stride=s, padding=p, groups=c)


def run_layers(x: torch.Tensor, layers: Sequence[nn.Module],
               affines: dict[int, Affine] | None = None) -> torch.Tensor:
    """A stage of the reference (conv, LayerNorm, activation, AvgPool) on channels-last maps."""
    affines = affines or {}
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.LayerNorm) and len(layer.normalized_shape) == 3:
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            act = nxt if isinstance(nxt, (nn.ReLU, nn.Hardtanh)) else None
            x = layer_norm_cl(x, layer, act, affines.get(id(layer)))
            i += 2 if act is not None else 1
        elif isinstance(layer, nn.AvgPool2d):
            x = avg_pool_cl(x, layer)
            i += 1
        else:
            x = layer(x)
            i += 1
    return x


def covariance_cl(fmap: torch.Tensor) -> torch.Tensor:
    """``[P, C, H, W] -> [P, C, C]``: biased covariance over the H*W positions, as the reference."""
    p, c = fmap.shape[:2]
    x = fmap.contiguous(memory_format=CL).permute(0, 2, 3, 1).reshape(p, -1, c)  # [P, M, C]
    xc = x - x.mean(dim=1, keepdim=True)
    return torch.bmm(xc.transpose(1, 2), xc) / x.shape[1]


def _tokens(m: SDAIELayers, patches: torch.Tensor, folded: torch.Tensor,
            affines: dict[int, Affine]) -> Tokens:
    conv, *rest = m.group1_b
    x = first_conv(patches.contiguous(memory_format=CL), m.group1.hpf.weight, conv, folded)
    x = run_layers(x, rest, affines)
    f1 = run_layers(x, list(m.group2), affines)
    f2 = run_layers(f1, list(m.group3), affines)
    f3 = run_layers(f2, list(m.group4), affines)
    f4 = run_layers(f3, list(m.group5), affines)
    sigma = covariance_cl(f4)
    f5 = triu_vector(isqrt_cov(sigma, iters=m.cfg.isqrt_iters, trace_eps=m.cfg.trace_eps))
    return f5, [f1, f2, f3, f4, f5]



def _chunk_tokens(m: SDAIELayers, patches: torch.Tensor, chunk: int | None) -> Tokens:
    """All patches through :func:`_tokens`, ``chunk`` at a time, in the calling thread."""
    if chunk is None:
        chunk = _default_chunk(m, patches)
    folded = fold_srm(m.group1_b[0].weight, m.group1.hpf.weight)
    affines = {id(ln): nhwc_affine(ln) for ln in m.modules()
               if isinstance(ln, nn.LayerNorm) and len(ln.normalized_shape) == 3}
    if patches.shape[0] <= chunk:
        return _tokens(m, patches, folded, affines)
    parts = [_tokens(m, part, folded, affines) for part in patches.split(chunk)]
    taps = [torch.cat([taps[i] for _, taps in parts]) for i in range(len(parts[0][1]))]
    return taps[-1], taps


def _default_chunk(m: SDAIELayers, patches: torch.Tensor) -> int:
    if patches.device.type != "cpu":
        return max(1, patches.shape[0])
    per_thread = CPU_CHUNK_TRAIN if _records_autograd(m, patches) else CPU_CHUNK_INFERENCE
    return per_thread * torch.get_num_threads()


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _one_intra_op_thread() -> None:
    """Pool initialiser. ATen sets a thread's team size from the process default at the
    thread's first parallel query; that first query is made here, before the worker's own
    setting, or it would later override it with the caller's count."""
    torch.get_num_threads()
    torch.set_num_threads(1)


def _single_thread_pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads with one intra-op thread each, made on first use.

    ``torch.set_num_threads`` in a thread sets that thread's OpenMP team size, and also the
    default that threads started later inherit; so all workers are started at once here and the
    caller's setting is put back afterwards. Keyed by process id: a forked child builds its own.
    """
    key = (os.getpid(), workers)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            threads = torch.get_num_threads()
            pool = ThreadPoolExecutor(workers, thread_name_prefix="sdaie-fast",
                                      initializer=_one_intra_op_thread)
            started = threading.Barrier(workers)  # every submit starts a thread: none is idle
            for future in [pool.submit(started.wait, 60.0) for _ in range(workers)]:
                future.result()
            torch.set_num_threads(threads)
            _POOLS[key] = pool
    return pool


def _records_autograd(m: SDAIELayers, patches: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and (patches.requires_grad
                                        or any(p.requires_grad for p in m.parameters()))


def _worker_count(m: SDAIELayers, patches: torch.Tensor, chunk: int | None) -> int:
    """Blocks to run side by side: one per intra-op thread, at most one per chunk; CPU inference
    only (item 7)."""
    if (patches.device.type != "cpu" or torch.is_autocast_enabled("cpu")
            or _records_autograd(m, patches)):
        return 1
    threads = torch.get_num_threads()
    if threads < 2:
        return 1
    return min(threads, math.ceil(patches.shape[0] / (chunk or CPU_CHUNK_INFERENCE)))


def _block_tokens(m: SDAIELayers, block: torch.Tensor, chunk: int | None, grad: bool,
                  inference: bool) -> Tokens:
    """:func:`_chunk_tokens` in a worker, under the caller's grad and inference modes (both are
    per thread and would otherwise be the defaults)."""
    with torch.inference_mode(inference), torch.set_grad_enabled(grad):
        return _chunk_tokens(m, block, chunk)


def _parallel_tokens(m: SDAIELayers, patches: torch.Tensor, chunk: int | None,
                     workers: int) -> Tokens:
    """:func:`_chunk_tokens` with the patches split into ``workers`` blocks run side by side."""
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    results = list(_single_thread_pool(workers).map(
        lambda block: _block_tokens(m, block, chunk, grad, inference),
        patches.tensor_split(workers)))
    taps = [torch.cat([taps[i] for _, taps in results]) for i in range(len(results[0][1]))]
    return taps[-1], taps


def fast_patch_tokens(m: SDAIELayers, patches: torch.Tensor,
                      chunk: int | None = None) -> Tokens:
    """The reference's outputs: token f5 ``[P, D]`` and taps [f1..f5] (maps in channels-last).

    ``chunk``: patches per pass (default on CPU :data:`CPU_CHUNK_TRAIN` per thread when autograd
    records, else :data:`CPU_CHUNK_INFERENCE` per thread; on other devices all). In CPU inference
    with several intra-op threads the patches are split into blocks run by single-threaded
    workers (item 7). The SRM fold and the permuted LayerNorm parameters are
    computed once per pass of chunks, inside the autograd graph, so gradients reach the
    module's own parameters.
    """
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    workers = _worker_count(m, patches, chunk)
    if workers > 1:
        return _parallel_tokens(m, patches, chunk, workers)
    return _chunk_tokens(m, patches, chunk)

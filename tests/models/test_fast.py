"""The fast path must be the reference's function: same outputs and gradients, same weights."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

import sdaie.models.fast as fast_module
from sdaie.config import ModelConfig
from sdaie.models import BinaryDetector, build_extractor
from sdaie.models.fast import (
    avg_pool_cl,
    fast_patch_tokens,
    first_conv,
    fold_srm,
    layer_norm_cl,
    srm_grouped,
)
from sdaie.models.sdaie_extractor import IMPLEMENTATIONS, reference_patch_tokens
from sdaie.models.srm import SRMFilter, srm_kernels

REL = 1e-4  # the contract: max |fast - reference| <= 1e-4 * max |reference|, in float32


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _pair(cfg: ModelConfig, dtype=torch.float32):
    """The same weights under both implementations."""
    ref = build_extractor(dataclasses.replace(cfg, implementation="reference")).to(dtype)
    fast = copy.deepcopy(ref)
    fast.implementation = "fast"
    return ref, fast


def _randomise_norms(m: torch.nn.Module) -> None:
    # Default LayerNorm affine is (1, 0); random values make a layout mix-up of the permuted
    # parameters visible.
    with torch.no_grad():
        for ln in m.modules():
            if isinstance(ln, torch.nn.LayerNorm):
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.uniform_(-0.5, 0.5)


def test_fast_is_registered_and_the_default():
    assert IMPLEMENTATIONS["fast"] is fast_patch_tokens
    assert IMPLEMENTATIONS["reference"] is reference_patch_tokens
    assert ModelConfig().implementation == "fast"


@pytest.mark.parametrize("size", [(16, 16), (9, 13), (2, 5)])
def test_first_conv_equals_srm_then_conv_everywhere_including_the_ring(size):
    torch.manual_seed(1)
    srm = srm_kernels(torch.float64).unsqueeze(1)
    conv = torch.nn.Conv2d(90, 6, 3, padding=1).double()
    x = torch.randn(3, 3, *size, dtype=torch.float64)
    expected = conv(SRMFilter().double()(x))  # the reference module, not our grouped version
    got = first_conv(x.contiguous(memory_format=torch.channels_last), srm, conv)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # The ring correction is what makes it exact: the folded convolution alone differs on the ring.
    folded = F.conv2d(x, fold_srm(conv.weight, srm), conv.bias, padding=3)
    inner = (..., slice(1, -1), slice(1, -1))
    torch.testing.assert_close(folded[inner], expected[inner], rtol=0, atol=1e-12)
    assert (folded - expected).abs().amax() > 1e-3


def test_srm_grouped_matches_the_srm_module():
    x = torch.randn(2, 3, 11, 11, dtype=torch.float64)
    srm = srm_kernels(torch.float64).unsqueeze(1)
    torch.testing.assert_close(srm_grouped(x, srm, padding=2), SRMFilter().double()(x))


def test_layer_norm_on_nhwc_view_matches_module():
    ln = torch.nn.LayerNorm([4, 5, 6])
    _randomise_norms(ln)
    x = torch.randn(3, 4, 5, 6)
    torch.testing.assert_close(layer_norm_cl(x, ln, torch.nn.ReLU()), F.relu(ln(x)))
    torch.testing.assert_close(layer_norm_cl(x.contiguous(memory_format=torch.channels_last), ln,
                                             torch.nn.Hardtanh(-0.5, 0.5)),
                               F.hardtanh(ln(x), -0.5, 0.5))


def test_in_place_hardtanh_gradient_matches_module_where_it_saturates():
    ln = torch.nn.LayerNorm([4, 5, 6]).double()
    _randomise_norms(ln)
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    x[0, 0, 0, 0] = 50.0  # some outputs clamp at both bounds, some exactly at them
    grads = []
    for fn in (lambda t: F.hardtanh(ln(t), -0.5, 0.5),
               lambda t: layer_norm_cl(t, ln, torch.nn.Hardtanh(-0.5, 0.5))):
        xx = x.clone().requires_grad_()
        out = fn(xx)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append((out.detach(), xx.grad))
    assert (grads[0][0].abs() == 0.5).sum() > 5  # the clamp did act
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("pool", [torch.nn.AvgPool2d(3, stride=2, padding=1),
                                  torch.nn.AvgPool2d(2),
                                  torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)])
def test_avg_pool_as_depthwise_conv_matches_module(pool):
    x = torch.randn(2, 5, 9, 8, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, expected = avg_pool_cl(a, pool), pool(b)
    w = torch.randn_like(expected)
    (got * w).sum().backward()
    (expected * w).sum().backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk", [None, 3])
def test_tiny_features_and_taps_match_reference(tiny_cfg, chunk):
    ref, fast = _pair(tiny_cfg())
    _randomise_norms(ref)
    fast.load_state_dict(ref.state_dict())
    patches = torch.randn(8, 3, 16, 16)
    with torch.no_grad():
        t_ref, taps_ref = reference_patch_tokens(ref, patches)
        t_fast, taps_fast = fast_patch_tokens(fast, patches, chunk=chunk)  # 3: uneven chunks
    assert [t.shape for t in taps_fast] == [t.shape for t in taps_ref]
    for a, b in zip(taps_fast, taps_ref):
        assert _rel(a, b) <= REL
    x = patches.view(2, 4, 3, 16, 16)
    assert _rel(fast(x), ref(x)) <= REL


def test_paper_config_features_and_taps_match_reference():
    ref, fast = _pair(ModelConfig())
    _randomise_norms(ref)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 2, 3, 64, 64)
    with torch.no_grad():
        f_ref, taps_ref = ref.forward_with_taps(x)
        f_fast, taps_fast = fast.forward_with_taps(x)
    assert f_fast.shape == (2, 528)
    assert _rel(f_fast, f_ref) <= REL
    for a, b in zip(taps_fast, taps_ref):
        assert a.shape == b.shape and _rel(a, b) <= REL


def test_gradients_equal_reference_in_float64(tiny_cfg):
    """Same function, so in float64 the gradients agree to rounding (~1e-13 relative)."""
    ref, fast = _pair(tiny_cfg(), torch.float64)
    _randomise_norms(ref)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    grads = []
    for m in (ref, fast):
        x.grad = None
        m.zero_grad()
        feature, taps = m.forward_with_taps(x)
        (feature.square().sum() + sum(t.square().mean() for t in taps)).backward()
        grads.append({"x": x.grad.clone(), **{n: p.grad.clone() for n, p in m.named_parameters()}})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert _rel(grads[1][name], grads[0][name]) <= 1e-9, name


def test_paper_config_float32_gradients_are_as_accurate_as_the_reference():
    """In float32 both paths round differently; judged against a float64 oracle, the fast path's
    gradient error must be of the reference's own order (at most 4x it, plus 1e-6 of the scale)."""
    torch.manual_seed(3)
    ref32, fast32 = _pair(ModelConfig(transformer_depth=1))
    _randomise_norms(ref32)
    fast32.load_state_dict(ref32.state_dict())
    ref64 = copy.deepcopy(ref32).double()
    x = torch.randn(1, 2, 3, 64, 64)
    grads = []
    for m, xx in ((ref64, x.double()), (ref32, x), (fast32, x)):
        m.zero_grad()
        m(xx).square().sum().backward()
        grads.append({n: p.grad.double() for n, p in m.named_parameters()})
    for name, oracle in grads[0].items():
        scale = float(oracle.abs().max())
        err_ref = float((grads[1][name] - oracle).abs().max())
        err_fast = float((grads[2][name] - oracle).abs().max())
        assert err_fast <= 4 * err_ref + 1e-6 * scale, (name, err_fast, err_ref, scale)


def test_flat_and_zero_patches_stay_finite(tiny_cfg):
    _, fast = _pair(tiny_cfg())
    x = torch.zeros(2, 3, 3, 16, 16)
    x[1] = 0.7
    assert torch.isfinite(fast(x)).all()


def test_inference_mode_and_binary_detector_taps(tiny_cfg):
    cfg = tiny_cfg(implementation="fast")
    det = BinaryDetector(cfg)
    ref_det = copy.deepcopy(det)
    for name in ("trainable", "frozen"):
        getattr(ref_det, name).implementation = "reference"
    x = torch.randn(2, 3, 3, 16, 16)
    with torch.inference_mode():
        logits = det(x)
    logits_ref, taps_r_ref, taps_p_ref = ref_det.forward_with_taps(x)
    logits_fast, taps_r, taps_p = det.forward_with_taps(x)
    assert _rel(logits, logits_ref) <= REL and _rel(logits_fast, logits_ref) <= REL
    for a, b in zip(taps_r + taps_p, taps_r_ref + taps_p_ref):
        assert _rel(a, b) <= REL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_reference(tiny_cfg):
    ref, fast = _pair(tiny_cfg())
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        expected = ref(x)
        got = fast.cuda()(x.cuda()).cpu()
    assert _rel(got, expected) <= REL


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _count_parallel_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = fast_module._parallel_tokens

    def spy(m, patches, chunk, workers):
        calls.append(workers)
        return real(m, patches, chunk, workers)

    monkeypatch.setattr(fast_module, "_parallel_tokens", spy)
    return calls


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_inference_blocks_in_worker_threads_give_the_same_features(tiny_cfg, two_threads,
                                                                    monkeypatch, context):
    ref, fast = _pair(tiny_cfg())
    _randomise_norms(ref)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 3, 16, 16)  # 15 patches: blocks of 8 and 7, chunks of 4 inside
    calls = _count_parallel_calls(monkeypatch)
    mode = torch.no_grad() if context == "no_grad" else torch.inference_mode()
    with mode:
        got = fast(x)
        expected = ref(x)
        torch.set_num_threads(1)
        one_thread = fast(x)
        torch.set_num_threads(2)
    assert calls == [2]  # the block path ran once (2 threads), not at 1 thread
    assert _rel(got, expected) <= REL
    assert _rel(got, one_thread) <= 1e-6
    assert not got.requires_grad  # the caller's grad mode reached the workers
    assert torch.is_inference(got) == (context == "inference_mode")
    assert torch.get_num_threads() == 2  # the pool's one-thread workers left ours alone


def test_worker_threads_have_one_intra_op_thread(two_threads):
    pool = fast_module._single_thread_pool(2)
    assert sorted(pool.map(lambda _: torch.get_num_threads(), range(4))) == [1, 1, 1, 1]
    assert torch.get_num_threads() == 2


def test_training_keeps_intra_op_threads_and_reference_gradients(tiny_cfg, two_threads,
                                                                 monkeypatch):
    ref, fast = _pair(tiny_cfg(), torch.float64)
    fast.load_state_dict(ref.state_dict())
    calls = _count_parallel_calls(monkeypatch)
    x = torch.randn(2, 8, 3, 16, 16, dtype=torch.float64)
    for m in (ref, fast):
        m.zero_grad()
        m(x).square().sum().backward()
    assert calls == []  # autograd recording: no worker blocks
    for (name, a), b in zip(ref.named_parameters(), fast.parameters()):
        assert _rel(b.grad, a.grad) <= 1e-9, name

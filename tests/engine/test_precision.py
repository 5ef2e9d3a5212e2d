import torch

from sdaie.engine.precision import Precision


def test_amp_is_for_cuda_only_a_cpu_run_stays_in_float32():
    p = Precision(torch.device("cpu"), amp=True, tf32=False)
    with p.autocast():
        y = torch.ones(2, 3) @ torch.ones(3, 2)
    assert p.dtype is None and y.dtype == torch.float32


def test_backward_and_step_update_the_parameters():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    p = Precision(torch.device("cpu"))
    p.backward((w * 3).sum())
    p.step(opt)
    assert w.item() == 1.0 - 0.5 * 3

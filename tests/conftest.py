import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors gain nothing from intra-op threads, and on two shared cores they spin-wait;
    one thread also keeps results bitwise equal to the training subprocesses some tests start."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def host_reads(monkeypatch):
    """Names of the tensor methods that read values to the host (``.item()``, ``float(t)``,
    ``.cpu()``, ...), in call order, when called from this project's code (``sdaie/``, ``tests/``):
    on a GPU each one waits for every queued kernel. Calls inside torch itself are not counted
    (Adam, for one, reads its step counter, which it keeps on the CPU for that reason). A test may
    append its own markers to the list to see where the reads fall."""
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    ours = (str(repo / "sdaie"), str(repo / "tests"))
    reads: list[str] = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def method(self, *args, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(ours):
                reads.append(name)
            return original(self, *args, **kwargs)
        return method

    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__",
                 "__format__", "__repr__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    return reads

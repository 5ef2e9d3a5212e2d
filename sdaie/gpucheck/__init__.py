"""``sdaie gpu-check``: does the GPU path work, how fast, with which settings, on this node?

One command a user runs on a fresh node before a multi-day job (``docs/gpu-nodes.md``); it
writes ``gpu_check.md`` and ``gpu_check.json``. The sections, one module each:
``environment`` (versions, GPUs, cores), ``correctness`` (reference vs fast extractor in float32
and under autocast; an official-format checkpoint on CPU and on the device), ``throughput``
(training pairs/s and peak memory per precision / layout / compile variant, inference
patches/s, the fastest correct variant and its config keys), ``loader`` (images/s per data
source and decoder with k workers, against what a step consumes; decoder agreement),
``pipeline`` (the whole method end to end on the device with tiny sizes), ``ddp`` (a 2-rank
torchrun run whose ranks must end with equal parameters). ``plan`` holds the sizes (the paper's
on a GPU, tiny with ``--cpu``), ``report`` the two output files, ``cli`` the command.
"""

"""Section ``environment``: the versions and hardware that decide numerics and speed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sdaie.gpucheck.plan import Plan, usable_cores
from sdaie.gpucheck.report import Section
from sdaie.runinfo import environment_info


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s "Model name"), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return environment_info().get("processor") or "unknown"


def _nccl() -> str:
    try:
        version = torch.cuda.nccl.version()
    except (AttributeError, RuntimeError):
        return "none"
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def gpu_rows() -> list[dict[str, Any]]:
    rows = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        rows.append({"gpu": i, "name": p.name, "memory_GB": p.total_memory / 2**30,
                     "compute_capability": f"{p.major}.{p.minor}", "SMs": p.multi_processor_count,
                     "native_bf16": p.major >= 8})
    return rows


def check_environment(plan: Plan) -> Section:
    env = environment_info()
    cuda = torch.cuda.is_available()
    facts = {"torch": torch.__version__, "torchvision": env.get("torchvision"),
             "cuda": torch.version.cuda if cuda else None,
             "cudnn": torch.backends.cudnn.version() if cuda else None,
             "nccl": _nccl() if cuda else None, "gpus": torch.cuda.device_count() if cuda else 0,
             "cpu": cpu_model(), "cpu_cores": usable_cores(), "python": env.get("python"),
             "pillow": env.get("pillow"), "libjpeg_turbo": env.get("libjpeg_turbo"),
             "device": str(plan.device), "torch_threads": torch.get_num_threads()}
    rows = [{"item": k, "value": "none (no CUDA)" if v is None else v} for k, v in facts.items()]
    gpus = gpu_rows() if cuda else []
    facts["gpu_list"] = gpus
    rows += [{"item": f"gpu {g['gpu']}", "value": f"{g['name']}, {g['memory_GB']:.0f} GB, compute "
              f"{g['compute_capability']}, {g['SMs']} SMs, "
              f"bf16 {'native' if g['native_bf16'] else 'emulated'}"}
             for g in gpus]
    summary = (f"{len(gpus)} x {gpus[0]['name']}, CUDA {facts['cuda']}, cuDNN {facts['cudnn']}, "
               f"NCCL {facts['nccl']}; {facts['cpu_cores']} CPU cores ({facts['cpu']})" if gpus
               else f"no CUDA device; {facts['cpu_cores']} CPU cores ({facts['cpu']}), "
                    f"torch {facts['torch']}")
    return Section("environment", "Environment", "ok", summary, rows, facts=facts)

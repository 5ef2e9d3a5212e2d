"""What a run writes beside its outputs so it can be reproduced: resolved config and versions."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from PIL import features

from sdaie.atomic import atomic_write_text
from sdaie.config import Config, to_dict

_DISTRIBUTIONS = {"sdaie": "sdaie", "torch": "torch", "torchvision": "torchvision", "pillow": "pillow",
                  "numpy": "numpy", "scikit-learn": "scikit-learn", "exifread": "exifread"}


def _git_commit() -> str | None:
    """Commit of the sdaie source tree, if it is a git checkout (None for an installed wheel)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment_info() -> dict[str, Any]:
    """Versions that change numerical results: torch, torchvision, Pillow and its libjpeg, ...

    Versions come from package metadata, so recording them does not import torch or sklearn
    (seconds of start-up for ``sdaie index``); GPU facts are added only when torch is loaded.
    """
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        **{name: _version(dist) for name, dist in _DISTRIBUTIONS.items()},
        "libjpeg": features.version("jpg"),
        "libjpeg_turbo": features.check_feature("libjpeg_turbo"),
        "git_commit": _git_commit(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__  # includes the build tag, e.g. +cu132
        cuda = torch.cuda.is_available()
        info["cuda"] = torch.version.cuda if cuda else None
        count = torch.cuda.device_count() if cuda else 0
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(count)]
        info["torch_threads"] = torch.get_num_threads()
    return info


def write_run_info(out_dir: str | Path, cfg: Config | None = None, **extra: Any) -> dict[str, Any]:
    """Write ``config.yaml`` (resolved) and ``environment.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = environment_info()
    env["time_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    env["argv"] = sys.argv
    env.update(extra)
    if cfg is not None:
        atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    atomic_write_text(out / "environment.json", json.dumps(env, indent=2, default=str) + "\n")
    return env

"""Value ranges, refused at load time with the key, the value and what is allowed.

Checked before torch is imported, so a value out of range costs a second, not a start-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .sections import PATCH_CONTEXTS, PROTOCOLS, Config, ConfigError

Rule = tuple[Callable[[Any], bool], str]


def _at_least(n: float) -> Rule:
    return (lambda v: v >= n), f"a number >= {n:g}"


def _positive() -> Rule:
    return (lambda v: v > 0), "a number > 0"


def _share(upper_open: bool = False) -> Rule:
    if upper_open:
        return (lambda v: 0 <= v < 1), "a number in [0, 1)"
    return (lambda v: 0 <= v <= 1), "a number in [0, 1]"


def _one_of(*choices: str) -> Rule:
    return (lambda v: v in choices), "one of " + ", ".join(choices)


def _pair(low: float, high: float) -> Rule:
    return ((lambda v: len(v) == 2 and low <= v[0] <= v[1] <= high),
            f"[low, high] with {low:g} <= low <= high <= {high:g}")


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
RULES: dict[str, Rule] = {
    "run.device": ((lambda v: bool(_DEVICE.match(v))), "auto, cpu, cuda, cuda:N or mps"),
    "run.dist_timeout_s": _at_least(1),
    "model.backbone": _one_of("sdaie", "resnet"),
    "model.implementation": _one_of("fast", "reference"),
    "model.patch_size": _at_least(1), "model.width": _at_least(1),
    "model.isqrt_iters": _at_least(1), "model.aggregate": _one_of("transformer", "mean"),
    "model.resnet_arch": _one_of("resnet18", "resnet34", "resnet50"),
    "data.patches": _at_least(1), "data.workers": _at_least(0),
    "data.val_fraction": _share(upper_open=True),
    "pretext.batch_size": _at_least(1), "pretext.lr": _positive(),
    "pretext.weight_decay": _at_least(0), "pretext.steps": _at_least(1),
    "pretext.ckpt_every": _at_least(1), "pretext.log_every": _at_least(1),
    # models.losses.RANK_LOSSES and its alias "bce" (not imported: that module needs torch)
    "pretext.rank_loss": _one_of("exact", "official", "fidelity", "bce"),
    "oneclass.per_dir": _at_least(1), "oneclass.components": _at_least(1),
    "oneclass.covariance_type": _one_of("full", "tied", "diag", "spherical"),
    "oneclass.init_params": _one_of("kmeans", "k-means++", "random", "random_from_data"),
    "oneclass.quantile": _share(upper_open=True), "oneclass.reg_covar": _positive(),
    "oneclass.max_patches": _at_least(1), "oneclass.batch_patches": _at_least(1),
    "binary.epochs": _at_least(1), "binary.batch_size": _at_least(1), "binary.lr": _positive(),
    "binary.alpha": _at_least(0), "binary.p_resize": _share(), "binary.p_blur": _share(),
    "binary.p_jpeg": _share(), "binary.resize_range": _pair(1, 1e9),
    "binary.blur_sigma": _pair(0, 1e9), "binary.jpeg_quality": _pair(1, 100),
    "binary.val_batches": _at_least(0), "binary.log_every": _at_least(1),
    "eval.max_patches": _at_least(1), "eval.batch_patches": _at_least(1),
    "eval.threshold": _share(),
    "oneclass.protocol": _one_of(*PROTOCOLS), "eval.protocol": _one_of(*PROTOCOLS),
    "localisation.stride": _at_least(0), "localisation.window": _at_least(1),
    "localisation.contexts": ((lambda v: all(c in PATCH_CONTEXTS for c in v)),
                              "a list of " + ", ".join(PATCH_CONTEXTS)),
    "localisation.min_cover": ((lambda v: 0 < v <= 1), "a number in (0, 1]"),
    "localisation.calibration_images": _at_least(0),
}


def check_values(cfg: Config) -> None:
    """Raise :class:`ConfigError` naming the first key whose value is outside :data:`RULES`."""
    for key, (ok, allowed) in RULES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is out of range: use {allowed}")

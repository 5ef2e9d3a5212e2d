"""A torchvision ResNet on the same SRM residual, a drop-in alternative to the SDAIE CNN.

The face predecessor of SDAIE ranked EXIF tags with a ResNet-50; this backbone lets the same
pretext, one-class and binary stages run on it. Per patch: SRM residual (90 channels) ->
ResNet whose ``conv1`` takes the 90 channels directly (rather than a 1x1 squeeze to 3 channels,
which would throw most of the residual away before the first learned filter) -> global average
pool -> Linear to ``feature_dim`` (528). Patch tokens then meet in the same transformer (or a mean,
``model.aggregate``). Taps f1..f4 are the outputs of layer1..layer4 and f5 the projected token,
so the binary regulariser applies unchanged.

No hub weights (none are reachable offline). ``model.resnet_weights`` may name a local torchvision
state dict (ImageNet or other): every layer loads strictly except ``fc`` (dropped) and ``conv1``,
whose 3-channel kernels are inflated to 90 channels (each colour's kernel repeated over that
colour's 30 residuals, divided by 30).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sdaie.config import ConfigError, ModelConfig
from sdaie.models.base import PatchExtractor
from sdaie.models.srm import N_KERNELS, SRMResidual

ARCHS = ("resnet18", "resnet34", "resnet50")


def _make_resnet(arch: str) -> nn.Module:
    import torchvision  # here: the registry imports this module for every model; only ResNet needs it

    if arch not in ARCHS:
        raise ConfigError(f"model.resnet_arch={arch!r}; valid: {list(ARCHS)}")
    net = getattr(torchvision.models, arch)(weights=None)
    net.conv1 = nn.Conv2d(3 * N_KERNELS, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


def inflate_conv1(weight: torch.Tensor) -> torch.Tensor:
    """``[64, 3, k, k] -> [64, 90, k, k]``: channel ``c*30 + j`` gets colour c's kernel / 30."""
    return weight.repeat_interleave(N_KERNELS, dim=1) / N_KERNELS


def load_resnet_weights(net: nn.Module, path: str | Path) -> None:
    """Load a local torchvision ResNet state dict into ``net`` (``fc`` dropped, ``conv1`` inflated)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()
             if not k.startswith(("fc.", "module.fc."))}
    if "conv1.weight" in state and state["conv1.weight"].shape[1] == 3:
        state["conv1.weight"] = inflate_conv1(state["conv1.weight"])
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: not a torchvision ResNet state dict for this architecture; "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]} "
                         f"({len(missing)}/{len(unexpected)}/{len(wrong)} in all)")
    net.load_state_dict(state, strict=True)


class ResNetExtractor(PatchExtractor):
    """SRM residual -> ResNet-18/34/50 trunk -> Linear(.., D) per patch -> tokens meet."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.group1 = SRMResidual()
        self.resnet = _make_resnet(cfg.resnet_arch)
        width = self.resnet.layer4[-1].conv1.in_channels  # 512 (basic blocks) or 2048 (bottleneck)
        self.embed = nn.Linear(width, self.feature_dim)
        if cfg.resnet_weights:
            load_resnet_weights(self.resnet, cfg.resnet_weights)

    def patch_tokens(self, patches: torch.Tensor,
                     with_taps: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(self.group1(patches)))))
        f1 = r.layer1(x)
        f2 = r.layer2(f1)
        f3 = r.layer3(f2)
        f4 = r.layer4(f3)
        f5 = self.embed(torch.flatten(r.avgpool(f4), 1))
        return f5, ([f1, f2, f3, f4, f5] if with_taps else [])

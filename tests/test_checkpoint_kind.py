"""The torch-free look at a checkpoint's kind agrees with the full loader on every format."""

import torch

from sdaie.checkpoint_kind import peek_kind
from sdaie.config import HeadConfig, ModelConfig
from sdaie.models import BinaryDetector, PretextModel, load_checkpoint, save_checkpoint

TINY = ModelConfig(width=4, depths=[1, 1, 1, 1], transformer_depth=1, attn_heads=2, dim_head=4,
                   mlp_dim=8, patch_size=16)


def test_kind_of_ours_and_official_layouts(tmp_path):
    torch.manual_seed(0)
    pre = PretextModel(TINY, [HeadConfig("ISOSpeedRatings", "rank")])
    det = BinaryDetector(TINY)
    files = {
        "ours_pretext": save_checkpoint(tmp_path / "p.pt", "pretext", pre, TINY),
        "ours_binary": save_checkpoint(tmp_path / "b.pt", "binary", det, TINY),
    }
    official = {  # the authors' layouts: DDP prefixes, their binary key names
        "official_pretext": {"state_net": {f"module.{k}": v for k, v in pre.state_dict().items()}},
        "official_binary": {"state_net": {
            "module." + k.replace("trainable.", "diffusionextractor_random.")
                             .replace("frozen.", "diffusionextractor_pretrained."): v
            for k, v in det.state_dict().items()}, "epoch": 3},
    }
    for name, obj in official.items():
        files[name] = tmp_path / f"{name}.pth"
        torch.save(obj, files[name])
    for name, path in files.items():
        assert peek_kind(path) == load_checkpoint(path)["kind"] == name.split("_")[1], name


def test_unreadable_files_are_left_to_the_loader(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    assert peek_kind(tmp_path / "x.pt") is None
    assert peek_kind(tmp_path / "list.pt") is None
    assert peek_kind(tmp_path / "other.pt") is None
    assert peek_kind(tmp_path / "missing.pt") is None

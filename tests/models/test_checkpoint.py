import fractions

import pytest
import torch

from sdaie.config import Config, HeadConfig
from sdaie.models import (
    BinaryDetector,
    CheckpointError,
    PretextModel,
    binary_from_pretext,
    build_extractor,
    load_binary_detector,
    load_checkpoint,
    load_extractor,
    load_pretext_model,
    save_checkpoint,
)

PAPER_HEAD_SIZES = [1, 7, 1, 1, 1, 6, 4, 1, 1, 6, 4, 2, 1, 5]


def official_backbone_state(official_keys, prefix):
    return {prefix + k: torch.randn(shape) for k, shape in official_keys}


def official_pretext(official_keys, module=True):
    p = "module." if module else ""
    state = official_backbone_state(official_keys, p + "backbone.")
    for i, k in enumerate(PAPER_HEAD_SIZES, start=1):
        state[f"{p}fc{i}.weight"] = torch.randn(k, 528)
        state[f"{p}fc{i}.bias"] = torch.randn(k)
    return {"state_net": state}


def official_binary(official_keys, module=True):
    p = "module." if module else ""
    state = official_backbone_state(official_keys, p + "diffusionextractor_random.")
    state.update(official_backbone_state(official_keys, p + "diffusionextractor_pretrained."))
    state[p + "fc.weight"], state[p + "fc.bias"] = torch.randn(2, 528), torch.randn(2)
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}
    return {"state_net": state, "state_optimizer": optimizer,
            "epoch": 15}


@pytest.mark.parametrize("module", [True, False])
def test_official_pretext_loads_strictly(tmp_path, official_keys, module):
    raw = official_pretext(official_keys, module)
    path = tmp_path / "pretext.pth"
    torch.save(raw, path)
    ext = load_extractor(path)
    assert not ext.training
    p = "module." if module else ""
    for key, _ in official_keys:
        assert torch.equal(ext.state_dict()[key], raw["state_net"][p + "backbone." + key])
    model = load_pretext_model(path)
    assert torch.equal(model.fc2.weight, raw["state_net"][p + "fc2.weight"])
    assert [h.tag for h in model.heads] == [h.tag for h in Config().schema.heads]


def test_official_binary_loads_and_gives_logits_and_trainable_copy(tmp_path, official_keys):
    raw = official_binary(official_keys)
    path = tmp_path / "binary.pth"
    torch.save(raw, path)
    det = load_binary_detector(path)
    x = torch.randn(1, 2, 3, 64, 64)
    logits = det(x)
    assert type(logits) is torch.Tensor and logits.shape == (1, 2)
    ext = load_extractor(path)
    key = "group2.0.weight"
    assert torch.equal(ext.state_dict()[key], raw["state_net"]["module.diffusionextractor_random." + key])
    feature = ext(x)
    assert type(feature) is torch.Tensor and feature.shape == (1, 528)
    torch.testing.assert_close(det.fc(feature), logits)
    assert load_checkpoint(path)["epoch"] == 15


def test_wrong_shape_missing_and_unexpected_are_listed(tmp_path, official_keys):
    raw = official_pretext(official_keys)
    state = raw["state_net"]
    state["module.backbone.group2.1.weight"] = torch.randn(32, 32, 32)
    del state["module.backbone.transformer.layers.1.1.fn.net.3.bias"]
    state["module.backbone.group6.0.weight"] = torch.randn(3)
    path = tmp_path / "bad.pth"
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as err:
        load_extractor(path)
    msg = str(err.value)
    assert "wrong shape (1): group2.1.weight (checkpoint [32, 32, 32], model [32, 64, 64])" in msg
    assert "missing (1): transformer.layers.1.1.fn.net.3.bias" in msg
    assert "unexpected (1): group6.0.weight" in msg
    assert str(path) in msg


def test_unrecognised_and_unsafe_files_are_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    torch.save({"state_net": {"conv.weight": torch.zeros(1)}}, junk)
    with pytest.raises(CheckpointError, match="not an SDAIE checkpoint"):
        load_extractor(junk)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"obj": fractions.Fraction(1, 3)}, unsafe)  # not on the weights-only allow list
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(unsafe)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_own_format_roundtrip_with_extras(tmp_path, tiny_cfg, tiny_heads):
    cfg = Config(model=tiny_cfg())
    cfg.schema.heads = tiny_heads
    model = PretextModel(cfg.model, tiny_heads)
    path = save_checkpoint(tmp_path / "p.pt", "pretext", model, cfg, step=7, optimizer={"lr": 1e-4})
    ckpt = load_checkpoint(path)
    assert (ckpt["format"], ckpt["version"], ckpt["kind"], ckpt["step"]) == ("sdaie", 2, "pretext", 7)
    assert ckpt["schema"][1]["tag"] == "Make" and ckpt["config"]["model"]["width"] == 4
    loaded = load_pretext_model(path)
    x = torch.randn(2, 2, 3, 16, 16)
    for a, b in zip(loaded(x), model.eval()(x)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(load_extractor(path)(x), model.backbone(x))


def test_own_binary_roundtrip_and_from_pretext(tmp_path, tiny_cfg, tiny_heads):
    pre = PretextModel(tiny_cfg(), tiny_heads)
    ppath = save_checkpoint(tmp_path / "p.pt", "pretext", pre, tiny_cfg())
    det = binary_from_pretext(ppath)
    assert det.training and not det.frozen.training
    torch.testing.assert_close(det.frozen.group3[0].weight, pre.backbone.group3[0].weight)
    bpath = save_checkpoint(tmp_path / "b.pt", "binary", det, tiny_cfg(), epoch=3)
    again = load_binary_detector(bpath)
    x = torch.randn(1, 3, 3, 16, 16)
    torch.testing.assert_close(again(x), det.eval()(x))
    with pytest.raises(CheckpointError, match="not a pretext model"):
        load_pretext_model(bpath)


def test_architecture_and_schema_mismatch_are_refused(tmp_path, tiny_cfg, tiny_heads):
    path = save_checkpoint(tmp_path / "p.pt", "pretext", PretextModel(tiny_cfg(), tiny_heads), tiny_cfg())
    with pytest.raises(CheckpointError, match=r"model.width: checkpoint 4, requested 5"):
        load_extractor(path, model_cfg=tiny_cfg(width=5))
    with pytest.raises(CheckpointError, match=r"model.isqrt_iters"):
        load_extractor(path, model_cfg=tiny_cfg(isqrt_iters=7))
    other = list(tiny_heads)
    other[1] = HeadConfig("Make", "class", classes=3, binning="codes", codes=[[0], [1], [2]])
    with pytest.raises(CheckpointError, match="different EXIF schema"):
        load_pretext_model(path, heads=other)
    ext = load_extractor(path, model_cfg=tiny_cfg(implementation="fast"))  # runtime field: allowed
    assert ext.cfg.implementation == "fast"


def test_save_refuses_reserved_extras_and_wrong_kind(tmp_path, tiny_cfg, tiny_heads):
    model = PretextModel(tiny_cfg(), tiny_heads)
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "x.pt", "pretext", model, tiny_cfg(), state_dict={})
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "x.pt", "binary", model, tiny_cfg())
    assert isinstance(build_extractor(tiny_cfg()), torch.nn.Module)
    assert isinstance(BinaryDetector(tiny_cfg()), torch.nn.Module)


def test_official_binary_keys_are_renamed_to_ours(tmp_path, official_keys):
    raw = official_binary(official_keys, module=False)
    path = tmp_path / "binary.pth"
    torch.save(raw, path)
    state = load_checkpoint(path)["state_dict"]
    official = raw["state_net"]
    assert len(state) == len(official)
    for key, _ in official_keys:
        assert torch.equal(state["trainable." + key], official["diffusionextractor_random." + key])
        assert torch.equal(state["frozen." + key], official["diffusionextractor_pretrained." + key])
    assert torch.equal(state["fc.weight"], official["fc.weight"])
    det = load_binary_detector(path)
    assert torch.equal(det.frozen.group2[0].weight, official["diffusionextractor_pretrained.group2.0.weight"])


def test_version_1_binary_checkpoint_of_ours_still_loads(tmp_path, tiny_cfg):
    """Version 1 stored the binary detector under the official key names."""
    det = BinaryDetector(tiny_cfg()).eval()
    names = {"trainable.": "diffusionextractor_random.", "frozen.": "diffusionextractor_pretrained."}

    def v1_key(key):
        prefix = next((p for p in names if key.startswith(p)), "")
        return names[prefix] + key[len(prefix):] if prefix else key

    path = save_checkpoint(tmp_path / "v2.pt", "binary", det, tiny_cfg(), epoch=4)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 1
    payload["state_dict"] = {v1_key(k): v for k, v in payload["state_dict"].items()}
    assert any(k.startswith("diffusionextractor_pretrained.") for k in payload["state_dict"])
    torch.save(payload, tmp_path / "v1.pt")
    ckpt = load_checkpoint(tmp_path / "v1.pt")
    assert ckpt["version"] == 2 and ckpt["epoch"] == 4
    assert set(ckpt["state_dict"]) == set(det.state_dict())
    again = load_binary_detector(tmp_path / "v1.pt")
    x = torch.randn(1, 3, 3, 16, 16)
    torch.testing.assert_close(again(x), det(x))

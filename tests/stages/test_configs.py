"""The stage configs: they load, carry the paper's values, and the variants differ where they should."""

import runpy

import pytest

from sdaie.cli import main as cli_main
from sdaie.config import Config, load_config, to_dict

from .conftest import REPO

CONFIGS = REPO / "configs"
STAGE_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "schema")


@pytest.mark.parametrize("path", STAGE_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_loads_without_absolute_paths(path):
    cfg = load_config(path)
    assert not any(str(v).startswith("/") for v in _leaves(to_dict(cfg)))


def _leaves(d):
    for v in d.values() if isinstance(d, dict) else d:
        if isinstance(v, (dict, list)):
            yield from _leaves(v)
        else:
            yield v


def test_paper_values():
    paper = Config()
    bb = load_config(CONFIGS / "backbone.yaml")
    assert to_dict(bb.pretext) == to_dict(paper.pretext) and bb.data.patches == 16
    assert to_dict(bb.schema) == to_dict(paper.schema)
    oc = load_config(CONFIGS / "oc.yaml").oneclass
    assert (oc.components, oc.covariance_type, oc.init_params, oc.random_state, oc.quantile,
            oc.per_dir, oc.shuffle_seed, oc.max_patches) == (
                5, "full", "k-means++", 42, 0.02, 5000, 42, 20000)
    bc = load_config(CONFIGS / "bc_train.yaml").binary
    assert to_dict(bc) == to_dict(paper.binary)
    ev = load_config(CONFIGS / "bc_eval.yaml").eval
    assert (ev.max_patches, ev.threshold) == (40000, 0.5)
    assert load_config(CONFIGS / "bc_eval_robustness.yaml").eval.perturbations == [
        "jpeg=95", "blur=1.0", "resize=0.5"]


def test_face_predecessor_protocols():
    face = load_config(CONFIGS / "oc_face_predecessor.yaml").oneclass
    base = load_config(CONFIGS / "oc.yaml").oneclass
    assert (face.components, face.quantile) == (12, 0.05)
    assert {k: v for k, v in to_dict(face).items() if k not in ("components", "quantile")} == \
           {k: v for k, v in to_dict(base).items() if k not in ("components", "quantile")}
    resnet = load_config(CONFIGS / "resnet" / "backbone_face_predecessor.yaml")
    schema = load_config(CONFIGS / "schema" / "face_predecessor.yaml")
    assert to_dict(resnet.schema) == to_dict(schema.schema)
    assert resnet.model.backbone == "resnet" and resnet.pretext.rank_loss == "fidelity"


@pytest.mark.parametrize("command", ["backbone-train", "oc", "bc-train", "bc-eval", "demo"])
def test_cli_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main([command, "--help"])
    assert exc.value.code == 0 and "usage" in capsys.readouterr().out


@pytest.mark.parametrize("script", ["backbone_train.py", "oc_main.py", "bc_train.py", "bc_eval.py"])
def test_root_wrappers_are_importable_without_running(script):
    namespace = runpy.run_path(str(REPO / script), run_name="not_main")
    assert callable(namespace["stage_main"])


def test_the_small_cpu_config_fits_a_few_hundred_photos():
    """configs/oc_small_cpu.yaml: no small-set warning for 170 photos of the tiny backbone's
    36-d features, where the spec's 5 full components get one."""
    from sdaie.oneclass.gmm import small_training_set

    cfg = load_config(CONFIGS / "oc_small_cpu.yaml")
    dim = cfg.model.width * (cfg.model.width + 1) // 2  # the upper triangle of the covariance
    oc = cfg.oneclass
    assert dim == 36 and oc.quantile == Config().oneclass.quantile
    assert small_training_set(170, dim, oc.components, oc.covariance_type) is None
    assert small_training_set(170, dim, 5, "full") is not None


def test_paper_reproduction_configs_name_what_they_use():
    assert load_config(CONFIGS / "oc.yaml").oneclass.protocol == "spec"
    assert load_config(CONFIGS / "bc_eval.yaml").eval.protocol == "spec"
    oc = load_config(CONFIGS / "paper" / "oc.yaml").oneclass
    base = load_config(CONFIGS / "oc.yaml").oneclass
    assert oc.protocol == "official" and to_dict(oc) == {**to_dict(base), "protocol": "official"}
    for name in ("bc_eval.yaml", "bc_eval_robustness.yaml"):
        ev = load_config(CONFIGS / "paper" / name).eval
        assert (ev.protocol, ev.max_patches) == ("official", 40000)
    assert load_config(CONFIGS / "paper" / "bc_eval_robustness.yaml").eval.perturbations == [
        "jpeg=95", "blur=1.0", "resize=0.5"]
    bb = load_config(CONFIGS / "paper" / "backbone_authors.yaml")
    assert (bb.pretext.rank_loss, bb.data.require_all_tags) == ("official", True)
    assert Config().pretext.rank_loss == "exact" and not Config().data.require_all_tags

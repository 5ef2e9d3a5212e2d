"""Checkpoints, GMMs, caches and configs from strangers: refused with a clear error, never executed.

Two halves: an audit of the package source (every deserialisation call is a safe one), and
crafted malicious files fed to every entry point that reads them. The payloads, if ever
unpickled, would create a marker folder; the tests check that it never appears.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import REPO

SOURCES = sorted((REPO / "sdaie").rglob("*.py")) + sorted(REPO.glob("*.py"))

# Calls that deserialise or execute arbitrary objects/code.
FORBIDDEN_CALLS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("marshal", "loads"),
    ("marshal", "load"), ("shelve", "open"), ("yaml", "load"), ("yaml", "unsafe_load"),
    ("yaml", "full_load"), ("yaml", "load_all"), ("yaml", "unsafe_load_all"), ("os", "system"),
    ("os", "popen"), ("jit", "load"), ("hub", "load"), ("hub", "load_state_dict_from_url"),
}
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"joblib", "dill", "cloudpickle", "shelve", "marshal"}
# import_module from a fixed table of module names (sub-commands, lazy exports) only.
IMPORT_MODULE_ALLOWED = {"sdaie/cli.py", "sdaie/data/__init__.py", "sdaie/stages/common.py"}


def _dotted(node: ast.AST) -> tuple[str, ...]:
    """``torch.jit.load`` -> ("torch", "jit", "load"); () unless the chain starts at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ()  # e.g. model.eval() on a call's result: a method, not the builtin
    parts.append(node.id)
    return tuple(reversed(parts))


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _audit(path: Path, root: Path = REPO) -> list[str]:
    rel = path.relative_to(root).as_posix()
    problems = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [f"{where}: imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        if not isinstance(node, ast.Call) or not _dotted(node.func):
            continue
        name = _dotted(node.func)
        if name[-2:] in FORBIDDEN_CALLS or (len(name) == 1 and name[0] in FORBIDDEN_BUILTINS):
            problems.append(f"{where}: calls {'.'.join(name)}")
        if name[-2:] == ("torch", "load"):
            wo = _kw(node, "weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                problems.append(f"{where}: torch.load without weights_only=True")
        if name[-2:] in (("np", "load"), ("numpy", "load")):
            ap = _kw(node, "allow_pickle")
            if not (isinstance(ap, ast.Constant) and ap.value is False):
                problems.append(f"{where}: np.load without allow_pickle=False")
        if name[-1] == "import_module" and rel not in IMPORT_MODULE_ALLOWED:
            problems.append(f"{where}: import_module outside the fixed command tables")
        if name[0] == "subprocess":
            shell = _kw(node, "shell")
            if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
                problems.append(f"{where}: subprocess with shell")
    return problems


def test_package_source_uses_only_safe_deserialisation():
    assert len(SOURCES) > 30
    problems = [p for path in SOURCES for p in _audit(path)]
    assert not problems, "\n".join(problems)


def test_the_audit_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch, numpy as np, yaml, pickle, subprocess, importlib\n"
                   "torch.load('x')\ntorch.load('x', weights_only=False)\nnp.load('x.npy')\n"
                   "np.load('x.npy', allow_pickle=True)\nyaml.load(open('c'))\npickle.loads(b'')\n"
                   "eval('1')\nsubprocess.run('ls', shell=True)\nimport joblib\n"
                   "importlib.import_module(name)\ntorch.jit.load('m.pt')\n"
                   "torch.load('x', weights_only=True)\nnp.load('x.npy', allow_pickle=False)\n")
    problems = "\n".join(_audit(bad, tmp_path))
    for needle in ("calls yaml.load", "calls pickle.loads", "calls eval", "subprocess with shell",
                   "imports joblib", "import_module outside", "calls torch.jit.load"):
        assert needle in problems, needle
    assert problems.count("torch.load without") == 2 and problems.count("np.load without") == 2


# ---------------------------------------------------------------------------------------------
# Crafted malicious files
# ---------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: the stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def marker(tmp_path) -> Path:
    m = tmp_path / "CODE_WAS_EXECUTED"
    yield m
    assert not m.exists(), "a malicious payload was executed"


def _evil_checkpoint(path: Path, marker: Path, zip_format: bool = True,
                     kind: str = "binary") -> Path:
    from sdaie.config import Config, to_dict

    payload = {"format": "sdaie", "version": 1, "kind": kind, "state_dict": {},
               "config": to_dict(Config()), "schema": None, "optimizer": _Payload(marker)}
    torch.save(payload, path, _use_new_zipfile_serialization=zip_format)
    return path


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_malicious_checkpoint_is_refused_by_every_loader(tmp_path, marker, zip_format):
    from sdaie.models import (
        CheckpointError,
        binary_from_pretext,
        load_binary_detector,
        load_checkpoint,
        load_extractor,
        load_pretext_model,
    )

    evil = _evil_checkpoint(tmp_path / "evil.pt", marker, zip_format)
    with pytest.raises(torch.serialization.pickle.UnpicklingError):  # the premise: it is unsafe
        torch.load(evil, weights_only=True)
    for loader in (load_checkpoint, load_extractor, load_binary_detector, load_pretext_model,
                   binary_from_pretext):
        with pytest.raises(CheckpointError, match=r"evil\.pt: cannot be read with "
                                                  r"torch\.load\(weights_only=True\)"):
            loader(evil)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_checkpoint_kind_peek_never_runs_a_payload(tmp_path, marker, zip_format):
    """The stages' torch-free look at a checkpoint's kind reads the pickle with inert classes."""
    from sdaie.checkpoint_kind import peek_kind

    evil = _evil_checkpoint(tmp_path / "evil.pt", marker, zip_format)
    assert peek_kind(evil) == ("binary" if zip_format else None)


def test_malicious_checkpoint_in_the_command_line_tools(tmp_path, marker, capsys):
    from sdaie.detect import main as detect
    from sdaie.models.convert import main as convert

    evil = _evil_checkpoint(tmp_path / "evil.pt", marker)
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(img)
    assert detect([str(img), "--checkpoint", str(evil), "--no-progress"]) == 2
    assert "weights_only" in capsys.readouterr().err
    assert convert([str(evil), str(tmp_path / "out.pt")]) == 2
    assert "weights_only" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()


def test_malicious_checkpoint_in_the_stages(zoo, tmp_path, marker):
    from sdaie.stages import bc_eval, bc_train, oc_main

    evil = _evil_checkpoint(tmp_path / "evil.pt", marker)
    evil_pretext = _evil_checkpoint(tmp_path / "evil_pretext.pt", marker, kind="pretext")
    root = tmp_path / "data"  # a valid test tree, so the checkpoint is what stops each stage
    for label in ("0_real", "1_fake"):
        (root / "set" / label).mkdir(parents=True)
        os.symlink(zoo[0].path, root / "set" / label / zoo[0].path.name)
    data, real = str(root), str(root / "set" / "0_real")
    runs = [(bc_eval.main, [f"eval.checkpoint={evil}", f"eval.test_root={data}"]),
            (oc_main.main, [f"oneclass.checkpoint={evil_pretext}", f"oneclass.train_dirs=[{real}]",
                            f"oneclass.test_root={data}"]),
            (bc_train.main, [f"binary.pretext_checkpoint={evil_pretext}",
                             f"binary.train_root={data}/set"])]
    for main, args in runs:
        with pytest.raises(SystemExit, match="checkpoint error: .*weights_only"):
            main(["run.device=cpu", f"run.out_dir={tmp_path / 'run'}", *args])


def test_malicious_resnet_weights_are_refused(tmp_path, marker):
    from sdaie.config import ModelConfig
    from sdaie.models import build_extractor

    evil = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": _Payload(marker)}, evil)
    with pytest.raises(torch.serialization.pickle.UnpicklingError, match="Weights only load failed"):
        build_extractor(ModelConfig(backbone="resnet", resnet_arch="resnet18",
                                    resnet_weights=str(evil)))


def _evil_npz(path: Path, marker: Path, key: str, **arrays) -> Path:
    """An .npz whose array ``key`` is a pickled object (np.savez pickles object arrays)."""
    np.savez(path, **arrays, **{key: np.array([_Payload(marker)], dtype=object)})
    return path


def test_malicious_gmm_is_refused(tmp_path, marker, tiny_checkpoints, capsys):
    from sdaie.detect import main as detect
    from sdaie.oneclass.gmm import load_gmm

    evil = _evil_npz(tmp_path / "gmm.npz", marker, "header", weights=np.ones(1))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_gmm(evil)
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(img)
    assert detect([str(img), "--checkpoint", str(tiny_checkpoints["pretext"]), "--gmm", str(evil),
                   "--no-progress"]) == 2
    assert "cannot read the GMM" in capsys.readouterr().err


def test_poisoned_feature_cache_is_ignored_not_unpickled(tmp_path, marker):
    from sdaie.data.transforms import CLEAN
    from sdaie.scoring import FeatureCache

    cache = FeatureCache(tmp_path / "cache", "0123456789abcdef")
    path = cache.path("set", CLEAN, 16)
    path.parent.mkdir(parents=True)
    _evil_npz(path, marker, "requested", features=np.zeros((1, 2)))
    assert cache.load("set", CLEAN, 16, [Path("a.png")]) is None


def test_config_tags_are_never_constructed(tmp_path, marker):
    from sdaie.config import ConfigError, load_config
    from sdaie.stages import oc_main

    tag = f'!!python/object/apply:os.mkdir ["{marker}"]'
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"run:\n  out_dir: {tag}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, [f"run.out_dir={tag}"])
    with pytest.raises(SystemExit, match="config error"):
        oc_main.main(["--config", str(cfg)])

"""Every newcomer mistake the stages can meet: one line on stderr, status 2, no traceback, and,
where the mistake is found before torch is imported, within 2 s in a fresh process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdaie.stages.common import stage_main

from .conftest import REPO, TINY


@pytest.fixture(scope="module")
def binary_ckpt(tmp_path_factory) -> Path:
    import torch

    from sdaie.config import load_config
    from sdaie.models import BinaryDetector, save_checkpoint

    cfg = load_config(TINY / "bc_train.yaml")
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("bin") / "bc.pt", "binary",
                           BinaryDetector(cfg.model), cfg)


@pytest.fixture(scope="module")
def odd_folders(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("odd")
    (base / "texts").mkdir()
    (base / "texts" / "notes.txt").write_text("not an image")
    (base / "not_an_index").mkdir()
    empty_index = base / "empty_index"
    empty_index.mkdir()
    (empty_index / "summary.json").write_text(json.dumps({"files": 3, "indexed": 0}))
    return {"texts": base / "texts", "not_an_index": base / "not_an_index",
            "empty_index": empty_index, "missing": base / "missing"}


def _cases(w, pretext, binary, odd):
    oc = ["--config", str(TINY / "oc.yaml"), f"oneclass.checkpoint={pretext}",
          f"oneclass.train_dirs=[{w['oc_train']}]", f"oneclass.test_root={w['tests']}"]
    bc = ["--config", str(TINY / "bc_eval.yaml"), f"eval.checkpoint={binary}",
          f"eval.test_root={w['tests']}"]
    bt = ["--config", str(TINY / "bc_train.yaml"), f"binary.pretext_checkpoint={pretext}",
          f"binary.train_root={w['bc_train']}"]
    bb = ["--config", str(TINY / "backbone.yaml")]
    return {
        "index not set": ("backbone_train", bb, "data.index is not set"),
        "index missing": ("backbone_train", bb + [f"data.index={odd['missing']}"],
                          "no such folder"),
        "not an index": ("backbone_train", bb + [f"data.index={odd['not_an_index']}"],
                         "not an index folder"),
        "empty index": ("backbone_train", bb + [f"data.index={odd['empty_index']}"],
                        "holds 0 usable photo"),
        "resume file missing": ("backbone_train",
                                bb + [f"data.index={w['index']}", "--resume-from", "/nope.pt"],
                                "resume checkpoint /nope.pt: no such file"),
        "test_root missing": ("oc_main", oc + [f"oneclass.test_root={odd['missing']}"],
                              "oneclass.test_root=.*: no such folder"),
        "test_root without sets": ("oc_main", oc + [f"oneclass.test_root={odd['texts']}"],
                                   "no test set found"),
        "train_dirs missing": ("oc_main", oc + [f"oneclass.train_dirs=[{odd['missing']}]"],
                               r"oneclass.train_dirs\[0\]=.*: no such folder"),
        "train_dirs empty": ("oc_main", oc + ["oneclass.train_dirs=[]"],
                             "oneclass.train_dirs is not set"),
        "folder without images": ("oc_main", oc + [f"oneclass.train_dirs=[{odd['texts']}]"],
                                  r"no image files in this folder \(ignored: 1 .txt\)"),
        "wrong kind (oc)": ("oc_main", oc + [f"oneclass.checkpoint={binary}"],
                            "is a binary checkpoint, but this needs a pretext one"),
        "wrong kind (bc_eval)": ("bc_eval", bc + [f"eval.checkpoint={pretext}"],
                                 "is a pretext checkpoint, but this needs a binary one"),
        "wrong kind (bc_train)": ("bc_train", bt + [f"binary.pretext_checkpoint={binary}"],
                                  "is a binary checkpoint, but this needs a pretext one"),
        "checkpoint missing": ("bc_eval", bc + [f"eval.checkpoint={odd['missing']}.pt"],
                               "eval.checkpoint=.*: no such file"),
        "train_root unlabelled": ("bc_train", bt + [f"binary.train_root={w['oc_train']}"],
                                  "no images under a 0_real/1_fake"),
        "unknown key": ("oc_main", oc + ["oneclass.train_dir=[x]"],
                        "unknown config key 'oneclass.train_dir': did you mean "
                        "'oneclass.train_dirs'"),
        "key of another stage": ("oc_main", oc + ["oneclass.steps=3"],
                                 "did you mean 'pretext.steps'"),
        "out of range": ("bc_eval", bc + ["eval.threshold=2"],
                         r"eval.threshold=2.0 is out of range: use a number in \[0, 1\]"),
        "bad perturbation": ("bc_eval", bc + ["eval.perturbations=[jpeg=200]"],
                             "JPEG quality must be an integer"),
        "config file missing": ("oc_main", ["--config", "/no/such.yaml"],
                                "--config /no/such.yaml: no such file"),
        "localisation root without images/": ("oc_main", oc + [f"localisation.root={odd['texts']}"],
                                              r"localisation.root=.*/images: no such folder"),
        "localisation context": ("bc_eval", bc + [f"localisation.root={w['tests'].parent}",
                                                  "localisation.contexts=[everything]"],
                                 r"localisation.contexts=\['everything'\] is out of range: use a "
                                 "list of window, alone, image"),
    }


CASES = list(_cases({k: Path() for k in ("oc_train", "tests", "bc_train", "index")}, "", "",
                    {k: Path() for k in ("missing", "texts", "not_an_index", "empty_index")}))


@pytest.mark.parametrize("case", CASES)
def test_each_mistake_is_one_line_and_status_2(case, tiny_world, pretext_ckpt, binary_ckpt,
                                               odd_folders, capsys, tmp_path):
    stage, argv, message = _cases(tiny_world, pretext_ckpt, binary_ckpt, odd_folders)[case]
    with pytest.raises(SystemExit) as info:
        stage_main(stage, [*argv, f"run.out_dir={tmp_path / 'run'}"], prog=stage)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"{stage}: config error: ") and re.search(message, err), err
    assert not (tmp_path / "run").exists()  # refused before anything was written


FAST = ["index missing", "folder without images", "wrong kind (oc)", "unknown key",
        "out of range", "test_root missing"]


def _run(argv: list[str], cwd: Path, importtime: bool = False) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), *argv]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    return proc, time.perf_counter() - start


@pytest.mark.parametrize("case", FAST)
def test_mistakes_are_found_before_torch_and_within_2_s(case, tiny_world, pretext_ckpt,
                                                        binary_ckpt, odd_folders, tmp_path):
    stage, argv, message = _cases(tiny_world, pretext_ckpt, binary_ckpt, odd_folders)[case]
    script = [str(REPO / f"{stage}.py"), *argv, f"run.out_dir={tmp_path / 'run'}"]
    proc, _ = _run(script, tmp_path, importtime=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "torch" not in imported and "sdaie.stages.common" in imported
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    # wall time of the plain command, best of two (the machine is shared)
    seconds = min(_run(script, tmp_path)[1] for _ in range(2))
    assert seconds < 2.0, f"{case}: {seconds:.2f} s"


@pytest.mark.parametrize("command", ["oc", "bc-eval", "bc-train", "backbone-train"])
def test_sdaie_stage_commands_use_their_own_name(command, capsys):
    from sdaie.cli import main

    with pytest.raises(SystemExit):
        main([command, "--config", "/no/such.yaml"])
    assert capsys.readouterr().err.startswith(f"sdaie {command}: config error:")

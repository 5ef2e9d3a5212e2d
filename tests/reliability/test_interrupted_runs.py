"""Runs that die: SIGKILL or SIGTERM mid-training, resume to the same weights; foreign
checkpoints refused.

The interrupted run is a real ``backbone_train`` process (CPU, the tiny config on a synthetic
camera world); the uninterrupted reference and the resumed run execute in this process. All
use one thread, so the three agree bit for bit.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from .conftest import PYTHON, REPO, subprocess_env
from .conftest import TINY_BACKBONE as TINY

STEPS, EVERY = 9, 3


def _args(index_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", str(TINY), f"data.index={index_dir}", f"run.out_dir={out}",
            f"pretext.steps={STEPS}", f"pretext.ckpt_every={EVERY}", "pretext.log_every=1",
            "pretext.batch_size=4", "data.workers=0", *extra]


def _logged_steps(out: Path) -> list[int]:
    path = out / "train_log.csv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh) if r.get("step")]


def _wait_for(predicate, timeout: float, proc: subprocess.Popen, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before {what}: "
                                 f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _state(path: Path) -> dict[str, torch.Tensor]:
    from sdaie.models import load_checkpoint

    ckpt = load_checkpoint(path)
    flat = {f"model.{k}": v for k, v in ckpt["state_dict"].items()}
    for pid, st in ckpt["optimizer"]["state"].items():
        flat.update({f"adam.{pid}.{k}": torch.as_tensor(v) for k, v in st.items()})
    return flat


@pytest.fixture(scope="module")
def uninterrupted(index_dir, tmp_path_factory) -> Path:
    from sdaie.stages import backbone_train

    full = tmp_path_factory.mktemp("full")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the child processes (a module fixture runs before one_torch_thread)
    try:
        assert backbone_train.main(_args(index_dir, full)) == 0
    finally:
        torch.set_num_threads(threads)
    return full


def _same_final_weights(a: Path, b: Path) -> bool:
    x, y = _state(a / "checkpoints" / "last.pt"), _state(b / "checkpoints" / "last.pt")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _slow_run(index_dir: Path, part: Path, tmp_path: Path) -> subprocess.Popen:
    """The tiny run in a child process, paused 0.3 s after each step; returns once it has saved
    its first checkpoint and logged a step after it."""
    proc = subprocess.Popen([PYTHON, str(Path(__file__).with_name("_slow_train.py")), "0.3",
                             *_args(index_dir, part)], cwd=tmp_path, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = part / "checkpoints" / f"step_{EVERY:08d}.pt"
    _wait_for(first.exists, 180, proc, "the first checkpoint")
    _wait_for(lambda: max(_logged_steps(part), default=0) > EVERY, 30, proc, "a step after it")
    return proc


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_weights(index_dir, uninterrupted, tmp_path):
    from sdaie.models import load_checkpoint
    from sdaie.stages import backbone_train

    part = tmp_path / "part"
    proc = _slow_run(index_dir, part, tmp_path)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stderr.close()

    done = max(_logged_steps(part))
    saved = sorted(int(p.stem.split("_")[1]) for p in (part / "checkpoints").glob("step_*.pt"))
    assert done < STEPS and saved and saved[-1] <= done
    assert done - saved[-1] <= EVERY  # at most one checkpoint interval of work is lost
    for s in saved:  # every checkpoint on disk is complete (atomic writes)
        assert load_checkpoint(part / "checkpoints" / f"step_{s:08d}.pt")["step"] == s

    assert backbone_train.main(_args(index_dir, part, "--resume")) == 0
    assert _same_final_weights(uninterrupted, part)
    assert load_checkpoint(part / "checkpoints" / "last.pt")["step"] == STEPS
    assert _logged_steps(part) == list(range(1, STEPS + 1))  # the log has each step once
    log = (part / "backbone_train.log").read_text()
    assert f"resumed from {part / 'checkpoints' / f'step_{saved[-1]:08d}.pt'} at step {saved[-1]}" in log


@pytest.mark.slow
def test_sigterm_checkpoints_at_the_next_step_then_resume_gives_the_uninterrupted_weights(
        index_dir, uninterrupted, tmp_path):
    """What SLURM and Kubernetes do to preempt: SIGTERM, a grace period, then SIGKILL."""
    from sdaie.models import load_checkpoint
    from sdaie.stages import backbone_train

    part = tmp_path / "part"
    proc = _slow_run(index_dir, part, tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143  # as a process ended by SIGTERM reports it
    stderr = proc.stderr.read()
    proc.stderr.close()
    stopped = load_checkpoint(part / "checkpoints" / "last.pt")["step"]
    assert EVERY < stopped < STEPS and max(_logged_steps(part)) == stopped  # no step lost
    assert (part / "checkpoints" / f"step_{stopped:08d}.pt").is_file()  # its own checkpoint
    assert f"stopped by SIGTERM after step {stopped} of {STEPS}" in stderr.splitlines()[-1]
    assert "Traceback" not in stderr and not (part / "summary.json").exists()

    assert backbone_train.main(_args(index_dir, part, "--resume")) == 0
    assert _same_final_weights(uninterrupted, part)
    assert _logged_steps(part) == list(range(1, STEPS + 1))


@pytest.fixture(scope="module")
def finished_run(index_dir, tmp_path_factory) -> Path:
    from sdaie.stages import backbone_train

    out = tmp_path_factory.mktemp("run")
    assert backbone_train.main(_args(index_dir, out, "pretext.steps=3")) == 0
    return out


@pytest.mark.parametrize("change, message", [
    (["model.width=4"], r"different model architecture:\s+model\.width: checkpoint 8, requested 4"),
    (["model.hardtanh=3.0"], r"model\.hardtanh: checkpoint 5\.0, requested 3\.0"),
])
def test_resume_with_another_architecture_is_refused(change, message, index_dir, finished_run):
    from sdaie.stages import backbone_train

    with pytest.raises(SystemExit, match=r"checkpoint error: [\s\S]*" + message):
        backbone_train.main(_args(index_dir, finished_run, "pretext.steps=6", "--resume", *change))


def test_resume_with_another_schema_is_refused(index_dir, finished_run, tmp_path):
    """Same tensor shapes, other meanings (two rank heads swap their tags), with an index
    rebuilt for the new schema: the checkpoint's stored schema must stop the resume."""
    import yaml

    from sdaie.config import load_config, to_dict
    from sdaie.exif.index import main as index_main
    from sdaie.stages import backbone_train

    heads = to_dict(load_config(TINY).schema)["heads"]
    i, j = (next(k for k, h in enumerate(heads) if h["tag"] == t) for t in ("FNumber", "FocalLength"))
    assert heads[i]["kind"] == heads[j]["kind"] == "rank"
    heads[i]["tag"], heads[j]["tag"] = heads[j]["tag"], heads[i]["tag"]  # swapped meanings
    cfg = tmp_path / "other_schema.yaml"
    cfg.write_text(yaml.safe_dump({"_base_": str(TINY), "schema": {"heads": heads}}))
    root = json_root(index_dir)
    assert index_main([str(root), "--out", str(tmp_path / "index2"), "--config", str(cfg),
                       "--workers", "1", "--no-progress"]) == 0
    args = _args(tmp_path / "index2", finished_run, "pretext.steps=6", "--resume")
    args[1] = str(cfg)
    with pytest.raises(SystemExit, match=r"checkpoint error: .*different EXIF schema:\s+head \d+: checkpoint "
                                              r"\{'tag': 'F"):
        backbone_train.main(args)


def json_root(index_dir: Path) -> Path:
    import json

    return Path(json.loads((index_dir / "summary.json").read_text())["root"])


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------


def test_model_state_files_are_only_written_through_sdaie_atomic():
    """torch.save / np.save* of a file by name happen in sdaie/atomic.py alone (temp + rename)."""
    import ast

    problems = []
    for path in sorted((REPO / "sdaie").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel == "sdaie/atomic.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)):
                continue
            name = (node.func.value.id, node.func.attr)
            in_memory = bool(node.args) and isinstance(node.args[0], ast.Name) and node.args[0].id == "buf"
            if name in {("torch", "save"), ("np", "save"), ("np", "savez"),
                        ("np", "savez_compressed")} and not in_memory:
                problems.append(f"{rel}:{node.lineno}: {'.'.join(name)}")
    assert not problems, problems


def test_a_crash_while_writing_keeps_the_previous_file(tmp_path, monkeypatch):
    import numpy as np

    from sdaie.data.transforms import CLEAN
    from sdaie.models import BinaryDetector, load_checkpoint, save_checkpoint
    from sdaie.oneclass.gmm import fit_one_class, load_gmm, save_gmm
    from sdaie.scoring import FeatureCache, FeatureSet

    from .conftest import tiny_model_cfg

    cfg = tiny_model_cfg()
    model = BinaryDetector(cfg)
    ckpt = save_checkpoint(tmp_path / "c.pt", "binary", model, cfg)
    gmm_model = fit_one_class(np.random.default_rng(0).normal(size=(20, 3)), 1)
    gmm = save_gmm(tmp_path / "g.npz", gmm_model)
    cache = FeatureCache(tmp_path / "cache", "h")
    fs = FeatureSet(np.ones((1, 3), np.float32), np.zeros(1, np.int64), ["a"], np.ones(1, np.int64))
    feats = cache.save("s", CLEAN, 4, [Path("a")], fs)
    before = {p: p.read_bytes() for p in (ckpt, gmm, feats)}

    def crash(target, *args, **kwargs):  # half a file on disk, then the process is interrupted
        fh = args[0] if not hasattr(target, "write") else target
        fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    monkeypatch.setattr(np, "savez", crash)
    for write in (lambda: save_checkpoint(ckpt, "binary", model, cfg),
                  lambda: save_gmm(gmm, gmm_model),
                  lambda: cache.save("s", CLEAN, 4, [Path("a")], fs)):
        with pytest.raises(KeyboardInterrupt):
            write()
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in before} == before
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["c.pt", "g.npz", "s__clean__cap4.npz"]
    load_checkpoint(ckpt), load_gmm(gmm)  # and they still load


@pytest.mark.parametrize("change, message", [
    (["pretext.batch_size=3"], r"global batch: checkpoint 4, now 3"),
    (["run.seed=5"], r"run\.seed: checkpoint 0, now 5"),
])
def test_resume_on_another_data_stream_is_refused(change, message, index_dir, finished_run):
    from sdaie.stages import backbone_train

    with pytest.raises(SystemExit, match=r"checkpoint error: .*another data stream.*" + message):
        backbone_train.main(_args(index_dir, finished_run, "pretext.steps=6", "--resume", *change))


@pytest.fixture(scope="module")
def bc_world(tmp_path_factory) -> Path:
    from sdaie.synth import make_world

    base = tmp_path_factory.mktemp("bc_world")
    make_world(base, photos=4, size=96, gen_images=2, bc_train=8, bc_val=2)
    return base / "bc_train"


def _bc_args(root: Path, pretext: Path, out: Path, *extra: str) -> list[str]:
    return ["run.device=cpu", f"run.out_dir={out}", "data.workers=1", "data.patches=2",
            f"binary.pretext_checkpoint={pretext}", f"binary.train_root={root}",
            "binary.epochs=2", "binary.batch_size=4", "binary.log_every=1", *extra]


def test_bc_train_stopped_within_an_epoch_resumes_at_its_next_batch(bc_world, tiny_checkpoints,
                                                                   tmp_path):
    """SIGTERM at step 6 of 2 x 4: a checkpoint within the second epoch; the resumed run (one
    persistent loader worker, batches from the sixth on) ends with the uninterrupted weights."""
    import os

    from torch.optim.optimizer import register_optimizer_step_post_hook

    from sdaie.models import load_checkpoint
    from sdaie.stages import bc_train

    full, part = tmp_path / "full", tmp_path / "part"
    assert bc_train.main(_bc_args(bc_world, tiny_checkpoints["pretext"], full)) == 0
    steps = []

    def sigterm_at_six(optimizer, args, kwargs):
        steps.append(1)
        if len(steps) == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    handle = register_optimizer_step_post_hook(sigterm_at_six)
    try:
        assert bc_train.main(_bc_args(bc_world, tiny_checkpoints["pretext"], part)) == 143
    finally:
        handle.remove()
    stop = part / "checkpoints" / "epoch_001_step_00000006.pt"
    assert load_checkpoint(stop)["global_step"] == 6 and load_checkpoint(stop)["epoch"] == 1
    assert bc_train.main(_bc_args(bc_world, tiny_checkpoints["pretext"], part, "--resume")) == 0
    a, b = _state(full / "checkpoints" / "last.pt"), _state(part / "checkpoints" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert f"resumed from {stop} at step 6" in (part / "bc_train.log").read_text()

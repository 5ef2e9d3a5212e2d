"""Resumable training state: RNG states, checkpoint files, the ``last.pt`` link, resume checks."""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdaie.models.checkpoint import (
    CheckpointError,
    check_architecture,
    check_schema,
    checkpoint_heads,
    checkpoint_model_cfg,
    load_state_strict,
)

# RNG state in a form torch.load(weights_only=True) accepts (tensors, ints, lists, tuples).


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and all CUDA generators."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def link_latest(target: Path, link: Path) -> None:
    """Point ``link`` (e.g. ``last.pt``) at ``target`` atomically: hard link, else copy."""
    fd, tmp = tempfile.mkstemp(prefix=f".{link.name}.", dir=link.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(target, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, link)


def checkpoint_order(path: Path, prefix: str) -> tuple[int, int, int] | None:
    """Sort key of ``<prefix>_<n>.pt`` and of a stop checkpoint ``<prefix>_<n>_step_<s>.pt``
    (taken within a round: after ``<prefix>_<n>.pt``, before ``<prefix>_<n+1>.pt``); None for
    other names."""
    match = re.fullmatch(rf"{re.escape(prefix)}_(\d+)(?:_step_(\d+))?\.pt", path.name)
    if match is None:
        return None
    within = match.group(2)
    return int(match.group(1)), within is not None, int(within or 0)


def newest_checkpoint(ckpt_dir: Path, prefix: str) -> Path | None:
    """The newest checkpoint of the run in ``ckpt_dir`` by :func:`checkpoint_order`, if any."""
    found = [(key, p) for p in ckpt_dir.glob(f"{prefix}_*.pt")
             if (key := checkpoint_order(p, prefix)) is not None]
    return max(found)[1] if found else None


def latest_checkpoint(ckpt_dir: Path, prefix: str) -> Path | None:
    """The checkpoint ``last.pt`` links (itself if it is a copy), else the newest by name.

    ``last.pt`` is what the run wrote last: after ``--resume-from`` an older checkpoint, the
    higher-numbered ones of the abandoned continuation are still there but are not the run's.
    """
    last = ckpt_dir / "last.pt"
    if not last.is_file():
        return newest_checkpoint(ckpt_dir, prefix)
    for p in sorted(ckpt_dir.glob(f"{prefix}_*.pt")):
        if checkpoint_order(p, prefix) is not None and os.path.samefile(p, last):
            return p
    return last


def resolve_resume(choice: str | None, ckpt_dir: Path, prefix: str) -> Path | None:
    """``auto`` = the run's latest checkpoint (None if none); a path must exist; None = fresh."""
    if not choice:
        return None
    if choice == "auto":
        return latest_checkpoint(ckpt_dir, prefix)
    path = Path(choice)
    if not path.is_file():
        raise SystemExit(f"--resume: no checkpoint at {path}")
    return path


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (full disk, quota, permissions); the previous one stands."""


def _errno(exc: BaseException) -> int | None:
    """The errno of ``exc`` or of an OSError it was raised from (torch wraps some write errors)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


def write_error(exc: BaseException, path: Path, last: Path) -> CheckpointWriteError:
    """One clear line for a failed checkpoint write, naming what is still intact."""
    code = _errno(exc)
    what = os.strerror(code) if code is not None else str(exc)
    hint = ("free some space (or move run.out_dir) and continue with --resume"
            if code in (errno.ENOSPC, errno.EDQUOT) else "fix the cause and continue with --resume")
    kept = (f"the previous checkpoint {last.name} -> {os.path.basename(_link_target(last))} is intact"
            if last.exists() else "no earlier checkpoint exists")
    return CheckpointWriteError(f"could not write checkpoint {path}: {what}; nothing was replaced, "
                                f"{kept}; {hint}")


def _link_target(last: Path) -> str:
    """The numbered checkpoint ``last.pt`` is a hard link of (``last.pt`` itself if none is found)."""
    for p in sorted(last.parent.glob("*.pt")):
        if p != last and p.exists() and os.path.samefile(p, last):
            return str(p)
    return str(last)


def check_resumable(ckpt: dict, kind: str, progress_key: str, model_cfg: Any,
                    heads: Sequence[Any] | None, source: str) -> None:
    """Refuse, by name, a checkpoint this run cannot continue: wrong kind, another architecture
    (including non-weight fields such as ``hardtanh``), another EXIF schema, or no training state."""
    if ckpt.get("kind") != kind:
        raise CheckpointError(f"{source} is a {ckpt.get('kind')} checkpoint; this run continues "
                              f"{kind} training")
    missing = [k for k in ("optimizer", progress_key) if k not in ckpt]
    if missing:
        raise CheckpointError(f"{source} has no {missing}: not a training checkpoint of this "
                              "project (weights alone cannot resume a run)")
    check_architecture(checkpoint_model_cfg(ckpt), model_cfg, source)
    stored = checkpoint_heads(ckpt)
    if heads is not None and stored is not None:
        check_schema(stored, heads, source)


def restore_training(ckpt: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     source: str) -> None:
    """Weights (strictly), optimiser and RNG state of a checkpoint already checked as resumable."""
    load_state_strict(model, ckpt["state_dict"], source)
    optimizer.load_state_dict(ckpt["optimizer"])
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])


def check_same_stream(saved: dict | None, now: dict[str, int], source: str) -> None:
    """A resumed run continues the same pair stream only with the same training photos, seed and
    global batch (per-rank batch x ranks); anything else would silently train on other data."""
    if not saved:
        return
    diffs = [f"{what}: checkpoint {saved.get(key)}, now {now[key]}" for key, what in
             (("n", "training photos"), ("seed", "run.seed")) if saved.get(key) != now[key]]
    before = int(saved.get("batch_size", 0)) * int(saved.get("world_size", 1))
    after = now["batch_size"] * now["world_size"]
    if before != after:
        diffs.append(f"global batch: checkpoint {before}, now {after} (pretext.batch_size x ranks)")
    if diffs:
        raise CheckpointError(f"{source} continues another data stream ({'; '.join(diffs)}); resume "
                              "with the same index, run.seed and global batch, or start a new run")


def check_same_epochs(saved: dict | None, now: dict[str, int], source: str) -> None:
    """A run resumed within or after an epoch continues at the checkpoint's global step, which
    maps to the same place in the same epoch only if every figure of ``now`` (images, seed, batch
    size, ranks, steps per epoch) is unchanged; otherwise part of an epoch would be silently
    trained twice or skipped. Checkpoints written before these figures were stored have none:
    they are accepted, as nothing can be checked."""
    if not saved:
        return
    diffs = [f"{key}: checkpoint {saved.get(key)}, now {value}" for key, value in now.items()
             if saved.get(key) != value]
    if diffs:
        raise CheckpointError(f"{source} was written with other epochs ({'; '.join(diffs)}); resume "
                              "with the same training images, run.seed, batch size and ranks, or "
                              "start a new run")

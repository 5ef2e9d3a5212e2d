"""What the four stage scripts share: argument parsing, rank-0 logging, CSV logs, RNG state, summaries."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from sdaie.atomic import atomic_write_text
from sdaie.config import Config, ConfigError, load_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def stage_parser(prog: str, description: str, resume: bool = False) -> argparse.ArgumentParser:
    """``--config YAML``, ``key.sub=value`` overrides, and optionally ``--resume [CKPT]``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", default=None, help="YAML config (may use _base_ inheritance)")
    if resume:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--resume", action="store_const", const="auto", default=None,
                           help="continue from the newest checkpoint in run.out_dir "
                                "(same as run.resume=auto; starts fresh if there is none)")
        group.add_argument("--resume-from", dest="resume", metavar="CKPT",
                           help="continue from this checkpoint (same as run.resume=CKPT)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, e.g. run.out_dir=runs/x pretext.steps=100")
    return parser


def parse_stage_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Options and ``key=value`` overrides in any order."""
    return parser.parse_intermixed_args(argv)


def load_stage_config(args: argparse.Namespace) -> Config:
    """The config from ``--config`` + overrides; exits with the message on a config error."""
    try:
        return load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as exc:
        raise SystemExit(f"config error: {exc}") from None


def setup_logging(out_dir: Path | None, is_main: bool, name: str) -> logging.Logger:
    """Rank 0 logs INFO to stderr and ``<out_dir>/<name>.log``; other ranks only warnings."""
    logger = logging.getLogger("sdaie")
    for h in list(logger.handlers):
        if getattr(h, "_sdaie_stage", False):
            logger.removeHandler(h)
            h.close()
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if is_main and out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(out_dir / f"{name}.log", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(logging.Formatter(LOG_FORMAT))
        h._sdaie_stage = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    return logging.getLogger(f"sdaie.{name}")


class CsvLog:
    """Append rows to a CSV; the header is fixed by the first row (or the existing file on resume).

    Rows whose step is at or beyond ``truncate_after`` are dropped when resuming, so a run resumed
    from step k does not keep the log lines its interrupted predecessor wrote after k.
    """

    def __init__(self, path: Path, truncate_after: int | None = None, key: str = "step"):
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                self.fields = list(reader.fieldnames or [])
                rows = [r for r in reader
                        if truncate_after is None or int(float(r[key])) <= truncate_after]
            self._rewrite(rows)

    def _rewrite(self, rows: list[dict]) -> None:
        with open(self.path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields or [], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            self._rewrite([])
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, lineterminator="\n",
                                    extrasaction="ignore")
            writer.writerow({k: _fmt(row.get(k, "")) for k in self.fields})


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"
    return value


def write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=str, allow_nan=True) + "\n")


def append_jsonl(path: Path, rows: Sequence[dict]) -> None:
    if rows:
        with open(path, "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")


# --------------------------------------------------------------------------------------------
# RNG state in a form torch.load(weights_only=True) accepts (tensors, ints, lists, tuples)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------------


def link_latest(target: Path, link: Path) -> None:
    """Point ``link`` (e.g. ``last.pt``) at ``target`` atomically: hard link, else copy."""
    import shutil
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{link.name}.", dir=link.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(target, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, link)


def newest_checkpoint(ckpt_dir: Path, prefix: str) -> Path | None:
    """The highest-numbered ``<prefix>_<n>.pt`` in ``ckpt_dir``, if any."""
    found = []
    for p in ckpt_dir.glob(f"{prefix}_*.pt"):
        try:
            found.append((int(p.stem.split("_")[-1]), p))
        except ValueError:
            continue
    return max(found)[1] if found else None


def resolve_resume(arg: str | None, cfg_resume: str, ckpt_dir: Path, prefix: str) -> Path | None:
    """``--resume`` beats ``run.resume``; ``auto`` = newest checkpoint in the run (None if none)."""
    choice = arg if arg is not None else (cfg_resume or None)
    if choice is None:
        return None
    if choice == "auto":
        return newest_checkpoint(ckpt_dir, prefix)
    path = Path(choice)
    if not path.is_file():
        raise SystemExit(f"--resume: no checkpoint at {path}")
    return path


def check_resumable(ckpt: dict, kind: str, progress_key: str, model_cfg: Any,
                    heads: Sequence[Any] | None, source: str) -> None:
    """Refuse, by name, a checkpoint this run cannot continue: wrong kind, another architecture
    (including non-weight fields such as ``hardtanh``), another EXIF schema, or no training state."""
    from sdaie.models.checkpoint import (CheckpointError, check_architecture, check_schema,
                                         checkpoint_heads, checkpoint_model_cfg)

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
    from sdaie.models.checkpoint import load_state_strict

    load_state_strict(model, ckpt["state_dict"], source)
    optimizer.load_state_dict(ckpt["optimizer"])
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])


class SkipReporter:
    """Unusable files met by any rank: logged and appended to ``skipped.jsonl`` once each, by rank 0.

    Every rank must call it at the same points (it gathers across ranks).
    """

    def __init__(self, path: Path, is_main: bool, log: logging.Logger) -> None:
        self.path, self.is_main, self.log = path, is_main, log
        self.seen: set[str] = set()

    def __call__(self, skipped: list[dict]) -> None:
        from sdaie.distributed import all_gather_objects

        gathered = [s for part in all_gather_objects(skipped) for s in part]
        if not self.is_main:
            return
        new = []
        for s in gathered:
            if s["path"] not in self.seen:
                self.seen.add(s["path"])
                new.append(s)
                self.log.warning("skipped unreadable file %s: %s", s["path"], s["reason"])
        append_jsonl(self.path, new)


def run_stage(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
              run: Callable[[Config, argparse.Namespace], Any]) -> int:
    """Parse, load the config, run; expected failures end with their message instead of a traceback.

    Under torchrun the run is wrapped in torchelastic's ``record``, so the failing rank's error lands
    in the launcher's summary.
    """
    from sdaie.data.imageio import ImageLoadError
    from sdaie.models.checkpoint import CheckpointError

    args = parse_stage_args(parser, argv)
    cfg = load_stage_config(args)
    if cfg.run.keep_freed_memory:
        from sdaie.allocator import keep_freed_memory

        keep_freed_memory()

    def _run() -> None:
        try:
            run(cfg, args)
        except ImageLoadError as exc:  # only with run.strict
            raise SystemExit(f"run.strict: stopped at unusable file {exc.path}: {exc}") from None
        except CheckpointError as exc:
            raise SystemExit(f"checkpoint error: {exc}") from None

    if "TORCHELASTIC_ERROR_FILE" in os.environ:  # set by torchrun for each worker
        from torch.distributed.elastic.multiprocessing.errors import record

        record(_run)()
    else:
        _run()
    return 0


def finish_evaluation(out: Path, kind: str, threshold: float, tables: tuple[Path, Path],
                      summary: dict[str, Any], log: logging.Logger) -> dict[str, Any]:
    """The end of oc_main / bc_eval: report.md with plots, summary.json, one log line."""
    from sdaie.reports import write_report

    csv_path, md_path = tables
    summary["tables"] = [str(csv_path), str(md_path)]
    summary["report"] = str(write_report(out, kind, threshold, md_path))
    write_json(out / "summary.json", summary)
    log.info("tables: %s, %s (%.1f s)", csv_path, md_path, summary["time_s"])
    return summary


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

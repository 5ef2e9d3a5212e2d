"""What the four stage scripts share at the command line: arguments, config, the checks made
before torch is imported, and how expected failures end.

The entry points (``backbone_train.py``..., ``sdaie backbone-train``..., each stage's ``main``) all
go through :func:`stage_main`, which needs only this light module: it parses the arguments,
loads the config and runs the stage's checks (:mod:`sdaie.stages.checks`), and only then imports
the stage module (and with it torch) to run it. A mistake (unknown key, value out of range,
missing path, folder without images, checkpoint of the wrong kind) is one line on stderr,
``PROG: config error: ...`` (or ``checkpoint error``), and exit status 2 (:class:`StageExit`, a
``SystemExit`` as argparse raises for its own usage errors), within a second or two.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdaie.config import Config, ConfigError, load_config
from sdaie.data.imageio import ImageLoadError
from sdaie.engine.runfolder import RunFolderError, decide_start
from sdaie.stages import checks

USAGE_ERROR = 2  # argparse's status for a command-line mistake; ours for config mistakes too


class StageExit(SystemExit):
    """Exit with ``status`` after the one-line message was printed; ``str()`` is the message."""

    def __init__(self, message: str, status: int = USAGE_ERROR) -> None:
        super().__init__(status)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Stage:
    """One stage script: its module (with ``execute(cfg, args)``), help text and checks."""

    module: str
    description: str
    example: str  # overrides shown in --help: keys this stage reads
    resume: bool
    check: Callable[[Config, argparse.Namespace], None]


STAGES: dict[str, Stage] = {
    "backbone_train": Stage(
        "sdaie.stages.backbone_train", "Pretext (EXIF) training of the SDAIE extractor.",
        "data.index=IDX run.out_dir=runs/bb pretext.steps=100", True,
        lambda cfg, args: checks.check_backbone_train(cfg, args.resume)),
    "oc_main": Stage(
        "sdaie.stages.oc_main", "One-class (GMM) detector on pretext features.",
        "oneclass.checkpoint=CKPT 'oneclass.train_dirs=[data/real]' oneclass.test_root=data/test",
        False, lambda cfg, args: checks.check_oc_main(cfg)),
    "bc_train": Stage(
        "sdaie.stages.bc_train", "Binary (real vs generated) detector training.",
        "binary.pretext_checkpoint=CKPT binary.train_root=data/progan binary.epochs=3", True,
        lambda cfg, args: checks.check_bc_train(cfg)),
    "bc_eval": Stage(
        "sdaie.stages.bc_eval", "Evaluate a binary detector on test sets (full-image patches).",
        "eval.checkpoint=CKPT eval.test_root=data/test run.out_dir=runs/bc_eval", False,
        lambda cfg, args: checks.check_bc_eval(cfg)),
}


def stage_parser(name: str, prog: str | None = None) -> argparse.ArgumentParser:
    """``--config YAML``, ``key.sub=value`` overrides, and for training stages ``--resume`` /
    ``--resume-from CKPT`` / ``--overwrite`` (the run controls)."""
    stage = STAGES[name]
    parser = argparse.ArgumentParser(prog=prog, description=stage.description)
    parser.add_argument("--config", default=None, help="YAML config (may use _base_ inheritance)")
    if stage.resume:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--resume", action="store_const", const="auto", default=None,
                           help="continue from the checkpoint run.out_dir's last.pt names "
                                "(same as run.resume=auto; starts fresh if there is none)")
        group.add_argument("--resume-from", dest="resume", metavar="CKPT",
                           help="continue from this checkpoint (same as run.resume=CKPT)")
        group.add_argument("--overwrite", action="store_true",
                           help="start afresh in a run.out_dir that holds a run: delete its "
                                "checkpoints and logs first (without it such a folder is refused)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help=f"config overrides, e.g. {stage.example}")
    return parser


def parse_stage_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Options and ``key=value`` overrides in any order."""
    return parser.parse_intermixed_args(argv)


def load_stage_config(args: argparse.Namespace) -> Config:
    """The config from ``--config`` + overrides (raises :class:`ConfigError`)."""
    if args.config and not os.path.isfile(args.config):
        raise ConfigError(f"--config {args.config}: no such file")
    return load_config(args.config, args.overrides)


def _fail(prog: str, message: str) -> StageExit:
    print(f"{prog}: {message}", file=sys.stderr)
    return StageExit(message)


def decides_start() -> bool:
    """Whether this process makes the run-folder pre-check: a plain process or torchrun's rank 0.
    Other ranks follow rank 0's decision in the engine; on other nodes a restart would not even
    recognise its own launch (the marker names rank 0's torchrun agent)."""
    return os.environ.get("RANK", "0") in ("", "0")


def stage_main(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse, load and check (no torch yet), then run the stage; see the module docstring."""
    parser = stage_parser(name, prog)
    args = parse_stage_args(parser, argv)
    try:
        cfg = load_stage_config(args)
        STAGES[name].check(cfg, args)
    except ConfigError as exc:
        raise _fail(parser.prog, f"config error: {exc}") from None
    if STAGES[name].resume and decides_start():
        try:  # the engine decides again on rank 0 before writing; this says it before torch loads
            decide_start(Path(cfg.run.out_dir), name, args.resume or cfg.run.resume or None,
                         args.overwrite)
        except RunFolderError as exc:
            raise _fail(parser.prog, str(exc)) from None
    module = importlib.import_module(STAGES[name].module)
    return run_stage(parser.prog, cfg, args, module.execute)


def run_stage(prog: str, cfg: Config, args: argparse.Namespace,
              run: Callable[[Config, argparse.Namespace], Any]) -> int:
    """Run; expected failures end with one line instead of a traceback.

    A run stopped by SIGTERM (its checkpoint written) prints one line and returns 143, as a
    process ended by that signal would; a checkpoint that could not be written (full disk) ends
    with status 1. Under torchrun the run is wrapped in torchelastic's ``record``, so the failing
    rank's error lands in the launcher's summary.
    """
    # reason: these modules need torch, which the checks above run without
    from sdaie.engine.checkpointing import CheckpointWriteError
    from sdaie.engine.preemption import EXIT_CODE as PREEMPTED_EXIT
    from sdaie.engine.preemption import Preempted
    from sdaie.models.checkpoint import CheckpointError

    def _run() -> int:
        try:
            run(cfg, args)
        except ConfigError as exc:
            raise _fail(prog, f"config error: {exc}") from None
        except CheckpointError as exc:
            raise _fail(prog, f"checkpoint error: {exc}") from None
        except RunFolderError as exc:  # rank 0's decision, when the folder changed meanwhile
            raise _fail(prog, str(exc)) from None
        except ImageLoadError as exc:  # only with run.strict: a data failure, status 1
            raise SystemExit(f"run.strict: stopped at unusable file {exc.path}: {exc}") from None
        except CheckpointWriteError as exc:  # e.g. a full disk, status 1
            raise SystemExit(str(exc)) from None
        except Preempted as exc:
            print(exc, file=sys.stderr, flush=True)
            return PREEMPTED_EXIT
        return 0

    if "TORCHELASTIC_ERROR_FILE" in os.environ:  # set by torchrun for each worker
        # reason: torchelastic is needed under torchrun only; a plain run does not load it
        from torch.distributed.elastic.multiprocessing.errors import record

        return record(_run)()
    return _run()

"""What the four stage scripts share at the command line: arguments, config, expected failures."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

from sdaie.config import Config, ConfigError, load_config
from sdaie.data.imageio import ImageLoadError
from sdaie.engine.checkpointing import CheckpointWriteError
from sdaie.engine.preemption import EXIT_CODE as PREEMPTED_EXIT, Preempted
from sdaie.engine.runfolder import RunFolderError
from sdaie.models.checkpoint import CheckpointError


def stage_parser(prog: str, description: str, resume: bool = False) -> argparse.ArgumentParser:
    """``--config YAML``, ``key.sub=value`` overrides, and optionally ``--resume`` /
    ``--resume-from CKPT`` / ``--overwrite`` (the run controls of a training stage)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", default=None, help="YAML config (may use _base_ inheritance)")
    if resume:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--resume", action="store_const", const="auto", default=None,
                           help="continue from the newest checkpoint in run.out_dir "
                                "(same as run.resume=auto; starts fresh if there is none)")
        group.add_argument("--resume-from", dest="resume", metavar="CKPT",
                           help="continue from this checkpoint (same as run.resume=CKPT)")
        group.add_argument("--overwrite", action="store_true",
                           help="start afresh in a run.out_dir that holds a run: delete its "
                                "checkpoints and logs first (without it such a folder is refused)")
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


def run_stage(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
              run: Callable[[Config, argparse.Namespace], Any]) -> int:
    """Parse, load the config, run; expected failures end with their message instead of a traceback.

    A run stopped by SIGTERM (its checkpoint written) prints one line and returns 143, as a
    process ended by that signal would. Under torchrun the run is wrapped in torchelastic's
    ``record``, so the failing rank's error lands in the launcher's summary.
    """
    args = parse_stage_args(parser, argv)
    cfg = load_stage_config(args)

    def _run() -> int:
        try:
            run(cfg, args)
        except ImageLoadError as exc:  # only with run.strict
            raise SystemExit(f"run.strict: stopped at unusable file {exc.path}: {exc}") from None
        except CheckpointError as exc:
            raise SystemExit(f"checkpoint error: {exc}") from None
        except (RunFolderError, CheckpointWriteError) as exc:
            raise SystemExit(str(exc)) from None
        except Preempted as exc:
            print(exc, file=sys.stderr, flush=True)
            return PREEMPTED_EXIT
        return 0

    if "TORCHELASTIC_ERROR_FILE" in os.environ:  # set by torchrun for each worker
        # torchelastic is needed under torchrun only; a plain run does not load it
        from torch.distributed.elastic.multiprocessing.errors import record

        return record(_run)()
    return _run()

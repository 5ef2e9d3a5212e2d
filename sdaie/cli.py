"""The ``sdaie`` command: one sub-command per module, each with ``get_args_parser()`` and ``main(argv)``.

Sub-command modules are imported only when chosen, so ``sdaie exif`` does not pay for torch. The
four stages start through :func:`sdaie.stages.common.stage_main`, which checks their config and
paths before torch is imported, under the prog name ``sdaie COMMAND``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Each module defines main(argv: list[str] | None) -> int.
STAGE_COMMANDS = {"backbone-train": "backbone_train", "oc": "oc_main", "bc-train": "bc_train",
                  "bc-eval": "bc_eval"}
COMMANDS: dict[str, tuple[str, str]] = {
    "exif": ("sdaie.exif.cli", "print the canonical EXIF tags of files (JSON lines)"),
    "index": ("sdaie.exif.index", "build the EXIF training index of a photo folder"),
    "import-authors": ("sdaie.exif.authors",
                       "index the authors' training data (exif_tags.json + pkl_256/)"),
    "synth": ("sdaie.synth.cli", "write the synthetic camera world (photos + generator images)"),
    "backbone-train": ("sdaie.stages.backbone_train", "pretext training (same as backbone_train.py)"),
    "oc": ("sdaie.stages.oc_main", "one-class GMM detector (same as oc_main.py)"),
    "bc-train": ("sdaie.stages.bc_train", "binary detector training (same as bc_train.py)"),
    "bc-eval": ("sdaie.stages.bc_eval", "binary detector evaluation (same as bc_eval.py)"),
    "demo": ("sdaie.stages.demo", "the whole method on the synthetic world, end to end"),
    "detect": ("sdaie.detect", "score your own images (binary or one-class)"),
    "convert": ("sdaie.models.convert", "convert an official checkpoint to this project's format"),
    "bench": ("sdaie.benchmarks.cli", "speed benchmark (patches/s, images/s)"),
    "gpu-check": ("sdaie.gpucheck.cli", "check a GPU node: correctness, speed, settings (--cpu: here)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdaie",
        description="SDAIE: self-supervised AI-generated image detection from camera metadata.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {n:<15} {h}" for n, (_, h) in COMMANDS.items())
        + "\n\nRun 'sdaie COMMAND --help' for the options of a command.",
    )
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0
    ns = _top_parser().parse_args(argv[:1])
    if ns.command in STAGE_COMMANDS:
        stages = importlib.import_module("sdaie.stages.common")
        return int(stages.stage_main(STAGE_COMMANDS[ns.command], argv[1:],
                                     prog=f"sdaie {ns.command}"))
    module = importlib.import_module(COMMANDS[ns.command][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())

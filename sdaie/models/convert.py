"""``sdaie convert OFFICIAL.pth OUT.pt``: an official SDAIE checkpoint in this project's format.

The weights are checked strictly against the model the config describes (paper configuration by
default); the output also records the config and EXIF schema, so later stages can refuse a
mismatch instead of silently mislabelling heads. The official optimizer state is not carried over
(it indexes the authors' parameter order); the official ``epoch`` is kept as ``official_epoch``.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Sequence

import torch

from sdaie.config import ConfigError, load_config
from sdaie.models.binary import BinaryDetector
from sdaie.models.checkpoint import (
    CheckpointError,
    from_official,
    load_state_strict,
    save_checkpoint,
)
from sdaie.models.heads import PretextModel


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdaie convert", description=__doc__.split("\n\n")[0].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="official checkpoint (.pth), with or without the 'module.' prefix")
    parser.add_argument("dst", help="output checkpoint in this project's format (.pt)")
    parser.add_argument("--kind", choices=("auto", "pretext", "binary"), default="auto",
                        help="checkpoint kind (default: detected from the key names)")
    parser.add_argument("--config", default=None,
                        help="YAML config whose model/schema sections describe the weights "
                             "(default: the paper configuration)")
    parser.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    return parser


def convert(src: str, dst: str, kind: str = "auto", config: str | None = None,
            overrides: Sequence[str] = ()) -> str:
    """Convert and return a one-line summary; raises CheckpointError / ConfigError."""
    cfg = load_config(config, overrides)
    try:
        raw = torch.load(src, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {src}") from None
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        # refused by weights_only (a pickle that would run code) or a corrupt file
        raise CheckpointError(f"{src}: cannot be read with torch.load(weights_only=True): {exc}") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{src}: expected a dict, found {type(raw).__name__}")
    if raw.get("format") == "sdaie":
        raise CheckpointError(f"{src} is already in this project's format")
    ckpt = from_official(raw, kind=kind, source=src)
    if ckpt["kind"] == "pretext":
        model = PretextModel(cfg.model, cfg.schema.heads)
    else:
        model = BinaryDetector(cfg.model)
    load_state_strict(model, ckpt["state_dict"], src)
    extra = {"official_epoch": ckpt["epoch"]} if "epoch" in ckpt else {}
    save_checkpoint(dst, ckpt["kind"], model, cfg, converted_from=str(src), **extra)
    n_params = sum(p.numel() for p in model.parameters())
    return f"{ckpt['kind']} checkpoint, {len(ckpt['state_dict'])} tensors, {n_params:,} parameters -> {dst}"


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        summary = convert(args.src, args.dst, args.kind, args.config, args.overrides)
    except (CheckpointError, ConfigError) as exc:
        print(f"sdaie convert: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

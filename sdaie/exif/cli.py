"""``sdaie exif PATH...``: the canonical EXIF tags of files, one JSON line each.

Each line is exactly ``{"path": ..., "tags": {canonical: value}}`` or, for a file that cannot be
read, ``{"path": ..., "error": "..."}``. A readable image without EXIF gives ``"tags": {}``.
Folders are walked recursively for image files (by extension); files named explicitly are read
whatever their extension. Dropped values are reported on stderr (``--quiet`` hides them), so
stdout stays pure JSON lines. Exit status: 0 when every argument exists, even if some files
fail; 2 if an argument does not exist (its error line is still printed, the rest still read);
with ``--strict``, the first error line ends the run (status 1, or 2 for a missing argument).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from sdaie.data.imageio import list_images
from sdaie.exif.reader import read_exif


def iter_files(paths: Sequence[str]) -> Iterator[tuple[str, bool]]:
    """``(path, exists)`` for every file to read: explicit files as given, folders walked."""
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            for f in list_images(p):
                yield str(f), True
        elif p.exists():
            yield arg, True
        else:
            yield arg, False


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdaie exif",
        description="Print the canonical EXIF tags of image files as JSON lines "
                    '({"path", "tags"} or {"path", "error"}). Folders are walked.')
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--quiet", action="store_true",
                        help="do not report dropped (invalid) values on stderr")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first file that cannot be read (exit status 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    status = 0
    out = sys.stdout
    for path, exists in iter_files(args.paths):
        if not exists:
            status = 2
            line = {"path": path, "error": "no such file or directory"}
        else:
            result = read_exif(path)
            if result.error:
                line = {"path": path, "error": result.error}
            else:
                line = {"path": path, "tags": result.tags}
            if not args.quiet:
                for warning in result.warnings:
                    print(f"{path}: {warning}", file=sys.stderr)
        try:
            out.write(json.dumps(line) + "\n")
        except BrokenPipeError:  # `sdaie exif DIR | head`: the reader left, stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
            return status
        if args.strict and "error" in line:
            out.flush()
            print(f"sdaie exif: --strict: stopped at {path}: {line['error']}", file=sys.stderr)
            return status or 1
    out.flush()
    return status

"""``sdaie gpu-check [--cpu] [--out DIR]``: run every section, write the two reports, exit 0 when
no check failed (skipped sections do not count)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from sdaie.gpucheck.report import TITLES, Section, write_reports

SECTIONS = tuple(TITLES)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sdaie gpu-check",
        description="Check a GPU node before a long run: versions, correctness of the fast path "
                    "per precision, training throughput and the fastest correct settings, loader "
                    "rates per data source and the workers they need, the pipeline end to end, "
                    "and a 2-rank DDP run. Writes gpu_check.md and gpu_check.json.")
    p.add_argument("--cpu", action="store_true",
                   help="run the same checks on the CPU with tiny sizes (GPU-only parts say "
                        "'skipped: no CUDA')")
    p.add_argument("--out", default="runs/gpu_check", help="output folder (default runs/gpu_check)")
    p.add_argument("--device", default="auto", help="auto | cuda | cuda:N (ignored with --cpu)")
    p.add_argument("--index", default=None,
                   help="time the loader on this `sdaie index` folder (your photos) instead of "
                        "synthetic camera-sized JPEGs")
    p.add_argument("--photo-size", default=None, metavar="WxH",
                   help="size of the synthetic JPEGs of the loader section (default 4000x3000; "
                        "640x480 with --cpu)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    return p


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--photo-size: expected WxH such as 4000x3000, got {text!r}") from None
    if w < 64 or h < 64:
        raise SystemExit(f"--photo-size: both sides must be >= 64, got {text!r}")
    return w, h


def _prepare(out: Path) -> Path:
    """The work folder under ``out``, emptied; a folder that is not a gpu-check's is refused."""
    work = out / "work"
    if work.exists() and not (out / "gpu_check.json").exists():
        raise SystemExit(f"{out} holds a 'work' folder that is not a gpu-check's; choose another --out")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def _timed(key: str, fn: Callable[[], Section]) -> Section:
    """A section's result; a crash becomes an ``error`` section with its last line (the full
    traceback goes to stderr), so the report is always complete."""
    print(f"gpu-check: {TITLES[key]} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        section = fn()
    except Exception as exc:  # the report must say what crashed and go on with the rest
        traceback.print_exc()
        section = Section(key, TITLES[key], "error", f"{type(exc).__name__}: {exc}")
    section.seconds = time.perf_counter() - start
    print(f"gpu-check: {TITLES[key]}: {section.status}: {section.summary}", file=sys.stderr,
          flush=True)
    return section


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"--sections: unknown {unknown}; valid: {','.join(SECTIONS)}")
    size = _parse_size(args.photo_size)
    from sdaie.gpucheck.run import run_checks  # here: torch loads after the options are checked

    out = Path(args.out)
    start = time.perf_counter()
    sections = run_checks(args, out, _prepare(out), wanted, size, _timed)
    failed = [s.key for s in sections if s.status in ("fail", "error")]
    header = {"mode": "cpu" if args.cpu else "gpu", "command": "sdaie gpu-check " + " ".join(
        argv if argv is not None else sys.argv[1:]), "seconds": time.perf_counter() - start,
        "verdict": "FAILED: " + ", ".join(failed) if failed else "all checks passed"}
    js, md = write_reports(out, header, sections)
    print(f"gpu-check: {header['verdict']} in {header['seconds']:.0f} s; reports {md} and {js}",
          file=sys.stderr)
    return 1 if failed else 0

"""``sdaie detect``: score your own images with the binary detector or the one-class GMM.

    sdaie detect photo.jpg folder/ 'shots/**/*.png' --checkpoint bc.pt --out scores.jsonl
    sdaie detect folder/ --mode oc --checkpoint pretext.pt --gmm runs/oc/gmm.npz

One output row per input file, in input order: ``{"path": ...}`` plus

- ``--mode bc`` (binary checkpoint): ``p_fake`` = 1 - softmax(logits)[0] and ``label``
  ("ai-generated" iff p_fake > ``--threshold``, default 0.5, the training objective's cut);
- ``--mode oc`` (pretext checkpoint + the ``gmm.npz`` written by ``oc_main``): ``log_likelihood``
  under the mixture fitted on real images, ``percentile`` (share of the real training images
  scoring at or below it, 0..100) and ``label`` ("real" iff log-likelihood > the GMM's threshold,
  the 2 % training quantile, unless ``--threshold`` replaces it);

and ``patches`` (grid tiles used) and ``seconds``; or ``{"path": ..., "error": reason}`` for a file
that cannot be used. Every image is scored exactly as the evaluation stages do it (all grid patches
of the full image, the CNN in chunks of ``--batch-patches``, the transformer once over all tokens),
through the same functions. Pixels only: EXIF is never read at detection time.

Inputs: files (used as named, whatever their extension), folders (image files below them,
recursively, hidden ones skipped) and glob patterns (expanded here, ``**`` included, so quoting
works on every shell). A file reached twice is scored once. Rows go to ``--out`` (``.jsonl`` or
``.csv``, written as they come so an interrupted run keeps its rows) or to stdout as JSON lines; a
progress bar and a summary line go to stderr.

Exit status: 0 if at least one image was scored, 1 if none was (or ``--strict`` met an unusable
file), 2 for a checkpoint, GMM or argument that cannot be used.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from sdaie import labels
from sdaie.labels import NAMES

REAL, FAKE = NAMES[labels.REAL], NAMES[labels.FAKE]  # the words rows print
MODES = ("bc", "oc")
GLOB_CHARS = frozenset("*?[")
COLUMNS = {  # CSV column order per mode
    "bc": ("path", "p_fake", "label", "patches", "seconds", "error"),
    "oc": ("path", "log_likelihood", "percentile", "label", "patches", "seconds", "error"),
}


class SetupError(Exception):
    """A checkpoint, GMM or option that makes the whole run impossible (exit status 2)."""


def get_args_parser() -> argparse.ArgumentParser:
    from sdaie.config import EvalConfig, OneClassConfig

    p = argparse.ArgumentParser(
        prog="sdaie detect",
        description="Score images as real or AI-generated (binary detector or one-class GMM).",
        epilog="Rows: JSON lines on stdout unless --out; summary on stderr. EXIF is never used.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, folders (recursive) or globs")
    p.add_argument("--checkpoint", required=True,
                   help="bc: binary detector checkpoint; oc: the pretext checkpoint the GMM was "
                        "fitted with (this project's format or the official one)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="bc (binary detector) or oc (one-class GMM); default: oc if --gmm is given")
    p.add_argument("--gmm", default=None, help="gmm.npz written by oc_main (oc mode)")
    p.add_argument("--threshold", type=float, default=None,
                   help="bc: p_fake cut, default 0.5; oc: log-likelihood cut, default the GMM's "
                        "(write a negative one as --threshold=-12.5)")
    p.add_argument("--out", default=None, help="write rows to FILE.jsonl or FILE.csv")
    p.add_argument("--batch-patches", type=int, default=EvalConfig().batch_patches,
                   help="patches per CNN forward (bounds memory; the result does not depend on it)")
    p.add_argument("--max-patches", type=int, default=None,
                   help=f"grid patches kept per image; default as in evaluation: bc "
                        f"{EvalConfig().max_patches}, oc the GMM's own cap if it stored one, "
                        f"else {OneClassConfig().max_patches}")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--strict", action="store_true", help="stop at the first unusable file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One output row to produce: a file to score, or an input that resolved to an error."""

    path: str
    error: str | None = None


def _is_glob(arg: str) -> bool:
    return any(c in GLOB_CHARS for c in arg)


def expand_inputs(args: Sequence[str]) -> list[Target]:
    """Files, folders and globs -> targets in input order, each file once.

    An argument that names nothing (missing path, pattern without matches, folder without
    images) becomes an error target, so it shows up in the output instead of vanishing.
    """
    from sdaie.data.imageio import list_images

    out: list[Target] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(Target(str(path)))

    def add_dir(d: Path, shown: str) -> None:
        files = list_images(d)
        if not files:
            out.append(Target(shown, "no image files under this folder"))
        for f in files:
            add(f)

    for arg in args:
        p = Path(arg)
        if p.is_dir():
            add_dir(p, arg)
        elif p.is_file():
            add(p)
        elif _is_glob(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                out.append(Target(arg, "pattern matched no file"))
            for m in matches:
                if Path(m).is_dir():
                    add_dir(Path(m), m)
                else:
                    add(Path(m))
        elif p.exists():
            out.append(Target(arg, "not a regular file or folder"))
        else:
            out.append(Target(arg, "no such file or folder"))
    return out


# ---------------------------------------------------------------------------------------------
# Scorers: patches of one image -> the mode's row fields
# ---------------------------------------------------------------------------------------------


class ScoreError(Exception):
    """An image that was read but could not be scored (e.g. a non-finite feature)."""


@dataclass
class BinaryScorer:
    """p(fake) of the binary detector, as ``bc_eval`` computes it."""

    detector: Any
    threshold: float
    batch_patches: int
    device: Any

    @property
    def patch_size(self) -> int:
        return self.detector.patch_size

    def __call__(self, patches) -> dict[str, Any]:
        from sdaie.stages.bc_eval import p_fake

        p = p_fake(self.detector, patches, self.batch_patches, self.device)
        if not math.isfinite(p):
            raise ScoreError("p_fake is not finite")
        return {"p_fake": p, "label": FAKE if p > self.threshold else REAL}


@dataclass
class OneClassScorer:
    """Log-likelihood of the image's feature under the real-image GMM, as ``oc_main`` has it."""

    extractor: Any
    model: Any  # sdaie.oneclass.gmm.OneClassGMM
    threshold: float
    batch_patches: int
    device: Any

    @property
    def patch_size(self) -> int:
        return self.extractor.patch_size

    def __call__(self, patches) -> dict[str, Any]:
        from sdaie.oneclass.features import image_feature

        feature = image_feature(self.extractor, patches, self.batch_patches, self.device).numpy()
        if not np.isfinite(feature).all():
            raise ScoreError("the image's feature is not finite")
        ll = float(self.model.score(feature[None])[0])
        if math.isnan(ll):
            raise ScoreError("log-likelihood is NaN")
        pct = float(self.model.percentile(np.array([ll]))[0])
        return {"log_likelihood": ll, "percentile": round(pct, 2),
                "label": REAL if ll > self.threshold else FAKE}


def build_scorer(args: argparse.Namespace, device: Any) -> tuple[str, Callable, dict[str, Any]]:
    """(mode, scorer, facts for the summary) from the options; :class:`SetupError` if unusable."""
    from sdaie.models import CheckpointError, load_binary_detector, load_extractor

    mode = args.mode or ("oc" if args.gmm else "bc")
    if args.batch_patches < 1:
        raise SetupError(f"--batch-patches must be >= 1, got {args.batch_patches}")
    try:
        if mode == "bc":
            if args.gmm:
                raise SetupError("--gmm is for --mode oc")
            threshold = 0.5 if args.threshold is None else args.threshold
            detector = load_binary_detector(args.checkpoint, map_location=device)
            return mode, BinaryScorer(detector, threshold, args.batch_patches, device), \
                {"threshold": threshold}
        if not args.gmm:
            raise SetupError("--mode oc needs --gmm (the gmm.npz written by oc_main)")
        model, meta = _load_gmm_checked(args.gmm, args.checkpoint)
        extractor = load_extractor(args.checkpoint, map_location=device)
        if model.gmm.n_features_in_ != extractor.feature_dim:
            raise SetupError(f"{args.gmm} models {model.gmm.n_features_in_}-d features but the "
                             f"checkpoint's extractor gives {extractor.feature_dim}-d ones")
        threshold = model.threshold if args.threshold is None else args.threshold
        scorer = OneClassScorer(extractor, model, threshold, args.batch_patches, device)
        facts = {"threshold": threshold, "gmm_train_images": int(model.train_scores.size)}
        if meta.get("max_patches"):  # the cap the GMM's training features were computed with
            facts["max_patches"] = int(meta["max_patches"])
        return mode, scorer, facts
    except CheckpointError as exc:
        hint = ""
        if "pretext checkpoint, not a binary" in str(exc):
            hint = " (a pretext checkpoint scores images with --mode oc --gmm GMM.npz)"
        raise SetupError(f"{exc}{hint}") from exc


def _load_gmm_checked(gmm_path: str, checkpoint: str):
    """The GMM, refused if it was fitted on features of a different checkpoint file."""
    from sdaie.hashing import file_hash
    from sdaie.oneclass.gmm import load_gmm

    try:
        model, meta = load_gmm(gmm_path)
    except (OSError, ValueError, KeyError) as exc:
        raise SetupError(f"cannot read the GMM {gmm_path}: {exc}") from exc
    fitted_with = meta.get("checkpoint_hash")
    if fitted_with:
        try:
            mine = file_hash(checkpoint)
        except OSError as exc:
            raise SetupError(f"cannot read the checkpoint {checkpoint}: {exc}") from exc
        if mine != fitted_with:
            raise SetupError(
                f"{gmm_path} was fitted on features of {meta.get('checkpoint', '?')} "
                f"(sha256 {fitted_with}), but --checkpoint {checkpoint} has sha256 {mine}: its "
                "log-likelihoods would mean nothing; pass the checkpoint the GMM was fitted with")
    return model, meta


# ---------------------------------------------------------------------------------------------
# Scoring loop and output
# ---------------------------------------------------------------------------------------------


def _oom_errors() -> tuple[type[BaseException], ...]:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (MemoryError,) + ((oom,) if oom is not None else ())


def score_file(path: str, scorer: Callable, max_patches: int) -> dict[str, Any]:
    """One row for one file: scores, patch count and time, or the reason it cannot be used."""
    from sdaie.data.imageio import ImageLoadError, load_image
    from sdaie.data.patches import grid_patches

    start = time.perf_counter()
    try:
        img = load_image(path)
        patches = grid_patches(img, size=scorer.patch_size, cap=max_patches, normalized=False)
        row = {"path": path, **scorer(patches), "patches": int(patches.shape[0])}
    except (ImageLoadError, ScoreError) as exc:
        return {"path": path, "error": str(exc)}
    except _oom_errors() as exc:
        return {"path": path, "error": f"out of memory ({type(exc).__name__}); "
                                       "try a smaller --batch-patches or --max-patches"}
    row["seconds"] = round(time.perf_counter() - start, 4)
    return row


class RowWriter:
    """JSON lines (stdout or ``.jsonl``) or CSV; each row flushed as soon as it is written."""

    def __init__(self, fh: IO[str], fmt: str, columns: Sequence[str]):
        self.fh, self.fmt = fh, fmt
        self.csv = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n",
                                  extrasaction="ignore") if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        if self.csv is not None:
            self.csv.writerow(row)
        else:
            self.fh.write(json.dumps(row) + "\n")
        self.fh.flush()


@contextmanager
def open_output(out: str | None, mode: str) -> Iterator[RowWriter]:
    if out is None:
        yield RowWriter(sys.stdout, "jsonl", COLUMNS[mode])
        return
    path = Path(out)
    fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        yield RowWriter(fh, fmt, COLUMNS[mode])


def summarize(rows: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Counts (files = ok + errors), labels among the scored, throughput over the wall time."""
    ok = [r for r in rows if "error" not in r]
    return {"files": len(rows), "ok": len(ok), "errors": len(rows) - len(ok),
            "ai_generated": sum(r["label"] == FAKE for r in ok),
            "real": sum(r["label"] == REAL for r in ok),
            "seconds": round(seconds, 3),
            "images_per_s": round(len(ok) / seconds, 3) if seconds > 0 else float("nan")}


def summary_line(s: dict[str, Any], mode: str, out: str | None) -> str:
    where = f"; rows in {out}" if out else ""
    return (f"sdaie detect ({mode}): {s['files']} files, {s['ok']} ok ({s['ai_generated']} "
            f"ai-generated, {s['real']} real), {s['errors']} errors; {s['seconds']:.1f} s, "
            f"{s['images_per_s']:.2f} images/s{where}")


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Score every target; returns (rows, summary, mode). Raises :class:`SetupError`."""
    from tqdm import tqdm

    from sdaie.config import EvalConfig, OneClassConfig
    from sdaie.device import resolve_device

    device = resolve_device(args.device)
    mode, scorer, facts = build_scorer(args, device)
    max_patches = args.max_patches or facts.pop("max_patches", None) or (
        EvalConfig().max_patches if mode == "bc" else OneClassConfig().max_patches)
    if max_patches < 1:
        raise SetupError(f"--max-patches must be >= 1, got {max_patches}")
    targets = expand_inputs(args.paths)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    with open_output(args.out, mode) as writer:
        for t in tqdm(targets, desc="detect", unit="img", file=sys.stderr,
                      disable=True if args.no_progress else None):
            row = {"path": t.path, "error": t.error} if t.error else score_file(t.path, scorer,
                                                                                max_patches)
            writer.write(row)
            rows.append(row)
            if args.strict and "error" in row:
                break
    summary = {**summarize(rows, time.perf_counter() - start), **facts, "mode": mode,
               "max_patches": max_patches}
    return rows, summary, mode


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        rows, summary, mode = run(args)
    except SetupError as exc:
        print(f"sdaie detect: error: {exc}", file=sys.stderr)
        return 2
    print(summary_line(summary, mode, args.out), file=sys.stderr)
    if args.strict and summary["errors"]:
        bad = next(r for r in rows if "error" in r)
        print(f"sdaie detect: --strict: stopped at {bad['path']}: {bad['error']}", file=sys.stderr)
        return 1
    return 0 if summary["ok"] else 1

"""``sdaie detect``: score your own images with the binary detector or the one-class GMM.

    sdaie detect photo.jpg folder/ 'shots/**/*.png' --checkpoint bc.pt --out scores.jsonl
    sdaie detect folder/ --gmm runs/oc/gmm.npz [--checkpoint pretext.pt]
    sdaie detect photo.jpg --checkpoint official_bc.pth --protocol official --perturbation jpeg=95

One output row per input file, in input order: ``{"path": ...}`` plus

- ``--mode bc`` (binary checkpoint): ``p_fake`` = 1 - softmax(logits)[0] and ``label``
  ("ai-generated" iff p_fake > ``--threshold``, default 0.5, the training objective's cut);
- ``--mode oc`` (the ``gmm.npz`` written by ``oc_main``, with the pretext checkpoint it records
  unless ``--checkpoint`` names it): ``log_likelihood`` under the mixture fitted on real images,
  ``percentile`` (share of the real training images scoring at or below it, 0..100) and ``label``
  ("real" iff log-likelihood > the GMM's threshold, the 2 % training quantile, unless
  ``--threshold`` replaces it);

and ``patches`` (grid tiles used) and ``seconds``; or ``{"path": ..., "error": reason}`` for a file
that cannot be used. The rows are those of :class:`sdaie.api.Detector` (this module is its command
line): every image is scored exactly as the evaluation stages do it (all grid patches of the full
image, the CNN in chunks of ``--batch-patches``, the transformer once over all tokens), through
the same functions. Pixels only: EXIF is never read at detection time.

``--protocol``: ``spec`` (the paper as written) or ``official`` (the authors' evaluation steps:
transposed zero-padded centre crop, floored resize sizes, their patch caps), default ``spec``, or
in oc mode the protocol the GMM was fitted under. ``--perturbation`` (``jpeg=95``, ``blur=1.0``,
``resize=0.5``) perturbs every image before tiling, to check one image under the robustness
conditions of the tables.

Inputs: files (used as named, whatever their extension), folders (image files below them,
recursively, symbolic links followed, hidden ones skipped; other files counted as "ignored") and
glob patterns (expanded here, ``**`` included, so quoting works on every shell). A file reached
twice is scored once. Rows go to ``--out`` (``.jsonl`` or ``.csv``, written as they come so an
interrupted run keeps its rows) or to stdout as JSON lines; a progress bar, a summary line and a
short summary table go to stderr.

``--heatmap DIR`` also scores every patch in the same pass (``--stride``, ``--context``,
``--window``; docs/heatmaps.md) and writes, per image, ``DIR/<relative path>.heatmap.png`` (the
overlay: colour scale with its legend, threshold marked, flagged regions outlined) and
``.heatmap.npz`` (scores, patch boxes, stride, detector); rows gain ``patch_share``, ``regions``,
``partly_generated`` and the two file paths. Paths under DIR mirror the inputs below their
common folder.

Exit status: 0 if at least one image was scored, 1 if none was (or ``--strict`` met an unusable
file), 2 for a checkpoint, GMM, option or input that cannot be used (one line on stderr; found
before torch is imported wherever it can be: paths, option ranges, checkpoint kinds, inputs
without any image file).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sdaie import labels
from sdaie.checkpoint_kind import peek_kind
from sdaie.config import PATCH_CONTEXTS, PROTOCOLS, EvalConfig, OneClassConfig
from sdaie.data.inputs import Inputs, collect_inputs
from sdaie.data.transforms import parse_perturbation
from sdaie.data.walk import ignored_text
from sdaie.labels import NAMES

REAL, FAKE = NAMES[labels.REAL], NAMES[labels.FAKE]  # the words rows print
MODES = ("bc", "oc")
HEATMAP_FILES = ("heatmap_png", "heatmap_npz")
OUT_FORMATS = (".jsonl", ".csv")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sdaie detect",
        description="Score images as real or AI-generated (binary detector or one-class GMM).",
        epilog="Rows: JSON lines on stdout unless --out; summary on stderr. EXIF is never used.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, folders (recursive) or globs")
    p.add_argument("--checkpoint", default=None,
                   help="bc: binary detector checkpoint (required); oc: the pretext checkpoint the "
                        "GMM was fitted with, default the one gmm.npz records (this project's "
                        "format or the official one)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="bc (binary detector) or oc (one-class GMM); default: oc if --gmm is given")
    p.add_argument("--gmm", default=None, help="gmm.npz written by oc_main (oc mode)")
    p.add_argument("--threshold", type=float, default=None,
                   help="bc: p_fake cut, default 0.5; oc: log-likelihood cut, default the GMM's "
                        "(write a negative one as --threshold=-12.5)")
    p.add_argument("--out", default=None, help="write rows to FILE.jsonl or FILE.csv (the "
                                               "extension chooses the format)")
    p.add_argument("--batch-patches", type=int, default=EvalConfig.batch_patches,
                   help="patches per CNN forward (bounds memory; the result does not depend on it)")
    p.add_argument("--max-patches", type=int, default=None,
                   help=f"grid patches kept per image; default as in evaluation: bc "
                        f"{EvalConfig.max_patches}, oc the GMM's own cap if it stored one, "
                        f"else {OneClassConfig.max_patches}")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="spec: the paper as written; official: the authors' evaluation steps "
                        "(transposed centre crop, floored resize, their patch caps); default spec, "
                        "in oc mode the GMM's")
    p.add_argument("--perturbation", default=None, metavar="SPEC",
                   help="perturb every image first: jpeg=Q, blur=SIGMA or resize=S (e.g. jpeg=95, "
                        "blur=1.0, resize=0.5, the robustness conditions)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    h = p.add_argument_group("heatmaps (docs/heatmaps.md)")
    h.add_argument("--heatmap", metavar="DIR", default=None,
                   help="write an overlay PNG and the raw patch grid (.npz) per image into DIR")
    h.add_argument("--stride", type=int, default=None,
                   help="pixels between heatmap patches, dividing the patch size (default: the "
                        "patch size, i.e. the evaluation grid; e.g. 32 for 64-px patches)")
    h.add_argument("--context", choices=PATCH_CONTEXTS, default=None,
                   help="how a patch is scored on its own: alone (N = 1), window (with its "
                        "grid neighbours) or image (among all patches); default: bc alone, "
                        "oc window (the measured choice)")
    h.add_argument("--window", type=int, default=3, help="window side in patches (3)")
    h.add_argument("--min-region", type=int, default=1,
                   help="flagged patches a region needs to be reported (1)")
    p.add_argument("--strict", action="store_true", help="stop at the first unusable file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def check_options(args: argparse.Namespace) -> str:
    """An argument error message (exit 2) if the options contradict or are out of range, else ""."""
    mode = args.mode or ("oc" if args.gmm else "bc")
    if args.batch_patches < 1:
        return f"--batch-patches must be >= 1, got {args.batch_patches}"
    if args.max_patches is not None and args.max_patches < 1:
        return f"--max-patches must be >= 1, got {args.max_patches}"
    if mode == "bc" and args.threshold is not None and not 0 <= args.threshold <= 1:
        return (f"--threshold {args.threshold:g} is not a probability: in bc mode it is the "
                "p_fake cut, in [0, 1] (default 0.5)")
    if args.out is not None and Path(args.out).suffix.lower() not in OUT_FORMATS:
        return (f"--out {args.out}: the extension chooses the format; use "
                f"{' or '.join('FILE' + e for e in OUT_FORMATS)}")
    if mode == "bc" and args.gmm:
        return "--gmm is for --mode oc"
    if mode == "bc" and not args.checkpoint:
        return "--mode bc needs --checkpoint (the binary detector)"
    if mode == "oc" and not args.gmm:
        return "--mode oc needs --gmm (the gmm.npz written by oc_main)"
    if not args.heatmap and (args.stride is not None or args.context is not None):
        return "--stride and --context shape the heatmaps: add --heatmap DIR"
    if args.window < 1 or args.min_region < 1 or (args.stride is not None and args.stride < 1):
        return "--stride, --window and --min-region must be >= 1"
    if args.heatmap and Path(args.heatmap).exists() and not Path(args.heatmap).is_dir():
        return f"--heatmap {args.heatmap} is a file; give a folder for the overlays"
    if args.perturbation is not None:
        try:
            parse_perturbation(args.perturbation)
        except ValueError as exc:
            return f"--perturbation: {exc}"
    return check_files(args, mode)


def check_files(args: argparse.Namespace, mode: str) -> str:
    """Model files that exist and, where it can be read without torch, are of the right kind."""
    for option, path in (("--checkpoint", args.checkpoint), ("--gmm", args.gmm)):
        if path is not None and not Path(path).is_file():
            return f"{option} {path}: no such file"
    kind = peek_kind(args.checkpoint) if args.checkpoint else None
    if mode == "bc" and kind == "pretext":
        return (f"--checkpoint {args.checkpoint} is a pretext checkpoint, not a binary "
                "detector: it scores images with its GMM (--mode oc --gmm GMM.npz)")
    if mode == "oc" and kind == "binary":
        return (f"--checkpoint {args.checkpoint} is a binary detector; --mode oc needs the "
                "pretext checkpoint the GMM was fitted with (default: the one gmm.npz records)")
    return ""


def check_inputs(inputs: Inputs) -> str:
    """An error message (exit 2) when no argument leads to any image file."""
    if inputs.files:
        return ""
    said = "; ".join(f"{t.path}: {t.error}" for t in inputs.targets[:3])
    extra = f"; {ignored_text(inputs.ignored)}" if inputs.ignored else ""
    return f"no image file in the inputs ({said}{extra})"


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
            self.csv.writerow({k: json.dumps(v) if isinstance(v, list) else v
                               for k, v in row.items()})
        else:
            self.fh.write(json.dumps(row) + "\n")
        self.fh.flush()


@contextmanager
def open_output(out: str | None, columns: Sequence[str]) -> Iterator[RowWriter]:
    if out is None:
        yield RowWriter(sys.stdout, "jsonl", columns)
        return
    path = Path(out)
    fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        yield RowWriter(fh, fmt, columns)


def summarize(rows: Sequence[dict[str, Any]], seconds: float, inputs: Inputs | None = None
              ) -> dict[str, Any]:
    """Counts (image files = ok + errors; inputs that named no image file apart; non-image files
    in the folders by kind), labels among the scored, throughput over the wall time."""
    bad_inputs = {t.path for t in inputs.targets if t.error} if inputs is not None else set()
    files = [r for r in rows if r["path"] not in bad_inputs]
    ok = [r for r in files if "error" not in r]
    return {"files": len(files), "ok": len(ok), "errors": len(files) - len(ok),
            "ai_generated": sum(r["label"] == FAKE for r in ok),
            "real": sum(r["label"] == REAL for r in ok),
            "inputs_without_images": len(rows) - len(files),
            "ignored": dict(inputs.ignored) if inputs is not None else {},
            "seconds": round(seconds, 3),
            "images_per_s": round(len(ok) / seconds, 3) if seconds > 0 else float("nan")}


def summary_line(s: dict[str, Any], mode: str, out: str | None) -> str:
    where = f"; rows in {out}" if out else ""
    how = ", ".join([mode] + [f"{k} {s[k]}" for k, default in (("protocol", "spec"),
                                                                ("perturbation", "clean"))
                              if s.get(k, default) != default])
    return (f"sdaie detect ({how}): {s['files']} image files, {s['ok']} ok ({s['ai_generated']} "
            f"ai-generated, {s['real']} real), {s['errors']} errors; {s['seconds']:.1f} s, "
            f"{s['images_per_s']:.2f} images/s{where}")


class HeatmapFiles:
    """``sdaie detect --heatmap DIR``: where each image's overlay and grid go (its path below the
    inputs' common folder, plus ``.heatmap.png`` / ``.heatmap.npz``), and the sink that writes
    them as rows are scored."""

    def __init__(self, out: str | Path, paths: Sequence[str]) -> None:
        self.out = Path(out)
        parents = [str(Path(p).resolve().parent) for p in paths]
        self.root = Path(os.path.commonpath(parents)) if parents else Path(".")

    def files(self, path: str | None) -> tuple[Path, Path]:
        rel = Path(path).resolve().relative_to(self.root) if path else Path("image")
        return (self.out / f"{rel}.heatmap.png", self.out / f"{rel}.heatmap.npz")

    def __call__(self, img: Any, row: dict[str, Any]) -> None:
        # reason: the overlay renderer imports torch through the heatmap module
        from sdaie.heatmaps import Region
        from sdaie.overlay import write_heatmap

        png, npz = self.files(row["path"])
        regions = [Region.from_dict(d) for d in row["regions"]]  # the row's: found once
        write_heatmap(img, row["heatmap"], regions, png, npz, image=row["path"],
                      image_label=row["label"], patch_share=row["patch_share"])
        row["heatmap_png"], row["heatmap_npz"] = str(png), str(npz)


def _heatmaps(det: Any, args: argparse.Namespace, targets: Sequence[Any]) -> tuple[Any, Any]:
    """(request, sink) of ``--heatmap``, or (None, None); SetupError for options that cannot
    work with this detector."""
    from sdaie.api import SetupError  # reason: torch stays out of 'sdaie detect --help'

    if not args.heatmap:
        return None, None
    try:
        request = det.map_spec(args.stride, args.context, args.window, args.min_region)
    except ValueError as exc:
        raise SetupError(f"--heatmap: {exc}") from None
    files = HeatmapFiles(args.heatmap, [t.path for t in targets if not t.error])
    return request, files


def _columns(det: Any, heatmaps: bool) -> tuple[str, ...]:
    from sdaie.api import PATCH_COLUMNS  # reason: torch stays out of 'sdaie detect --help'

    cols = det.columns
    return (*cols[:-2], *PATCH_COLUMNS, *HEATMAP_FILES, *cols[-2:]) if heatmaps else cols


def summary_table(s: dict[str, Any]) -> str:
    """The short Markdown table ``sdaie detect`` ends with (on stderr)."""
    rows = [("image files", s["files"]), ("scored", s["ok"]), (FAKE, s["ai_generated"]),
            (REAL, s["real"]), ("unreadable (reason in the row)", s["errors"])]
    if s.get("inputs_without_images"):
        rows.append(("inputs without an image file", s["inputs_without_images"]))
    if s.get("ignored"):
        rows.append(("not images, " + ignored_text(s["ignored"]), sum(s["ignored"].values())))
    rows += [("seconds", f"{s['seconds']:.1f}"), ("images/s", f"{s['images_per_s']:.2f}")]
    return "\n".join(["| | count |", "|---|---:|", *(f"| {k} | {v} |" for k, v in rows)])


def setup_problem(args: argparse.Namespace) -> tuple[str, Inputs]:
    """Everything checked before torch is imported: options, model files, inputs."""
    problem = check_options(args)
    if problem:
        return problem, Inputs()
    inputs = collect_inputs(args.paths)
    return check_inputs(inputs), inputs


def run(args: argparse.Namespace, inputs: Inputs | None = None
        ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score every input; returns (rows, summary). Raises :class:`sdaie.api.SetupError`."""
    # reason: torch (through the API) is imported only once the arguments are known to be usable
    from tqdm import tqdm

    from sdaie.api import Detector, SetupError

    if inputs is None:
        problem, inputs = setup_problem(args)
        if problem:
            raise SetupError(problem)
    det = Detector.load(args.checkpoint, args.gmm, device=args.device,
                        batch_patches=args.batch_patches, max_patches=args.max_patches or None,
                        threshold=args.threshold, protocol=args.protocol,
                        perturbation=args.perturbation)
    request, sink = _heatmaps(det, args, inputs.targets)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    with open_output(args.out, _columns(det, request is not None)) as writer:
        for t in tqdm(inputs.targets, desc="detect", unit="img", file=sys.stderr,
                      disable=True if args.no_progress else None):
            row = det.score_target(t, request, sink)
            row.pop("heatmap", None)
            writer.write(row)
            rows.append(row)
            if args.strict and "error" in row:
                break
    facts = {"threshold": det.threshold, "mode": det.mode, "max_patches": det.max_patches,
             "protocol": det.protocol, "perturbation": det.perturbation.spec}
    if det.gmm_train_images is not None:
        facts["gmm_train_images"] = det.gmm_train_images
    if request is not None:
        facts.update(heatmap_facts(det, request, rows, args.heatmap))
    return rows, {**summarize(rows, time.perf_counter() - start, inputs), **facts}


def heatmap_facts(det: Any, request: Any, rows: Sequence[dict[str, Any]],
                  out: str) -> dict[str, Any]:
    """Summary entries of ``--heatmap``; says so when one-class patch thresholds fall back to
    the image's (a GMM from before calibration, or ``localisation.calibration_images=0``)."""
    context = request.spec.contexts[0]
    facts: dict[str, Any] = {
        "heatmaps": sum("heatmap_png" in r for r in rows), "heatmap_dir": out,
        "context": context, "stride": request.spec.stride or det.scorer.patch_size,
        "partly_generated": sum(bool(r.get("partly_generated")) for r in rows),
        "patch_threshold": det.patch_thresholds.get(context, det.threshold)}
    if det.mode == "oc" and context not in det.patch_thresholds:
        facts["note"] = ("the GMM has no calibrated patch threshold for this context: patches "
                         "are judged by the image threshold, which flags many real patches "
                         "(re-run oc_main to calibrate)")
    return facts


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    problem, inputs = setup_problem(args)
    if problem:
        print(f"sdaie detect: error: {problem}", file=sys.stderr)
        return 2
    from sdaie.api import SetupError  # reason: torch only after the cheap checks above

    try:
        rows, summary = run(args, inputs)
    except SetupError as exc:
        print(f"sdaie detect: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `sdaie detect DIR | head`: the reader left, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    print(summary_line(summary, summary["mode"], args.out), file=sys.stderr)
    print(summary_table(summary), file=sys.stderr)
    if "heatmaps" in summary:
        print(f"sdaie detect: {summary['heatmaps']} heatmaps ({summary['context']}, stride "
              f"{summary['stride']} px, patch threshold {summary['patch_threshold']:.4g}) in "
              f"{summary['heatmap_dir']}; {summary['partly_generated']} partly generated",
              file=sys.stderr)
        if "note" in summary:
            print(f"sdaie detect: note: {summary['note']}", file=sys.stderr)
    if args.strict and summary["errors"]:
        bad = next(r for r in rows if "error" in r)
        print(f"sdaie detect: --strict: stopped at {bad['path']}: {bad['error']}", file=sys.stderr)
        return 1
    return 0 if summary["ok"] else 1

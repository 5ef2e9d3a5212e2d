"""``sdaie bench``: the speed figures of the README in one run, printed as tables and saved as JSON.

    uv run sdaie bench [--quick] [--out bench.json] [--sections extractor,resnet,data,gmm,bc_eval]

Sections (one module each in :mod:`sdaie.benchmarks`):

- ``extractor``: SDAIE extractor inference and train step (forward + backward) in patches/s at the
  paper configuration (B images x N patches of 64x64), ``reference`` and ``fast`` implementations
  from the same weights, per thread count, and the ratio fast/reference.
- ``resnet``: the same for the ResNet extractor (``--resnet-archs``).
- ``data``: EXIF indexing images/s and pair-loader images/s from crop shards and from raw JPEGs,
  on a synthetic camera world (plus a few large JPEGs) built in a temporary folder.
- ``gmm``: seconds to fit the one-class GMM (5 full components) on synthetic 10 000 x 528 features.
- ``bc_eval``: binary-detector images/s over all grid patches of 256x256 and 1024x1024 images.
- ``evaluation``: one-class and binary evaluation images/s through the scoring path (decoded
  files, small images batched) for 64x64 and 1024x1024 images, against the extractor's inference
  rate on the same patches (:mod:`sdaie.benchmarks.evaluation`).
- ``heatmap``: seconds per image of detection alone and with a heatmap at the evaluation grid and
  at half the patch size, both detectors, same sizes, and the ratio heatmap / detection.

Each model measurement runs in a fresh process, one implementation per process, so that neither
inherits the heap the other grew. Reference and fast processes alternate ``--reps`` times; each
ratio is the median over these pairs of the ratio of median step times. The process CPU time is
recorded beside the wall clock.

The extractor and bc_eval sections are measured once per OpenMP wait policy in ``--omp-wait``
(default ``default,passive``): ``default`` is the environment as given (libgomp spins a while
before sleeping when ``OMP_WAIT_POLICY`` is unset), ``passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` in
the measuring process (idle OpenMP threads sleep at once, as on a busy machine or where a cluster
sets it). Intra-op threads pay a wake-up per operation under PASSIVE, so both figures are shown.
Other sections run in this process, under the environment as given. Design notes and measured
figures: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sdaie.atomic import atomic_write_text
from sdaie.benchmarks.binary import bench_bc_eval
from sdaie.benchmarks.datapath import bench_data
from sdaie.benchmarks.evaluation import bench_evaluation
from sdaie.benchmarks.extractors import bench_resnet, bench_sdaie
from sdaie.benchmarks.heatmaps import bench_heatmaps
from sdaie.benchmarks.measuring import WAIT_POLICIES, environment, load_average
from sdaie.benchmarks.oneclass import bench_gmm
from sdaie.benchmarks.report import report
from sdaie.config import ModelConfig
from sdaie.models.cpu_memory import keep_freed_memory

SECTIONS = ("extractor", "resnet", "data", "gmm", "bc_eval", "evaluation", "heatmap")


def _size_pair(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdaie bench",
                                     description=__doc__.split("\n\n")[0].replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, a smaller world and GMM (same model sizes)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny model and data sizes: a smoke test of the benchmark itself")
    parser.add_argument("--out", default=None, help="write the result JSON here")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--threads", default="1,2", help="CPU thread counts to measure")
    parser.add_argument("--batch", type=int, default=4, help="images per step (paper: 4 x 16)")
    parser.add_argument("--patches", type=int, default=16, help="patches per image")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per process")
    parser.add_argument("--reps", type=int, default=None,
                        help="alternating reference/fast process pairs per extractor and bc_eval "
                             "measurement")
    parser.add_argument("--resnet-archs", default="resnet18,resnet50")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] for the model sections")
    parser.add_argument("--omp-wait", default="default,passive",
                        help="OpenMP wait policies to measure the extractor and bc_eval under, "
                             f"comma-separated from {','.join(WAIT_POLICIES)} (module docstring)")
    parser.add_argument("--no-isolate", action="store_true",
                        help="measure models in this process instead of one fresh process each")
    parser.add_argument("--large-size", type=_size_pair, default=None,
                        help="size of the large JPEGs for the raw loader (default 4000x3000)")
    return parser


def _plan(args: argparse.Namespace) -> dict[str, Any]:
    """Sizes for the chosen mode (full, --quick, --tiny)."""
    if args.tiny:
        model = ModelConfig(width=8, patch_size=32, depths=[1, 1, 1, 1], transformer_depth=1,
                            attn_heads=2, dim_head=8, mlp_dim=32)
        return dict(model=model, rounds=args.rounds or 1, reps=args.reps or 1, photos=4,
                    size=96, crop=64, large=2,
                    large_size=args.large_size or (256, 192), gmm=(300, 36), bc_sizes=(64, 128),
                    archs=["resnet18"], eval_sizes=((32, 8), (128, 2)))
    quick = args.quick
    return dict(model=ModelConfig(), rounds=args.rounds or (2 if quick else 4),
                reps=args.reps or (1 if quick else 3),
                photos=16 if quick else 48, size=512, crop=512, large=2 if quick else 6,
                large_size=args.large_size or ((2000, 1500) if quick else (4000, 3000)),
                gmm=(2000, 528) if quick else (10_000, 528), bc_sizes=(256, 1024),
                archs=[a for a in args.resnet_archs.split(",") if a],
                eval_sizes=((64, 32), (1024, 1)) if quick else ((64, 128), (1024, 2)))


def _checked(args: argparse.Namespace) -> tuple[list[str], list[int], list[str]]:
    """Sections, thread counts and wait policies of the arguments; SystemExit if they clash."""
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; valid: {list(SECTIONS)}")
    threads = [int(t) for t in args.threads.split(",") if t]
    policies = [p.strip() for p in args.omp_wait.split(",") if p.strip()]
    if not policies or set(policies) - set(WAIT_POLICIES):
        raise SystemExit(f"--omp-wait {args.omp_wait!r}: choose from {list(WAIT_POLICIES)}")
    if args.no_isolate and policies != ["default"]:
        raise SystemExit("--no-isolate measures in this process: use --omp-wait default")
    return sections, threads, policies


def _run_sections(args: argparse.Namespace, plan: dict[str, Any], sections: list[str],
                  threads: list[int], policies: list[str], result: dict[str, Any]) -> None:
    isolate, model, rounds = not args.no_isolate, plan["model"], plan["rounds"]
    if "extractor" in sections:
        rows, ratios = bench_sdaie(model, args.batch, args.patches, threads, rounds,
                                   args.device, isolate, policies, plan["reps"])
        result["extractor"] = {"rows": rows, "ratios": ratios}
    if "resnet" in sections:
        result["resnet"] = bench_resnet(model, plan["archs"], args.batch, args.patches, threads,
                                        max(1, rounds // 2), args.device, isolate)
    torch.set_num_threads(max(threads))
    if "data" in sections:
        with tempfile.TemporaryDirectory(prefix="sdaie-bench-") as tmp:
            result["data"] = bench_data(Path(tmp), plan["photos"], plan["size"], plan["crop"],
                                        plan["large"], plan["large_size"], args.patches,
                                        model.patch_size, rounds)
    if "gmm" in sections:
        result["gmm"] = bench_gmm(*plan["gmm"], components=5, threads=max(threads))
    if "evaluation" in sections:
        result["evaluation"] = bench_evaluation(model, plan["eval_sizes"], max(1, rounds // 2),
                                                max(threads), args.batch * args.patches)
    if "bc_eval" in sections:
        result["bc_eval"] = bench_bc_eval(model, plan["bc_sizes"], max(1, rounds // 2),
                                          max(threads), args.device, isolate, policies,
                                          plan["reps"])
    if "heatmap" in sections:
        result["heatmap"] = bench_heatmaps(model, plan["bc_sizes"], rounds, max(threads))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections; returns the JSON-ready result."""
    sections, threads, policies = _checked(args)
    plan = _plan(args)
    start = time.perf_counter()
    result: dict[str, Any] = {"environment": {**environment(threads, args.device),
                                              "omp_wait_measured": policies,
                                              "keep_freed_memory": keep_freed_memory()},
                              "setup": {"batch": args.batch, "patches": args.patches,
                                        "patch_size": plan["model"].patch_size,
                                        "rounds": plan["rounds"], "reps": plan["reps"],
                                        "mode": ("tiny" if args.tiny else
                                                 "quick" if args.quick else "full")}}
    default_threads = torch.get_num_threads()
    try:
        _run_sections(args, plan, sections, threads, policies, result)
    finally:
        torch.set_num_threads(default_threads)
    result["wall_seconds"] = time.perf_counter() - start
    result["environment"]["load_average_end"] = load_average()
    return result


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    result = run(args)
    print(report(result))
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
        print(f"\nwrote {args.out}")
    return 0

"""``sdaie bench``: the speed figures of the README in one run, printed as tables and saved as JSON.

    uv run sdaie bench [--quick] [--out bench.json] [--sections extractor,resnet,data,gmm,bc_eval]

Sections:

- ``extractor``: SDAIE extractor inference and train step (forward + backward) in patches/s at the
  paper configuration (B images x N patches of 64x64), ``reference`` and ``fast`` implementations
  from the same weights, per thread count, and the ratio fast/reference.
- ``resnet``: the same for the ResNet extractor (``--resnet-archs``).
- ``data``: EXIF indexing images/s and pair-loader images/s from crop shards and from raw JPEGs,
  on a synthetic camera world (plus a few large JPEGs) built in a temporary folder.
- ``gmm``: seconds to fit the one-class GMM (5 full components) on synthetic 10 000 x 528 features.
- ``bc_eval``: binary-detector images/s over all grid patches of 256x256 and 1024x1024 images.

Each model measurement runs in a fresh process (see :func:`isolated`), one implementation per
process, so that neither inherits the heap the other grew (the reference's large maps cost page
faults that a heap warmed by other work would hide). Reference and fast processes alternate
``--reps`` times; each ratio is the median over these pairs of the ratio of median step times, so
a change of load between pairs hits both sides alike. The process CPU time is recorded beside the
wall clock.

The extractor and bc_eval sections are measured once per OpenMP wait policy in ``--omp-wait``
(default ``default,passive``): ``default`` is the environment as given (libgomp spins a while
before sleeping when ``OMP_WAIT_POLICY`` is unset), ``passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` in
the measuring process (idle OpenMP threads sleep at once, as on a busy machine or where a cluster
sets it). Intra-op threads pay a wake-up per operation under PASSIVE, so both figures are shown.
Other sections run in this process, under the environment as given. Every process measures with
the runtime the stages set up (``run.keep_freed_memory``: glibc keeps freed blocks up to 32 MB,
see :mod:`sdaie.models.cpu_memory`), for the reference as for the fast path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

SECTIONS = ("extractor", "resnet", "data", "gmm", "bc_eval")


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@dataclass
class Timings:
    """Per-round seconds of one function: wall clock and CPU time of the whole process.

    On a machine shared with other jobs the wall clock includes waiting for a core; the process
    CPU time (user + system, all threads) is the work done, a steadier basis for ratios.
    """

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    system: list[float] = field(default_factory=list)  # kernel share of ``cpu`` (page faults...)


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1,
                device: str = "cpu") -> dict[str, Timings]:
    """Time each function once per round; the functions alternate within every round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    out = {name: Timings() for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            wall, cpu, system = time.perf_counter(), time.process_time(), os.times().system
            fn()
            _sync(device)
            out[name].wall.append(time.perf_counter() - wall)
            out[name].cpu.append(time.process_time() - cpu)
            out[name].system.append(os.times().system - system)
    return out


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: Sequence[int], device: str) -> dict[str, Any]:
    """What the figures depend on: CPU, threads, versions, GPU, OpenMP wait policy."""
    import torch

    from sdaie.runinfo import environment_info

    info = environment_info()
    info.update(cpu=cpu_model(), threads_tested=list(threads), device=device,
                torch_threads_default=torch.get_num_threads(),
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "(unset)"),
                cpu_capability=torch.backends.cpu.get_cpu_capability(),
                load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    return info


# --------------------------------------------------------------------------------------------
# Extractors
# --------------------------------------------------------------------------------------------


WAIT_POLICIES = {"default": None, "passive": "PASSIVE", "active": "ACTIVE"}


def isolated(isolate: bool, fn: Callable[..., Any], *args: Any,
             omp_wait: str = "default") -> Any:
    """``fn(*args)``, by default in a fresh interpreter (spawn) under the given OpenMP wait policy.

    A fresh process has its own allocator heap and OpenMP pool. Without it, what ran before
    changes what a measurement pays for memory: after a training step has grown the heap, the
    reference's large maps reuse it, while in an inference-only process (bc_eval, one-class
    features) they fault fresh pages on every batch. Each measurement gets the heap its workload
    would have. OpenMP reads ``OMP_WAIT_POLICY`` once at start, so a policy other than
    ``default`` needs a fresh process.
    """
    if not isolate:
        if omp_wait != "default":
            raise ValueError(f"omp_wait={omp_wait!r} needs an isolated (fresh) process")
        return fn(*args)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    value = WAIT_POLICIES[omp_wait]
    before = os.environ.get("OMP_WAIT_POLICY")
    if value is not None:
        os.environ["OMP_WAIT_POLICY"] = value  # read by the child at start (spawn copies it)
    try:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            return pool.submit(fn, *args).result()
    finally:
        if value is not None:
            if before is None:
                os.environ.pop("OMP_WAIT_POLICY", None)
            else:
                os.environ["OMP_WAIT_POLICY"] = before


def _step_fns(model: Any, x: Any) -> dict[str, Callable[[], Any]]:
    """Inference (under ``inference_mode``) and train step (forward + backward of a scalar of
    the feature, so every parameter gets its gradient) closures."""
    import torch

    def infer() -> Any:
        with torch.inference_mode():
            return model(x)

    def train() -> None:
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    return {"inference": infer, "train": train}


def _row(ts: Timings, n: int, **keys: Any) -> dict[str, Any]:
    med = statistics.median(ts.wall)
    cpu = statistics.median(ts.cpu)
    return {**keys, "patches": n, "seconds": med, "patches_per_s": n / med, "cpu_seconds": cpu,
            "system_seconds": statistics.median(ts.system),
            "cores_used": cpu / med}  # below the thread count: the threads did not get a core each


IMPLS = ("reference", "fast")


def merged(parts: Sequence[Timings]) -> Timings:
    """The rounds of several processes as one series."""
    return Timings([w for t in parts for w in t.wall], [c for t in parts for c in t.cpu],
                   [s for t in parts for s in t.system])


def pair_ratios(slow: Sequence[Timings], fast: Sequence[Timings],
                attr: str = "wall") -> list[float]:
    """Per process pair: (median slow round) / (median fast round)."""
    def med(t: Timings) -> float:
        return statistics.median(getattr(t, attr))
    return [med(a) / med(b) for a, b in zip(slow, fast)]


def pair_ratio(slow: Sequence[Timings], fast: Sequence[Timings], attr: str = "wall") -> float:
    """The speed-up: the median of :func:`pair_ratios`."""
    return statistics.median(pair_ratios(slow, fast, attr))


def compared(isolate: bool, reps: int, omp_wait: str, fn: Callable[..., Timings],
             *args: Any) -> dict[str, list[Timings]]:
    """``fn(impl, *args)`` for reference and fast, each in its own fresh process, alternating
    ``reps`` times: neither inherits the heap the other grew, and a change of load between
    processes hits both sides of a pair alike."""
    out: dict[str, list[Timings]] = {impl: [] for impl in IMPLS}
    for _ in range(reps):
        for impl in IMPLS:
            out[impl].append(isolated(isolate, fn, impl, *args, omp_wait=omp_wait))
    return out


def sdaie_timings(impl: str, cfg: Any, batch: int, patches: int, threads: int, mode: str,
                  rounds: int, device: str) -> Timings:
    """One implementation of the SDAIE extractor (weights from seed 0, the same for both), one
    mode."""
    import torch

    from sdaie.models.cpu_memory import keep_freed_memory
    from sdaie.models import build_extractor

    keep_freed_memory()  # the stages' runtime (run.keep_freed_memory)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_extractor(replace(cfg, backbone="sdaie", implementation=impl)).to(device)
    x = torch.randn(batch, patches, 3, cfg.patch_size, cfg.patch_size, device=device)
    return interleaved({impl: _step_fns(model, x)[mode]}, rounds, device=device)[impl]


def bench_sdaie(cfg: Any, batch: int, patches: int, threads: Sequence[int], rounds: int,
                device: str = "cpu", isolate: bool = True,
                policies: Sequence[str] = ("default",),
                reps: int = 1) -> tuple[list[dict], list[dict]]:
    """Rows per (wait policy, implementation, mode, threads) and the fast/reference ratios."""
    rows, ratios = [], []
    n = batch * patches
    for policy in policies:
        for t in threads:
            for mode in ("inference", "train"):
                times = compared(isolate, reps, policy, sdaie_timings, cfg, batch, patches, t,
                                 mode, rounds, device)
                for name, ts in times.items():
                    rows.append(_row(merged(ts), n, backbone="sdaie", implementation=name,
                                     mode=mode, threads=t, omp_wait=policy))
                slow, quick = times["reference"], times["fast"]
                ratios.append({"mode": mode, "threads": t, "omp_wait": policy,
                               "fast_over_reference": pair_ratio(slow, quick),
                               "fast_over_reference_cpu": pair_ratio(slow, quick, "cpu"),
                               "pairs": pair_ratios(slow, quick)})
    return rows, ratios


def resnet_timings(cfg: Any, arch: str, batch: int, patches: int, threads: int, rounds: int,
                   device: str) -> dict[str, Timings]:
    """The ResNet extractor (SRM residual -> ResNet trunk): inference and train step."""
    import torch

    from sdaie.models.cpu_memory import keep_freed_memory
    from sdaie.models import build_extractor

    keep_freed_memory()  # the stages' runtime (run.keep_freed_memory)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_extractor(replace(cfg, backbone="resnet", resnet_arch=arch)).to(device)
    x = torch.randn(batch, patches, 3, cfg.patch_size, cfg.patch_size, device=device)
    return interleaved(_step_fns(model, x), rounds, device=device)


def bench_resnet(cfg: Any, archs: Sequence[str], batch: int, patches: int,
                 threads: Sequence[int], rounds: int, device: str = "cpu",
                 isolate: bool = True) -> list[dict]:
    rows = []
    for arch in archs:
        for t in threads:
            times = isolated(isolate, resnet_timings, cfg, arch, batch, patches, t, rounds, device)
            for mode, ts in times.items():
                rows.append(_row(ts, batch * patches, backbone=arch, implementation="-",
                                 mode=mode, threads=t, omp_wait="default"))
    return rows


# --------------------------------------------------------------------------------------------
# Data path
# --------------------------------------------------------------------------------------------


def make_large_jpegs(sources: Sequence[Path], out: Path, size: tuple[int, int]) -> list[Path]:
    """Camera-sized JPEGs: each source photo resized to ``size``, saved with its own EXIF block."""
    from PIL import Image

    from sdaie.data.imageio import load_image
    from sdaie.exif.reader import jpeg_exif_block

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, src in enumerate(sources):
        with open(src, "rb") as fh:
            block = jpeg_exif_block(fh)  # the TIFF structure after "Exif\0\0", or None
        big = load_image(src).resize(size, Image.BILINEAR)
        path = out / f"large_{i:03d}.jpg"
        big.save(path, quality=92, exif=b"Exif\0\0" + block if block else b"")
        paths.append(path)
    return paths


def _loader_rate(index: Any, use_shards: bool, items: int, patches: int, patch_size: int,
                 rounds: int) -> float:
    """Images/s of the pair dataset in this process (one DataLoader worker's worth)."""
    from sdaie.data.pairs import PairBatchSampler, PairDataset

    n = len(index.records)
    dataset = PairDataset(index, list(range(n)), n_patches=patches, patch_size=patch_size,
                          use_shards=use_shards)
    sampler = PairBatchSampler(n, items, seed=0)
    batches = [sampler.batch(step) for step in range(rounds + 1)]
    for item in batches[0]:  # warm-up: file cache, memory maps
        dataset[item]
    start = time.perf_counter()
    for batch in batches[1:]:
        for item in batch:
            dataset[item]
    return 2 * items * rounds / (time.perf_counter() - start)


def bench_data(work: Path, photos: int, size: int, crop: int, large: int,
               large_size: tuple[int, int], patches: int, patch_size: int,
               rounds: int) -> dict[str, Any]:
    """EXIF indexing and pair loading on a synthetic world (and ``large`` camera-sized JPEGs)."""
    from sdaie.config import Config
    from sdaie.exif.index import build_index, load_index
    from sdaie.synth import make_world

    world = work / "world"
    make_world(world, photos=photos, seed=0, size=size, gen_images=0, bc_train=0, bc_val=0)
    photo_dir = world / "photos"
    cfg = Config()
    out: dict[str, Any] = {"photos": photos, "photo_size": size, "crop_size": crop,
                           "patches_per_image": patches}

    warm = work / "warm"  # one photo first, so the timed runs pay no import or first-use costs
    warm.mkdir()
    shutil.copy(next(iter(sorted(photo_dir.rglob("*.jpg")))), warm)
    build_index(warm, work / "index_warm", cfg, workers=1, crop_size=crop)
    start = time.perf_counter()
    build_index(photo_dir, work / "index_exif", cfg, workers=1)
    out["index_exif_images_per_s"] = photos / (time.perf_counter() - start)
    start = time.perf_counter()
    build_index(photo_dir, work / "index_crops", cfg, workers=1, crop_size=crop)
    out["index_with_crops_images_per_s"] = photos / (time.perf_counter() - start)

    index = load_index(work / "index_crops")
    items = max(2, min(8, len(index.records) // 2))
    out["pairs_shards_images_per_s"] = _loader_rate(index, True, items, patches, patch_size, rounds)
    out["pairs_raw_images_per_s"] = _loader_rate(index, False, items, patches, patch_size, rounds)

    if large:
        sources = sorted(photo_dir.rglob("*.jpg"))[:large]
        make_large_jpegs(sources, work / "large" / "photos", large_size)
        start = time.perf_counter()
        build_index(work / "large" / "photos", work / "large" / "index", cfg, workers=1,
                    crop_size=crop)
        out["index_with_crops_large_images_per_s"] = len(sources) / (time.perf_counter() - start)
        big = load_index(work / "large" / "index")
        items = max(2, len(big.records) // 2)
        out["large_size"] = list(large_size)
        out["pairs_raw_large_images_per_s"] = _loader_rate(big, False, items, patches,
                                                           patch_size, 1)
        out["pairs_shards_large_images_per_s"] = _loader_rate(big, True, items, patches,
                                                              patch_size, 1)
    return out


# --------------------------------------------------------------------------------------------
# One-class GMM and binary evaluation
# --------------------------------------------------------------------------------------------


def synthetic_features(n: int, dim: int, components: int = 5, seed: int = 0) -> Any:
    """Rows from a mixture of correlated Gaussians (so EM has real structure to fit)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(components, size=n)
    x = rng.normal(0, 1, size=(n, dim))
    for k in range(components):
        rows = labels == k
        mixing = rng.normal(0, 0.25, size=(16, dim))  # a low-rank correlated part per component
        x[rows] += rng.normal(0, 3, size=dim) + rng.normal(size=(int(rows.sum()), 16)) @ mixing
    return x


def bench_gmm(n: int, dim: int, components: int, threads: int) -> dict[str, Any]:
    """Seconds of :func:`sdaie.oneclass.gmm.fit_one_class` (fit + threshold) with BLAS limited."""
    from threadpoolctl import threadpool_limits

    from sdaie.oneclass.gmm import fit_one_class

    x = synthetic_features(n, dim, components)
    with threadpool_limits(limits=threads):
        start = time.perf_counter()
        model = fit_one_class(x, components=components)
        seconds = time.perf_counter() - start
    return {"rows": n, "dim": dim, "components": components, "threads": threads,
            "seconds": seconds, "iterations": int(model.gmm.n_iter_),
            "converged": bool(model.gmm.converged_)}


def bc_eval_timings(impl: str, cfg: Any, side: int, rounds: int, threads: int,
                    device: str) -> Timings:
    """One implementation of the binary detector over every grid patch of one image."""
    import numpy as np
    import torch
    from PIL import Image

    from sdaie.models.cpu_memory import keep_freed_memory
    from sdaie.data.patches import grid_patches
    from sdaie.models import BinaryDetector

    keep_freed_memory()  # the stages' runtime (run.keep_freed_memory)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    det = BinaryDetector(replace(cfg, backbone="sdaie", implementation=impl)).eval().to(device)
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)

    def run() -> float:  # what bc_eval does per decoded file
        with torch.inference_mode():
            patches = grid_patches(img, size=cfg.patch_size, cap=40_000,
                                   normalized=False).to(device)
            return float(1 - torch.softmax(det.image_logits(patches), 0)[0])

    return interleaved({impl: run}, rounds, device=device)[impl]


def bench_bc_eval(cfg: Any, sizes: Sequence[int], rounds: int, threads: int,
                  device: str = "cpu", isolate: bool = True,
                  policies: Sequence[str] = ("default",), reps: int = 1) -> list[dict]:
    """Images/s of the binary detector per image size and wait policy, and fast/reference."""
    rows = []
    for policy in policies:
        for side in sizes:
            times = compared(isolate, reps, policy, bc_eval_timings, cfg, side, rounds, threads,
                             device)
            n_patches = max(1, side // cfg.patch_size) ** 2
            keys = {"size": side, "patches": n_patches, "threads": threads, "omp_wait": policy}
            for name, parts in times.items():
                ts = merged(parts)
                med = statistics.median(ts.wall)
                rows.append({**keys, "implementation": name, "seconds": med,
                             "images_per_s": 1 / med, "cpu_seconds": statistics.median(ts.cpu),
                             "system_seconds": statistics.median(ts.system)})
            slow, quick = times["reference"], times["fast"]
            rows.append({**keys, "implementation": "fast/reference",
                         "ratio": pair_ratio(slow, quick),
                         "ratio_cpu": pair_ratio(slow, quick, "cpu")})
    return rows


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (right-aligned numbers), readable in a terminal and pasteable."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(headers)]
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|",
                      *(line(r) for r in body)])


def report(result: dict[str, Any]) -> str:
    """All tables of a result dict (whatever sections it has)."""
    parts = []
    env = result["environment"]
    parts.append(f"CPU: {env['cpu']} ({env['cpu_count']} logical), torch {env['torch']}, "
                 f"threads {env['threads_tested']}, OMP_WAIT_POLICY as given: "
                 f"{env['omp_wait_policy']}, measured under: {env['omp_wait_measured']}, "
                 f"GPU: {env['gpu'] or 'none'}, device {env['device']}")
    model_rows = result.get("extractor", {}).get("rows", []) + result.get("resnet", [])
    if model_rows:
        ratios = result.get("extractor", {}).get("ratios", [])
        ratio = {(r["mode"], r["threads"], r["omp_wait"]): r for r in ratios}
        table = []
        for r in model_rows:
            x = (ratio.get((r["mode"], r["threads"], r["omp_wait"]))
                 if r["implementation"] == "fast" else None)
            table.append([r["backbone"], r["implementation"], r["mode"], r["threads"],
                          r["omp_wait"], r["patches_per_s"], r["patches"] / r["cpu_seconds"],
                          f"{x['fast_over_reference']:.2f}x" if x else "",
                          f"{x['fast_over_reference_cpu']:.2f}x" if x else ""])
        parts.append(format_table(["extractor", "impl", "mode", "threads", "OMP wait",
                                   "patches/s", "patches/cpu-s", "fast/ref", "fast/ref (cpu)"],
                                  table))
    if "data" in result:
        d = result["data"]
        table = [[k.replace("_images_per_s", ""), v] for k, v in d.items() if k.endswith("_per_s")]
        trains = [r for r in model_rows if r["backbone"] == "sdaie" and r["mode"] == "train"
                  and r["implementation"] == "fast"]
        for r in trains:
            table.append([f"train step consumes (fast, {r['threads']} thr, {r['omp_wait']})",
                          r["patches_per_s"] / d["patches_per_image"]])
        parts.append(format_table(["data path", "images/s"], table))
    if "gmm" in result:
        g = result["gmm"]
        parts.append(format_table(["GMM fit", "rows", "dim", "threads", "seconds", "EM iters"],
                                  [["sklearn full x5", g["rows"], g["dim"], g["threads"],
                                    g["seconds"], g["iterations"]]]))
    if "bc_eval" in result:
        table = [[f"{r['size']}x{r['size']}", r["patches"], r["implementation"], r["threads"],
                  r["omp_wait"], r.get("images_per_s", ""),
                  f"{r['ratio']:.2f}x ({r['ratio_cpu']:.2f}x cpu)" if "ratio" in r else ""]
                 for r in result["bc_eval"]]
        parts.append(format_table(["bc_eval image", "patches", "impl", "threads", "OMP wait",
                                   "images/s", "fast/ref"], table))
    parts.append(f"benchmark wall time: {result['wall_seconds']:.0f} s")
    return "\n\n".join(parts)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _size_pair(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdaie bench", description=__doc__.split("\n\n")[0],
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
    from sdaie.config import ModelConfig

    if args.tiny:
        model = ModelConfig(width=8, patch_size=32, depths=[1, 1, 1, 1], transformer_depth=1,
                            attn_heads=2, dim_head=8, mlp_dim=32)
        return dict(model=model, rounds=args.rounds or 1, reps=args.reps or 1, photos=4,
                    size=96, crop=64, large=2,
                    large_size=args.large_size or (256, 192), gmm=(300, 36), bc_sizes=(64, 128),
                    archs=["resnet18"])
    quick = args.quick
    return dict(model=ModelConfig(), rounds=args.rounds or (2 if quick else 4),
                reps=args.reps or (1 if quick else 3),
                photos=16 if quick else 48, size=512, crop=512, large=2 if quick else 6,
                large_size=args.large_size or ((2000, 1500) if quick else (4000, 3000)),
                gmm=(2000, 528) if quick else (10_000, 528), bc_sizes=(256, 1024),
                archs=[a for a in args.resnet_archs.split(",") if a])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections; returns the JSON-ready result."""
    import torch

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
    plan = _plan(args)
    start = time.perf_counter()
    from sdaie.models.cpu_memory import keep_freed_memory

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
        if "extractor" in sections:
            rows, ratios = bench_sdaie(plan["model"], args.batch, args.patches, threads,
                                       plan["rounds"], args.device, not args.no_isolate,
                                       policies, plan["reps"])
            result["extractor"] = {"rows": rows, "ratios": ratios}
        if "resnet" in sections:
            result["resnet"] = bench_resnet(plan["model"], plan["archs"], args.batch,
                                            args.patches, threads, max(1, plan["rounds"] // 2),
                                            args.device, not args.no_isolate)
        torch.set_num_threads(max(threads))
        if "data" in sections:
            with tempfile.TemporaryDirectory(prefix="sdaie-bench-") as tmp:
                result["data"] = bench_data(Path(tmp), plan["photos"], plan["size"], plan["crop"],
                                            plan["large"], plan["large_size"], args.patches,
                                            plan["model"].patch_size, plan["rounds"])
        if "gmm" in sections:
            result["gmm"] = bench_gmm(*plan["gmm"], components=5, threads=max(threads))
        if "bc_eval" in sections:
            result["bc_eval"] = bench_bc_eval(plan["model"], plan["bc_sizes"],
                                              max(1, plan["rounds"] // 2), max(threads),
                                              args.device, not args.no_isolate, policies,
                                              plan["reps"])
    finally:
        torch.set_num_threads(default_threads)
    result["wall_seconds"] = time.perf_counter() - start
    result["environment"]["load_average_end"] = (list(os.getloadavg())
                                                 if hasattr(os, "getloadavg") else None)
    return result


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    result = run(args)
    print(report(result))
    if args.out:
        from sdaie.atomic import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
        print(f"\nwrote {args.out}")
    return 0

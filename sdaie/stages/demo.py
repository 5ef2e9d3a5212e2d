"""``sdaie demo``: the whole method end to end on a synthetic camera world, on a CPU, in minutes.

synthetic world -> EXIF index -> pretext backbone (tiny config) -> one-class GMM -> binary
detector -> evaluation, then the tables. The world also holds spliced sets (camera photos with a
generated region blended in, and their masks): both evaluations localise on them
(``localisation.root``; tables ``*_localisation.md``) and the last step draws a few heatmaps next
to their masks (``heatmaps.png``, docs/heatmaps.md). The spliced sets are extra: the detection
tables are the same with or without them. Each step is the same stage entry point a user runs on
real data (the equivalent commands are printed and saved in ``demo.json``), only with the tiny
configs of ``configs/tiny`` and small data. Deterministic for a seed on a given machine: the same
seed gives the same tables (CPU, fixed thread count).

The synthetic world simulates cameras and three simple "generators"; what the demo shows is that
the code learns what it was built to learn. It says nothing about real cameras or generators.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from sdaie.api import Detector
from sdaie.data.imageio import load_image
from sdaie.exif.index import main as index_main
from sdaie.overlay import figure, render_overlay
from sdaie.stages import backbone_train, bc_eval, bc_train, oc_main
from sdaie.synth import make_world

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "tiny"
MARKER = "demo.json"
STEP_DIRS = ("world", "index", "backbone", "oc", "bc", "bc_eval")
FIGURE = "heatmaps.png"

# Demo sizes on top of configs/tiny (which the tests use as they are): enough data and steps for
# the detectors to separate the simulated generators, still minutes on two CPU cores.
WORLD = {"photos": 240, "size": 128, "gen_images": 40, "bc_train": 160, "bc_val": 40,
         "spliced": 20, "spliced_size": 256}
# Heatmaps of the figure: half-patch stride, each detector in its default context; one spliced
# image per generator, indices 0, 1, 2 so the three region sizes show.
FIGURE_STRIDE_DIVISOR = 2
BACKBONE = ["pretext.steps=600", "pretext.ckpt_every=200", "pretext.log_every=50",
            "data.val_fraction=0.1"]
ONECLASS: list[str] = []
BINARY = ["binary.epochs=3"]
EVAL: list[str] = []


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sdaie demo",
        description="Run SDAIE end to end on a synthetic camera world (CPU, a few minutes) and "
                    "print the one-class and binary tables.")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the world and of every stage (0)")
    p.add_argument("--photos", type=int, default=WORLD["photos"], help="camera photos with EXIF")
    p.add_argument("--gen-images", type=int, default=WORLD["gen_images"],
                   help="images per class in each generator's test set")
    p.add_argument("--size", type=int, default=WORLD["size"], help="image side in pixels")
    p.add_argument("--steps", type=int, default=None, help="pretext steps (default 600)")
    p.add_argument("--epochs", type=int, default=None, help="binary-detector epochs (default 3)")
    p.add_argument("--spliced", type=int, default=WORLD["spliced"],
                   help="per generator: real and spliced images of the localisation sets")
    p.add_argument("--spliced-size", type=int, default=WORLD["spliced_size"],
                   help="side of the spliced sets' images")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: the tiny networks gain nothing from more, and a "
                        "fixed count keeps results reproducible)")
    p.add_argument("--workers", type=int, default=2, help="processes for the world and the index")
    return p


def _prepare(out: Path) -> None:
    """Start clean: refuse a non-empty folder that is not a previous demo's."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SystemExit(f"{out} exists and is not a demo folder; choose another --out")
    for name in (*STEP_DIRS, MARKER, FIGURE):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _stage(label: str, fn: Callable[[list[str]], int], argv: list[str], cli: str,
           record: dict) -> None:
    print(f"\n=== {label}\n$ {cli} {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    code = fn(argv)
    if code:
        raise SystemExit(f"demo: step '{label}' failed with exit code {code}")
    record["steps"].append({"step": label, "command": f"{cli} {' '.join(argv)}",
                            "seconds": round(time.perf_counter() - start, 1)})


def _world_step(world: Path, photos: int, seed: int, size: int, gen_images: int,
                workers: int, spliced: tuple[int, int] = (0, 0),
                ) -> tuple[Callable[[list[str]], int], list[str]]:
    """The synthetic world as a step, and the ``sdaie synth`` arguments that make the same."""
    bc_n = WORLD["bc_train"] if gen_images == WORLD["gen_images"] else 4 * gen_images
    bc_val = max(2, bc_n // 4)

    def synth(_: list[str]) -> int:
        make_world(world, photos=photos, seed=seed, size=size, gen_images=gen_images,
                   bc_train=bc_n, bc_val=bc_val, workers=workers, progress=True,
                   spliced=spliced[0], spliced_size=spliced[1])
        return 0

    return synth, [str(world), "--photos", str(photos), "--seed", str(seed), "--size", str(size),
                   "--gen-images", str(gen_images), "--bc-train", str(bc_n), "--bc-val",
                   str(bc_val), "--spliced", str(spliced[0]), "--spliced-size", str(spliced[1])]


Step = tuple[str, Callable[[list[str]], int], list[str], str]  # label, entry point, argv, CLI


def _stage_steps(out: Path, world: Path, seed: int, steps: int | None,
                 epochs: int | None) -> list[Step]:
    """The four stage steps on the world, with the tiny configs and the demo's sizes."""
    common = [f"run.seed={seed}"]
    pretext = out / "backbone" / "checkpoints" / "last.pt"
    spliced = world / "spliced"
    loc = [f"localisation.root={spliced}"] if (spliced / "images").is_dir() else []
    return [
        ("pretext backbone", backbone_train.main,
         ["--config", str(CONFIGS / "backbone.yaml"), f"data.index={out / 'index'}",
          f"run.out_dir={out / 'backbone'}", *common, *BACKBONE,
          *([f"pretext.steps={steps}"] if steps else [])], "python backbone_train.py"),
        ("one-class detector", oc_main.main,
         ["--config", str(CONFIGS / "oc.yaml"), f"oneclass.checkpoint={pretext}",
          f"oneclass.train_dirs=[{world / 'bc_train' / '0_real'},{world / 'bc_val' / '0_real'}]",
          f"oneclass.test_root={world / 'testsets'}", f"run.out_dir={out / 'oc'}", *common,
          *loc, *ONECLASS], "python oc_main.py"),
        ("binary detector training", bc_train.main,
         ["--config", str(CONFIGS / "bc_train.yaml"), f"binary.pretext_checkpoint={pretext}",
          f"binary.train_root={world / 'bc_train'}", f"binary.val_root={world / 'bc_val'}",
          f"run.out_dir={out / 'bc'}", *common, *BINARY,
          *([f"binary.epochs={epochs}"] if epochs else [])], "python bc_train.py"),
        ("binary detector evaluation", bc_eval.main,
         ["--config", str(CONFIGS / "bc_eval.yaml"),
          f"eval.checkpoint={out / 'bc' / 'checkpoints' / 'last.pt'}",
          f"eval.test_root={world / 'testsets'}", f"run.out_dir={out / 'bc_eval'}", *common,
          *loc, *EVAL], "python bc_eval.py"),
    ]


def run_demo(out: Path, seed: int = 0, photos: int = WORLD["photos"], size: int = WORLD["size"],
             gen_images: int = WORLD["gen_images"], steps: int | None = None,
             epochs: int | None = None, workers: int = 2,
             spliced: tuple[int, int] = (WORLD["spliced"], WORLD["spliced_size"])) -> dict:
    """Run every step into ``out``; returns what ``demo.json`` holds."""
    if not CONFIGS.is_dir():
        raise SystemExit(f"demo: the tiny configs are missing ({CONFIGS}); run from a clone")
    _prepare(out)
    start = time.perf_counter()
    record: dict = {"seed": seed, "out": str(out), "torch_threads": torch.get_num_threads(),
                    "steps": []}
    world = out / "world"
    synth, synth_argv = _world_step(world, photos, seed, size, gen_images, workers, spliced)
    _stage("synthetic world", synth, synth_argv, "sdaie synth", record)
    _stage("EXIF index", index_main, [str(world / "photos"), "--out", str(out / "index"),
                                      "--workers", str(workers), "--no-progress"],
           "sdaie index", record)
    for label, fn, argv, cli in _stage_steps(out, world, seed, steps, epochs):
        _stage(label, fn, argv, cli, record)
    if spliced[0]:
        _stage("heatmap figure", lambda _: heatmap_figure(out, world), [], "(sdaie.api)", record)
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["tables"] = {"one_class": [str(out / "oc" / "oc_metrics.csv"),
                                      str(out / "oc" / "oc_metrics.md")],
                        "binary": [str(out / "bc_eval" / "bc_metrics.csv"),
                                   str(out / "bc_eval" / "bc_metrics.md")]}
    if spliced[0]:
        record["localisation"] = [str(out / "oc" / "oc_localisation.md"),
                                  str(out / "bc_eval" / "bc_localisation.md")]
        record["figure"] = str(out / FIGURE)
    (out / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def heatmap_figure(out: Path, world: Path) -> int:
    """``heatmaps.png``: per generator one spliced image, its mask, and both detectors' maps."""
    bc = Detector.load(out / "bc" / "checkpoints" / "last.pt", device="cpu")
    oc = Detector.load(gmm=out / "oc" / "gmm.npz", device="cpu")
    stride = bc.scorer.patch_size // FIGURE_STRIDE_DIVISOR
    rows, captions = [], []
    for i, gen in enumerate(sorted(p.name for p in (world / "spliced" / "images").iterdir())):
        fakes = sorted((world / "spliced" / "images" / gen / "1_fake").glob("*.jpg"))
        if not fakes:
            continue
        path = fakes[min(i, len(fakes) - 1)]
        img = load_image(path)
        row = [img, load_image(world / "spliced" / "masks" / gen / "1_fake" / f"{path.stem}.png")]
        for det in (bc, oc):
            r = det.score_image(img, str(path), det.map_spec(stride))
            row.append(render_overlay(img, r["heatmap"], r["heatmap"].regions()))
        rows.append(row)
        captions.append(f"{gen} {path.name}")
    titles = ["spliced image", "mask (generated)", "binary detector", "one-class detector"]
    figure(rows, captions, titles).save(out / FIGURE)
    print(f"wrote {out / FIGURE}")
    return 0


def _print_summary(out: Path, record: dict) -> None:
    for name in ("oc/oc_metrics.md", "bc_eval/bc_metrics.md"):
        print("\n" + (out / name).read_text(encoding="utf-8"))
    for name in record.get("localisation", []):
        print("\n" + Path(name).read_text(encoding="utf-8"))
    print("Where everything is:")
    where = [("world", "synthetic photos, test sets, bc_train/bc_val, world.json"),
             ("index", "EXIF index (index.jsonl, vocab.json, summary.json)"),
             ("backbone", "pretext checkpoints/, train_log.csv, val_log.csv, val_metrics.json"),
             ("oc", "gmm.npz, oc_metrics.csv/.md, report.md + plots/, scores/, cache/, "
                    "oc_localisation.csv/.md + localisation/ (spliced sets vs their masks)"),
             ("bc", "binary checkpoints/, train_log.csv, val_log.csv (random-patch validation)"),
             ("bc_eval", "bc_metrics.csv/.md, report.md + plots/, scores/, "
                         "bc_localisation.csv/.md + localisation/")]
    for sub, what in where:
        print(f"  {out / sub}/  {what}")
    print(f"  {out / MARKER}  the commands of every step and their times")
    if "figure" in record:
        print(f"  {record['figure']}  heatmaps of a few spliced images next to their masks")
    print("\nTimes: " + ", ".join(f"{s['step']} {s['seconds']:.0f}s" for s in record["steps"])
          + f"; total {record['seconds']:.0f} s")
    print("The synthetic world tests the code, not the method's merit on real cameras or generators.")


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    out = Path(args.out)
    record = run_demo(out, args.seed, args.photos, args.size, args.gen_images, args.steps,
                      args.epochs, args.workers, (args.spliced, args.spliced_size))
    _print_summary(out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())

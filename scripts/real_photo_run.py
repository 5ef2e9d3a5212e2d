"""The README's real-photo run: the pretext task on a folder of real camera photos, on a CPU.

    uv run python scripts/real_photo_run.py ../shared/data/photos-cc0 --out runs/real

1. ``sdaie index`` the photos (with 512-px crop shards);
2. ``backbone_train`` with the tiny configuration, a seeded split by photo
   (``data.val_fraction``): the held-out photos are other shots of the same cameras, scored at every
   checkpoint (all-pairs ranking accuracy, top-1 with the majority baseline);
3. the synthetic generators' images at the photos' size (``sdaie.synth``, no camera photos);
4. ``oc_main`` with ``configs/oc_small_cpu.yaml`` (one full-covariance component: the paper's five
   need thousands of images): a GMM on the training photos' features, tested on the held-out
   photos (0_real) against each synthetic generator (1_fake).

Every step is the public entry point a user would run; the script only wires folders together and
prints the two tables. The figures say how far a few CPU minutes get on a small photo set; they are
not the paper's results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch

from sdaie.data.pairs import split_by_photo
from sdaie.exif.index import load_index
from sdaie.exif.index import main as index_main
from sdaie.stages import backbone_train, oc_main
from sdaie.synth import make_world

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny"
OC_SMALL = ROOT / "configs" / "oc_small_cpu.yaml"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photos", help="folder of real camera photos with EXIF")
    p.add_argument("--out", default="runs/real", help="output folder (default runs/real)")
    p.add_argument("--steps", type=int, default=600, help="pretext steps (default 600)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out photos (0.2)")
    p.add_argument("--components", type=int, default=None,
                   help="GMM components (default: the config's, 1; the spec's 5 need thousands "
                        "of images)")
    p.add_argument("--gen-images", type=int, default=42, help="images per synthetic generator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # file systems without symlinks
        shutil.copy2(src, dst)


def one_class_tree(index_dir: Path, synth_tests: Path, out: Path, val_fraction: float,
                   seed: int) -> tuple[Path, Path]:
    """``train_real/`` (the pretext training photos) and ``tests/<gen>/{0_real,1_fake}``."""
    index = load_index(index_dir)
    train_ids, val_ids = split_by_photo(len(index.records), val_fraction, seed)  # as backbone_train
    shutil.rmtree(out, ignore_errors=True)
    for i in train_ids:
        path = index.image_path(int(i))
        _link_or_copy(path, out / "train_real" / path.name)
    for gen in sorted(p.name for p in synth_tests.iterdir() if p.is_dir()):
        for i in val_ids:
            path = index.image_path(int(i))
            _link_or_copy(path, out / "tests" / gen / "0_real" / path.name)
        for f in sorted((synth_tests / gen / "1_fake").iterdir()):
            _link_or_copy(f, out / "tests" / gen / "1_fake" / f.name)
    return out / "train_real", out / "tests"


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    index_dir = out / "index"
    if index_main([args.photos, "--out", str(index_dir), "--workers", "2", "--crops", "512"]) != 0:
        return 1
    sizes = {tuple(r["size"]) for r in map(json.loads, open(index_dir / "index.jsonl"))}
    side = min(min(s) for s in sizes)

    bb = out / "backbone"
    backbone_train.main(["--config", str(TINY / "backbone.yaml"), f"data.index={index_dir}",
                         f"run.out_dir={bb}", f"run.seed={args.seed}", f"pretext.steps={args.steps}",
                         "pretext.batch_size=16", "data.patches=8", "data.source=shards",
                         f"data.val_fraction={args.val_fraction}", "pretext.ckpt_every=200",
                         "pretext.log_every=50"])
    make_world(out / "synth", photos=0, seed=args.seed, size=side, gen_images=args.gen_images,
               bc_train=0, bc_val=0, force=True)
    train_dir, tests = one_class_tree(index_dir, out / "synth" / "testsets", out / "oc_data",
                                      args.val_fraction, args.seed)
    components = [] if args.components is None else [f"oneclass.components={args.components}"]
    oc_main.main(["--config", str(OC_SMALL), f"oneclass.checkpoint={bb / 'checkpoints' / 'last.pt'}",
                  f"oneclass.train_dirs=[{train_dir}]", f"oneclass.test_root={tests}",
                  *components, f"run.out_dir={out / 'oc'}"])

    val = json.loads((bb / "val_metrics.json").read_text())
    print(f"\nHeld-out photos: {val.get('photos')} (step {val.get('step')})")
    print("| head | kind | held-out accuracy | baseline | count |\n|---|---|---:|---:|---:|")
    for name, h in val["heads"].items():
        print(f"| {name} | {h['kind']} | {h['accuracy']:.3f} | {h.get('baseline', 0.5):.3f} | "
              f"{h.get('count', '')} |")
    print("\n" + (out / "oc" / "oc_metrics.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

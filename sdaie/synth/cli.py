"""``sdaie synth OUT``: write the synthetic camera world (see :mod:`sdaie.synth.world`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from sdaie.synth.world import make_world


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sdaie synth",
        description="Write a deterministic synthetic camera world: camera photos with EXIF, "
                    "generator test sets and binary-detector training folders. Results on it say "
                    "nothing about real cameras or generators.")
    p.add_argument("out", help="output folder")
    p.add_argument("--photos", type=int, default=300, help="camera photos with EXIF in OUT/photos (300)")
    p.add_argument("--seed", type=int, default=0, help="world seed; same seed -> same bytes (0)")
    p.add_argument("--size", type=int, default=192, help="image side in pixels, even, >= 64 (192)")
    p.add_argument("--gen-images", type=int, default=100,
                   help="images per class in each generator test set (100)")
    p.add_argument("--bc-train", type=int, default=None,
                   help="images per class in OUT/bc_train (default: --gen-images)")
    p.add_argument("--bc-val", type=int, default=None,
                   help="images per class in OUT/bc_val (default: a quarter of --bc-train)")
    p.add_argument("--spliced", type=int, default=0,
                   help="per generator: camera photos and as many spliced photos (a generated "
                        "region blended in) with ground-truth masks, in OUT/spliced (0)")
    p.add_argument("--spliced-size", type=int, default=None,
                   help="side of the spliced set's images (default: --size)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes (the output does not depend on it)")
    p.add_argument("--force", action="store_true", help="replace an existing world in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        info = make_world(args.out, photos=args.photos, seed=args.seed, size=args.size,
                          gen_images=args.gen_images, bc_train=args.bc_train, bc_val=args.bc_val,
                          workers=args.workers, force=args.force, progress=not args.quiet,
                          spliced=args.spliced, spliced_size=args.spliced_size)
    except (ValueError, FileExistsError) as exc:
        print(f"sdaie synth: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    n = info.counts["total_images"]
    print(f"wrote {n} images ({info.counts['photos']} photos with EXIF, "
          f"{len(info.generators)} generator test sets, bc_train/bc_val"
          + (f", spliced sets of {info.counts['spliced_size']} px" if info.counts.get("spliced") else "")
          + f") of {info.size} px "
          f"to {info.root} in {seconds:.1f} s ({n / max(seconds, 1e-9):.0f} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Test helper (not collected): ``backbone_train`` under torchrun with one misbehaving rank.

    python -m torch.distributed.run --nproc_per_node=2 _rank_fault.py MODE RANK [arguments...]

MODE ``raise``: rank RANK fails reading its index (``FileNotFoundError`` for
``/nonexistent/index``) after joining the process group (a missing ``data.index`` itself is refused
before any group is set up). MODE ``hang``: rank RANK joins the group and then stalls forever before the first
collective. The fault injection lives here, in the tests, not in the package.
"""

import os
import sys
import time


def main() -> int:
    mode, bad_rank, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if int(os.environ.get("RANK", "0")) == bad_rank:
        import sdaie.exif.index

        def fail(*args, **kwargs):
            raise FileNotFoundError("/nonexistent/index/summary.json")

        def stall(*args, **kwargs):
            time.sleep(3600)

        # called by train() after the group is set up
        sdaie.exif.index.load_index = fail if mode == "raise" else stall
    from sdaie.stages.backbone_train import main as train

    return train(argv)


if __name__ == "__main__":
    sys.exit(main())

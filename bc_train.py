"""Same as `sdaie bc-train`: see sdaie/stages/bc_train.py (torchrun-ready, importable)."""
import sys

from sdaie.stages.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("bc_train"))

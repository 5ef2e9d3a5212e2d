"""Same as `sdaie backbone-train`: see sdaie/stages/backbone_train.py (torchrun-ready, importable)."""
import sys

from sdaie.stages.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("backbone_train"))

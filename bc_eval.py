"""Same as `sdaie bc-eval`: see sdaie/stages/bc_eval.py (torchrun-ready, importable)."""
import sys

from sdaie.stages.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("bc_eval"))

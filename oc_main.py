"""Same as `sdaie oc`: see sdaie/stages/oc_main.py (torchrun-ready, importable)."""
import sys

from sdaie.stages.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("oc_main"))

"""Same as `sdaie bench`: see sdaie/benchmarks/cli.py (speed figures of the README, table + JSON)."""
import sys

from sdaie.benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())

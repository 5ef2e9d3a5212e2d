"""Peak memory (PSS) of a torchrun job per index size: see sdaie/benchmarks/ranks.py."""
import sys

from sdaie.benchmarks.ranks import main

if __name__ == "__main__":
    sys.exit(main())

"""The glibc allocator settings: applied once, and they do what they are for."""

import subprocess
import sys
import textwrap

import pytest

from sdaie.models.cpu_memory import keep_freed_memory


def test_applies_once_and_reports_the_same_answer():
    first = keep_freed_memory()
    assert keep_freed_memory() is first


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_blocks_are_recycled_instead_of_faulted_in_again():
    # A train step's pattern: many blocks allocated (a forward pass), then all freed. By default
    # glibc returns the freed heap top beyond its trim threshold to the kernel, so every round
    # faults the pages in again; kept, later rounds fault nothing.
    code = textwrap.dedent("""
        import resource, sys
        import numpy as np
        if sys.argv[1] == "keep":
            from sdaie.models.cpu_memory import keep_freed_memory
            assert keep_freed_memory()
        for i in range(5):
            if i == 2:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            blocks = [np.ones(2 * 1024 * 1024, dtype=np.float32) for _ in range(16)]  # 128 MB
            del blocks
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """)
    faults = {mode: int(subprocess.run([sys.executable, "-c", code, mode], check=True,
                                       capture_output=True, text=True).stdout)
              for mode in ("default", "keep")}
    assert faults["default"] > 10_000  # 3 rounds of 16 x 8 MB = 98,304 pages touched
    assert faults["keep"] < 1000

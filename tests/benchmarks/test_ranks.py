"""PSS of a torchrun job: the process tree, the linked index, and a tiny 2-rank run end to end."""

import json
import os
import subprocess
import sys

import pytest

from sdaie.benchmarks.ranks import _tree, linked_index, main, peak_pss
from sdaie.config import load_config
from sdaie.data.imageio import load_image
from sdaie.exif.schema import Schema
from sdaie.exif.store import load_index

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"),
                                reason="Linux /proc only")


def test_the_tree_holds_children_and_grandchildren(tmp_path):
    code = ("import subprocess, sys, time; "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
            "print(c.pid, flush=True); time.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(proc.stdout.readline())
        assert set(_tree(proc.pid)) == {proc.pid, grandchild}
        assert os.getpid() not in _tree(proc.pid)
    finally:
        subprocess.run(["pkill", "-P", str(proc.pid)], check=False)
        proc.kill()
        proc.wait()


def test_peak_pss_of_a_process_that_grows(tmp_path):
    code = "import time; x = bytearray(300 * 2**20); time.sleep(1.5)"  # 300 MB, touched
    result = peak_pss([sys.executable, "-c", code], dict(os.environ), tmp_path, tmp_path / "log")
    assert result["returncode"] == 0 and result["processes"] == 1
    assert 300 <= result["pss_mb"] < 400


def test_linked_index_photos_are_readable(tmp_path):
    vocab = Schema(load_config().schema.heads).to_vocab()
    index = load_index(linked_index(tmp_path, 40, vocab))
    assert len(index) == 40 and load_image(index.image_path(39)).size == (96, 96)
    assert os.stat(index.image_path(0)).st_ino == os.stat(index.image_path(16)).st_ino


@pytest.mark.slow
def test_a_tiny_two_rank_job_is_measured(tmp_path):
    out = tmp_path / "pss.json"
    assert main(["--photos", "60", "--ranks", "2", "--workers", "1", "--steps", "2",
                 "--batch", "2", "--work", str(tmp_path / "w"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (row,) = result["rows"]  # launcher + 2 ranks (+ their workers) at the peak
    assert row["returncode"] == 0 and row["processes"] >= 3 and row["pss_mb"] > 100
    assert len(row["rss_mb"]) == row["processes"]
    assert (tmp_path / "w" / "run_60" / "checkpoints" / "last.pt").exists()

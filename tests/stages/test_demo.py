import json

import pytest
import torch
from PIL import Image

from sdaie.stages import demo


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()  # the demo fixes its thread count (1 by default)
    yield
    torch.set_num_threads(before)


def _run(out):
    return demo.main(["--out", str(out), "--seed", "3", "--photos", "16", "--gen-images", "3",
                      "--size", "64", "--steps", "4", "--epochs", "1", "--workers", "1",
                      "--spliced", "1", "--spliced-size", "96"])


def _tables(out):
    texts = []
    for name in ("oc/oc_metrics", "bc_eval/bc_metrics", "oc/oc_localisation",
                 "bc_eval/bc_localisation"):
        texts.append((out / f"{name}.csv").read_text())
        md = (out / f"{name}.md").read_text().splitlines()
        texts.append("\n".join(line for line in md
                               if not line.startswith(("- checkpoint:", "- sets:"))))
    return texts


def test_demo_runs_end_to_end_and_is_deterministic(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(a) == 0
    printed = capsys.readouterr().out
    assert "# One-class detector" in printed and "# Binary detector" in printed
    assert "Where everything is" in printed
    record = json.loads((a / "demo.json").read_text())
    assert [s["step"] for s in record["steps"]] == [
        "synthetic world", "EXIF index", "pretext backbone", "one-class detector",
        "binary detector training", "binary detector evaluation", "heatmap figure"]
    assert Image.open(a / "heatmaps.png").size[0] > 4 * 256  # image, mask, two overlays
    assert "# One-class detector: localisation" in printed
    assert _run(b) == 0
    tables_a = _tables(a)
    assert tables_a == _tables(b)
    assert "| upconv |" in tables_a[1] and "| smooth |" in tables_a[3]
    # re-running into the same folder replaces the previous demo
    assert _run(a) == 0 and _tables(a) == tables_a

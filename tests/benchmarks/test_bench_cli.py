"""`sdaie bench` end to end: a tiny run of every section, and its argument checks."""

import ast
import json
from pathlib import Path

import pytest

from sdaie.benchmarks.cli import SECTIONS, main


def test_unknown_section_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="unknown section"):
        main(["--tiny", "--sections", "extractor,warp"])


def test_tiny_benchmark_writes_every_section(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--tiny", "--threads", "1", "--no-isolate", "--omp-wait", "default",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(SECTIONS) <= set(result)
    env = result["environment"]
    assert env["torch"] and env["cpu"] and env["threads_tested"] == [1]
    rows = result["extractor"]["rows"]
    assert {(r["implementation"], r["mode"]) for r in rows} == {
        (i, m) for i in ("reference", "fast") for m in ("inference", "train")}
    assert all(r["patches_per_s"] > 0 for r in rows + result["resnet"])
    assert all(r["fast_over_reference"] > 0 and r["fast_over_reference_cpu"] > 0
               for r in result["extractor"]["ratios"])
    data = result["data"]
    for key in ("index_exif_images_per_s", "index_with_crops_images_per_s",
                "pairs_shards_images_per_s", "pairs_raw_images_per_s",
                "pairs_raw_large_images_per_s"):
        assert data[key] > 0, key
    assert result["gmm"]["seconds"] > 0 and result["gmm"]["iterations"] >= 1
    assert {r["size"] for r in result["bc_eval"]} == {64, 128}
    maps = {(r["detector"], r["size"], r["variant"]): r for r in result["heatmap"]}
    assert set(maps) == {(d, s, v) for d in ("bc", "oc") for s in (64, 128)
                         for v in ("detect", "heatmap stride 32", "heatmap stride 16")}
    assert maps[("bc", 128, "heatmap stride 16")]["patches"] == 49  # 4 x 4 grid, half stride
    assert all(r["over_detect"] > 0 for r in maps.values())
    printed = capsys.readouterr().out
    assert "fast/ref" in printed and "pairs_shards" in printed and "GMM fit" in printed
    assert "over detect" in printed


def test_unknown_wait_policy_is_a_clear_error():
    with pytest.raises(SystemExit, match="omp-wait"):
        main(["--tiny", "--sections", "gmm", "--omp-wait", "spin"])


def test_a_wait_policy_is_measured_in_fresh_processes(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["--tiny", "--threads", "1", "--sections", "extractor", "--omp-wait", "passive",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["environment"]["omp_wait_measured"] == ["passive"]
    assert {(r["implementation"], r["mode"], r["omp_wait"])
            for r in result["extractor"]["rows"]} == {
        (i, m, "passive") for i in ("reference", "fast") for m in ("inference", "train")}
    assert all(len(r["pairs"]) == 1 for r in result["extractor"]["ratios"])
    with pytest.raises(SystemExit, match="no-isolate"):
        main(["--tiny", "--no-isolate", "--sections", "extractor", "--omp-wait", "passive"])


def test_no_core_module_imports_the_benchmarks():
    """Benchmarks are tooling: only the command table names them, as a string."""
    root = Path(__file__).resolve().parents[2] / "sdaie"
    importers = []
    for path in root.rglob("*.py"):
        if path.is_relative_to(root / "benchmarks"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "sdaie.benchmarks" or n.startswith("sdaie.benchmarks.") for n in names):
                importers.append(path.relative_to(root).as_posix())
    assert importers == []

"""The benchmark itself: a tiny end-to-end run, and its measuring and formatting helpers."""

import json
import os

import pytest

from sdaie.bench import (SECTIONS, Timings, compared, format_table, interleaved, isolated, main,
                         merged, pair_ratio)


def test_pair_ratio_is_the_median_over_pairs_of_median_round_ratios():
    slow = [Timings(wall=[4.0, 5.0, 6.0]), Timings(wall=[9.0]), Timings(wall=[2.0, 2.0])]
    fast = [Timings(wall=[2.0, 3.0, 2.0]), Timings(wall=[3.0]), Timings(wall=[2.0, 4.0])]
    assert pair_ratio(slow, fast) == 2.5  # per pair: 5/2, 9/3, 2/3
    assert merged(slow).wall == [4.0, 5.0, 6.0, 9.0, 2.0, 2.0]


def test_compared_alternates_one_implementation_per_call():
    calls = []

    def timing(impl, tag):
        calls.append((impl, tag))
        return Timings(wall=[1.0 if impl == "fast" else 3.0])

    times = compared(False, 2, "default", timing, "x")
    assert calls == [("reference", "x"), ("fast", "x")] * 2
    assert pair_ratio(times["reference"], times["fast"]) == 3.0


def test_interleaved_alternates_and_counts_calls():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                        rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert [(len(v.wall), len(v.cpu)) for v in times.values()] == [(3, 3), (3, 3)]
    assert all(t >= 0 for v in times.values() for t in v.wall + v.cpu)


def test_format_table_aligns_columns():
    text = format_table(["name", "value"], [["x", 1234.5], ["long name", 0.25]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # every line the same width
    assert "1,234.5" in text and "0.25" in text and lines[1].startswith("|-")


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
    printed = capsys.readouterr().out
    assert "fast/ref" in printed and "pairs_shards" in printed and "GMM fit" in printed


def test_isolated_sets_the_wait_policy_in_the_child_only(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert isolated(True, os.getenv, "OMP_WAIT_POLICY", omp_wait="passive") == "PASSIVE"
    assert isolated(True, os.getenv, "OMP_WAIT_POLICY") is None  # "default": as given
    assert "OMP_WAIT_POLICY" not in os.environ
    with pytest.raises(ValueError, match="isolated"):
        isolated(False, os.getenv, "OMP_WAIT_POLICY", omp_wait="passive")


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

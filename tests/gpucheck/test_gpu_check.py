"""``sdaie gpu-check --cpu`` end to end (so the GPU node's check cannot rot), and its parts.

The whole check runs once per session, in process, into a temporary folder: every section must
be filled, nothing may fail, and what only a GPU can show must say "skipped: no CUDA".
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sdaie.gpucheck import cli
from sdaie.gpucheck.loader import workers_needed
from sdaie.gpucheck.report import NO_CUDA, Section, markdown, table

SECTIONS = ["environment", "correctness", "throughput", "loader", "pipeline", "ddp"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[int, Path]:
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine: run `sdaie gpu-check` itself")
    out = tmp_path_factory.mktemp("gpu_check")
    threads = torch.get_num_threads()
    try:
        code = cli.main(["--cpu", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return code, out


@pytest.mark.slow
def test_cpu_check_passes_and_fills_every_section(report):
    code, out = report
    data = json.loads((out / "gpu_check.json").read_text())
    assert code == 0 and data["verdict"] == "all checks passed" and data["mode"] == "cpu"
    sections = {s["key"]: s for s in data["sections"]}
    assert list(sections) == SECTIONS
    for key, s in sections.items():
        assert s["status"] == "ok" and s["summary"] and s["rows"], key
    md = (out / "gpu_check.md").read_text()
    assert all(f"## {s['title']}" in md for s in sections.values())


@pytest.mark.slow
def test_gpu_only_parts_say_skipped_no_cuda(report):
    _, out = report
    md = (out / "gpu_check.md").read_text()
    data = json.loads((out / "gpu_check.json").read_text())
    rows = {s["key"]: s["rows"] for s in data["sections"]}
    assert any(r.get("result") == NO_CUDA and "CPU vs device" in r["check"]
               for r in rows["correctness"])
    assert f"nvjpeg (GPU): vs Pillow {NO_CUDA}" in md


@pytest.mark.slow
def test_cpu_check_measures_what_the_node_needs(report):
    _, out = report
    data = {s["key"]: s for s in json.loads((out / "gpu_check.json").read_text())["sections"]}
    throughput = data["throughput"]["rows"]
    assert {r["variant"] for r in throughput} >= {"fp32, reference (NCHW)", "AMP bf16, fast"}
    assert all(r["correct"] is True and r["pairs_per_s"] > 0 for r in throughput)
    assert "select it with `" in data["throughput"]["summary"]
    loader = {(r["source"], r["decoder"]): r for r in data["loader"]["rows"]}
    assert set(loader) == {("photo", "pil"), ("photo", "torchvision"), ("shards", "pil")}
    assert all(r["images/s, 0 workers"] > 0 and r["workers per GPU needed"] >= 1
               for r in loader.values())
    decoders = data["loader"]["facts"]["decoders"]
    assert decoders[0]["decoder"] == "torchvision (CPU)" and decoders[0]["max |diff|"] == 0
    ranks = data["ddp"]["rows"]
    assert len(ranks) == 2 and ranks[0]["sha256"] == ranks[1]["sha256"]
    assert all(r["steps"] == 20 for r in ranks)
    assert [r["exit"] for r in data["pipeline"]["rows"]] == [0] * 7


def test_a_failed_check_makes_the_command_fail(tmp_path, monkeypatch):
    from sdaie.gpucheck import correctness

    monkeypatch.setitem(correctness.TOLERANCES, "fp32", 0.0)  # nothing is that exact
    monkeypatch.setattr(correctness, "max_rel", lambda a, b: 1e-7)
    threads = torch.get_num_threads()
    try:
        code = cli.main(["--cpu", "--out", str(tmp_path), "--sections", "environment,correctness"])
    finally:
        torch.set_num_threads(threads)
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 1 and data["verdict"] == "FAILED: correctness"
    assert [s["status"] for s in data["sections"]] == ["ok", "fail", "skipped", "skipped",
                                                       "skipped", "skipped"]


def test_options_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit, match="unknown \\['gpu'\\]"):
        cli.main(["--cpu", "--out", str(tmp_path), "--sections", "gpu"])
    with pytest.raises(SystemExit, match="WxH"):
        cli.main(["--cpu", "--out", str(tmp_path), "--photo-size", "big"])
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "mine.txt").write_text("keep")
    with pytest.raises(SystemExit, match="not a gpu-check's"):
        cli.main(["--cpu", "--out", str(tmp_path), "--sections", "environment"])
    assert (tmp_path / "work" / "mine.txt").read_text() == "keep"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine")
def test_without_cuda_the_gpu_check_says_to_use_cpu(tmp_path):
    with pytest.raises(SystemExit, match="no CUDA device.*sdaie gpu-check --cpu"):
        cli.main(["--out", str(tmp_path), "--sections", "environment"])


def test_workers_needed_uses_the_best_rate_per_worker():
    assert workers_needed({0: 10.0, 2: 30.0, 4: 40.0}, 100.0) == 7  # 15 images/s per worker
    assert workers_needed({0: 50.0}, 100.0) == 2
    assert workers_needed({}, 100.0) is None


def test_markdown_tables_and_sections():
    assert table([{"a": 1.5, "b": "x|y"}, {"a": 0.001, "c": 3}]) == [
        "| a | b | c |", "|---|---|---|", "| 1.50 | x/y |  |", "| 0.001 |  | 3 |"]
    md = markdown({"mode": "cpu", "verdict": "all checks passed", "seconds": 3.0, "command": "c"},
                  [Section("k", "Title", "skipped", "skipped: no CUDA", notes=["n"])])
    assert "## Title\n\n**skipped** (0.0 s): skipped: no CUDA\n\n- n\n" in md


class _Items(torch.utils.data.Dataset):
    """Stands in for PairDataset: a batch item costs nothing, so the loop runs as on a big node."""

    def __init__(self, index, positions, **kw):
        pass

    def __getitem__(self, item):
        return torch.zeros(1), []


def test_the_loader_timing_outruns_any_step_cap(monkeypatch):
    """A node that loads more than 10,000 batches in the time budget must not stop the check."""
    from sdaie.gpucheck import loader

    clock = iter(range(1_000_000))  # 1 s per read: the loop runs while under budget_s reads
    monkeypatch.setattr(loader, "PairDataset", _Items)
    monkeypatch.setattr(loader, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    rate = loader.loader_rate([0] * 4, "jpeg", "pil", 0, None, budget_s=12_000)
    assert rate == pytest.approx(2 * loader.LOADER_PAIRS, rel=1e-3)


def test_the_plan_counts_the_cores_this_process_may_use(monkeypatch):
    from sdaie.gpucheck import plan

    monkeypatch.setattr(plan.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(plan.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert plan.make_plan(False, torch.device("cuda")).workers == (0, 2)

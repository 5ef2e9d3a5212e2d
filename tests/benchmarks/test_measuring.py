"""Timing helpers of the benchmarks: rounds, fresh processes, pair ratios."""

import os

import pytest

from sdaie.benchmarks.measuring import Timings, compared, interleaved, isolated, merged, pair_ratio


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


def test_isolated_sets_the_wait_policy_in_the_child_only(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert isolated(True, os.getenv, "OMP_WAIT_POLICY", omp_wait="passive") == "PASSIVE"
    assert isolated(True, os.getenv, "OMP_WAIT_POLICY") is None  # "default": as given
    assert "OMP_WAIT_POLICY" not in os.environ
    with pytest.raises(ValueError, match="isolated"):
        isolated(False, os.getenv, "OMP_WAIT_POLICY", omp_wait="passive")

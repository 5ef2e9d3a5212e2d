"""Benchmark tables."""

from sdaie.benchmarks.report import format_table


def test_format_table_aligns_columns():
    text = format_table(["name", "value"], [["x", 1234.5], ["long name", 0.25]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # every line the same width
    assert "1,234.5" in text and "0.25" in text and lines[1].startswith("|-")

"""The parse journal read by offsets: latest line per file, torn lines, streamed compaction."""

import json

from sdaie.exif import journal as journal_module
from sdaie.exif.journal import NO_LINE, EntryReader, Journal, compact, latest_lines


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_latest_line_wins_and_torn_or_foreign_lines_are_passed_over(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        first = j.log([{"path": "a", "v": 1}, {"path": "b", "v": 1}])
    with open(path, "a") as fh:
        fh.write('["not", "an", "entry"]\n{"path": "a", "v"')  # a killed run's torn line
    with Journal(path) as j:  # the torn line is closed: the next entry gets a line of its own
        later = j.log([{"path": "a", "v": 2}, {"path": "gone", "v": 1}])
    seen = []
    offsets = latest_lines(path, ["a", "b", "c"], lambda k, e: seen.append((k, e["v"])))
    assert list(offsets) == [later[0], first[1], NO_LINE]
    assert seen == [(0, 1), (1, 1), (0, 2)]  # journal order: the last visit is the latest
    read = EntryReader(path)
    assert read(offsets[0]) == {"path": "a", "v": 2} and read(offsets[1]) == {"path": "b", "v": 1}
    read.close()
    assert list(latest_lines(tmp_path / "none.jsonl", ["a"])) == [NO_LINE]


def test_equal_lookup_keys_are_told_apart_by_the_path(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "_key", lambda s: 7)  # every path collides
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        offs = j.log([{"path": p} for p in ("x", "y", "z", "y")])
    assert list(latest_lines(path, ["z", "y", "x", "w"])) == [offs[2], offs[3], offs[0], NO_LINE]


def test_compact_keeps_the_given_lines_in_the_given_order(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        offs = j.log([{"path": "b", "v": 1}, {"path": "a", "v": 1}, {"path": "b", "v": 2},
                      {"path": "old", "v": 1}])
    compact(path, [offs[1], NO_LINE, offs[2]])
    assert lines(path) == [{"path": "a", "v": 1}, {"path": "b", "v": 2}]
    assert [p.name for p in tmp_path.iterdir()] == ["j.jsonl"]

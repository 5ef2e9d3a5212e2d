"""What needs work, and the worker pool: tasks made lazily, a bounded window in flight, and a
broken pool finished in this process."""

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pytest

from sdaie.config import load_config
from sdaie.exif import scan
from sdaie.exif.journal import Journal
from sdaie.exif.reader import READER_VERSION
from sdaie.exif.scan import Task, plan_tasks, run_tasks, survey
from sdaie.exif.schema import Schema

HEADS = load_config().schema.heads


class InlinePool:
    """A stand-in for the process pool that runs each chunk at once; ``broken_after`` chunks."""

    def __init__(self, *args, broken_after=None, submitted=None, **kwargs):
        self.broken_after, self.submitted = broken_after, submitted
        scan._init_worker(HEADS)

    def submit(self, fn, batch):
        future = Future()
        self.submitted.append(len(batch))
        if self.broken_after is not None and len(self.submitted) > self.broken_after:
            future.set_exception(BrokenProcessPool("a worker died"))
        else:
            future.set_result(fn(batch))
        return future

    def shutdown(self, wait, cancel_futures):
        pass


def tasks_of(n, pulled):
    for i in range(n):
        pulled.append(i)
        yield Task(f"/nowhere/{i}.jpg", f"{i}.jpg", True, None, i)


@pytest.mark.parametrize("broken_after", [None, 3])
def test_the_pool_pulls_a_bounded_window_and_a_broken_pool_finishes_here(monkeypatch, capsys,
                                                                        broken_after):
    submitted, pulled = [], []
    monkeypatch.setattr(scan, "ProcessPoolExecutor", lambda *a, **k: InlinePool(
        broken_after=broken_after, submitted=submitted))
    n, workers = 400, 2
    results = run_tasks(tasks_of(n, pulled), n, HEADS, workers, progress=False)
    first = next(results)
    chunk = max(1, min(64, n // (workers * 8)))  # 25
    # 8 chunks in flight, one more submitted when the first came back: 225 of the 400 pulled
    assert first[0].pos == 0 and len(pulled) == (workers * 4 + 1) * chunk
    rest = list(results)
    assert [t.pos for t, _ in [first, *rest]] == list(range(n))  # every task once, in order
    assert all(r[0] == t.rel and r[3] == "skip" and "error" in r[1] for t, r in [first, *rest])
    if broken_after is not None:
        assert "continuing in this process" in capsys.readouterr().err
        # 8 chunks in flight at first, one more after each of the 3 that came back: the other
        # 8 (broken) were handed back and run here with everything not yet pulled
        assert len(submitted) == broken_after + workers * 4


def test_photos_are_listed_as_relative_strings_in_string_order(tmp_path, kit):
    photos = tmp_path / "photos"
    kit.make_good(photos / "a-b", 1)
    kit.make_good(photos / "a", 1)
    (photos / "notes.txt").write_text("x")
    rels, listing = scan.list_photos(photos)
    assert rels == sorted(rels) and all(isinstance(r, str) for r in rels)
    assert rels[0].startswith("a-b/") and rels[1].startswith("a/")  # '-' < '/': not Path order
    assert dict(listing.ignored) == {".txt": 1}


def test_survey_reuses_fresh_entries_and_plans_the_rest(tmp_path, kit):
    photos = tmp_path / "photos"
    good = kit.make_good(photos, 3)
    rels = sorted(good)
    schema = Schema(HEADS)
    journal = tmp_path / "j.jsonl"
    st = (photos / rels[0]).stat()
    with Journal(journal) as j:  # rels[0] cached and fresh, rels[1] cached but changed since
        j.log([{"path": rels[0], "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                "reader": READER_VERSION, "tags": {"Make": "Canon"},
                "error": None},
               {"path": rels[1], "bytes": 1, "mtime_ns": 1, "reader": 1, "tags": {}}])
    files = survey(photos, [*rels, "vanished.jpg"], journal, schema, crop_size=16)
    assert list(files.fresh) == [True, False, False, False] and files.errors.keys() == {3}
    assert list(files.crop_todo) == [True, False, False, False]  # fresh, labelled, no crop yet
    total, tasks = plan_tasks(files, 16)
    planned = [(t.rel, t.parse, t.pos) for t in tasks]
    assert total == 3 and planned == [(rels[0], False, 0), (rels[1], True, 1), (rels[2], True, 2)]
    assert files.parse_count() == 2

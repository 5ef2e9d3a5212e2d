"""What a run leaves beside its checkpoints: the log file, CSV logs, JSON files, skipped files."""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdaie.atomic import atomic_write_text
from sdaie.distributed import all_gather_objects

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(out_dir: Path | None, is_main: bool, name: str) -> logging.Logger:
    """Rank 0 logs INFO to stderr and ``<out_dir>/<name>.log``; other ranks only warnings."""
    logger = logging.getLogger("sdaie")
    for h in list(logger.handlers):
        if getattr(h, "_sdaie_stage", False):
            logger.removeHandler(h)
            h.close()
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if is_main and out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(out_dir / f"{name}.log", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(logging.Formatter(LOG_FORMAT))
        h._sdaie_stage = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    return logging.getLogger(f"sdaie.{name}")


class CsvLog:
    """Append rows to a CSV; the header is fixed by the first row (or the existing file on resume).

    Rows whose step is at or beyond ``truncate_after`` are dropped when resuming, so a run resumed
    from step k does not keep the log lines its interrupted predecessor wrote after k.
    """

    def __init__(self, path: Path, truncate_after: int | None = None, key: str = "step"):
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                self.fields = list(reader.fieldnames or [])
                rows = [r for r in reader
                        if truncate_after is None or int(float(r[key])) <= truncate_after]
            self._rewrite(rows)

    def _rewrite(self, rows: list[dict]) -> None:
        with open(self.path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields or [], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            self._rewrite([])
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, lineterminator="\n",
                                    extrasaction="ignore")
            writer.writerow({k: _fmt(row.get(k, "")) for k in self.fields})


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"
    return value


def write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=str, allow_nan=True) + "\n")


def append_jsonl(path: Path, rows: Sequence[dict]) -> None:
    if rows:
        with open(path, "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")


def reported_paths(path: Path) -> set[str]:
    """The files ``skipped.jsonl`` already names (none if it is missing; unreadable lines ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return set()
    seen = set()
    for line in lines:
        try:
            seen.add(json.loads(line)["path"])
        except (ValueError, KeyError, TypeError):  # a line cut short by a kill mid-write
            continue
    return seen


class SkipReporter:
    """Unusable files met by any rank: logged and appended to ``skipped.jsonl`` once each, by rank 0.

    Every rank must call it at the same points (it gathers across ranks).
    """

    def __init__(self, path: Path, is_main: bool, log: logging.Logger, resumed: bool = False) -> None:
        self.path, self.is_main, self.log = path, is_main, log
        # a resumed run meets again files its earlier part reported: reported once, all in summary
        self.seen: set[str] = reported_paths(path) if resumed and is_main else set()

    def __call__(self, skipped: list[dict]) -> None:
        gathered = [s for part in all_gather_objects(skipped) for s in part]
        if not self.is_main:
            return
        new = []
        for s in gathered:
            if s["path"] not in self.seen:
                self.seen.add(s["path"])
                new.append(s)
                self.log.warning("skipped unreadable file %s: %s", s["path"], s["reason"])
        append_jsonl(self.path, new)


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

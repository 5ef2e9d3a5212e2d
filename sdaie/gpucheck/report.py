"""The two outputs of a gpu-check: ``gpu_check.json`` (every figure) and ``gpu_check.md`` (read)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdaie.atomic import atomic_write_text

STATUSES = ("ok", "fail", "skipped", "error")
TITLES = {"environment": "Environment", "correctness": "Correctness on the device",
          "throughput": "Training throughput", "loader": "Data loader",
          "pipeline": "End to end on the device", "ddp": "2-rank torchrun (DDP)"}
NO_CUDA = "skipped: no CUDA"


@dataclass
class Section:
    """One part of the report: a status, a one-line verdict, a table and notes."""

    key: str
    title: str
    status: str = "ok"  # ok | fail (a check did not hold) | skipped | error (the check crashed)
    summary: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # figures other sections may use
    seconds: float = 0.0


def skipped(key: str, title: str, why: str = NO_CUDA) -> Section:
    return Section(key, title, "skipped", why if why.startswith("skipped") else f"skipped: {why}")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:,.2f}"
    return str(value).replace("|", "/")


def table(rows: list[dict[str, Any]]) -> list[str]:
    """A Markdown table of ``rows`` (columns: the keys of all rows, in first-seen order)."""
    if not rows:
        return []
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return lines


def markdown(header: dict[str, Any], sections: list[Section]) -> str:
    lines = [f"# sdaie gpu-check ({header['mode']})", "",
             f"{header['verdict']} ({header['seconds']:.0f} s; `{header['command']}`)", ""]
    for s in sections:
        lines += [f"## {s.title}", "", f"**{s.status}** ({s.seconds:.1f} s): {s.summary}", ""]
        lines += table(s.rows)
        lines += [""] if s.rows else []
        lines += [f"- {n}" for n in s.notes] + ([""] if s.notes else [])
    return "\n".join(lines).rstrip() + "\n"


def write_reports(out: Path, header: dict[str, Any], sections: list[Section]) -> tuple[Path, Path]:
    """``gpu_check.json`` and ``gpu_check.md`` in ``out`` (atomic writes)."""
    data = {**header, "sections": [asdict(s) for s in sections]}
    js = atomic_write_text(out / "gpu_check.json",
                           json.dumps(data, indent=2, default=str, allow_nan=True) + "\n")
    md = atomic_write_text(out / "gpu_check.md", markdown(header, sections))
    return js, md

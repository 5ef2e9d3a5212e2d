"""Result tables: one CSV (machine-readable, fractions) and one Markdown (percentages) per run.

Rows are test sets in the official order (spec section 5) with their display names, followed by an
average row (unweighted mean over sets, the way the field reports "mean accuracy"; a set whose
figure is NaN is left out of that column's mean). One block per perturbation. The AP column that is
the official figure of the stage is marked in the Markdown header (real-positive for the
one-class detector, fake-positive for the binary detector).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from sdaie.atomic import atomic_write_text
from sdaie.data.testsets import display_name, order_key

RATE_COLUMNS = ("acc", "ap_real_pos", "ap_fake_pos", "roc_auc", "real_acc", "fake_acc")
COUNT_COLUMNS = ("n_real", "n_fake")
HEADERS = {
    "acc": "Acc",
    "ap_real_pos": "AP (real+)",
    "ap_fake_pos": "AP (fake+)",
    "roc_auc": "ROC-AUC",
    "real_acc": "Real acc",
    "fake_acc": "Fake acc",
    "n_real": "#real",
    "n_fake": "#fake",
}
AVERAGE = "average"


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def ordered_rows(results: Mapping[str, Mapping[str, float]],
                 rates: Sequence[str] = RATE_COLUMNS, counts: Sequence[str] = COUNT_COLUMNS,
                 min_sets: int = 1) -> list[dict]:
    """``{set: metrics}`` -> rows in table order plus, from ``min_sets`` sets on, the average
    row (unweighted mean of each rate over the sets that have it; counts summed)."""
    rows = [{"set": name, "display": display_name(name), **results[name]}
            for name in sorted(results, key=order_key)]
    if rows and len(rows) >= min_sets:
        avg: dict = {"set": AVERAGE, "display": "Average"}
        for col in rates:
            avg[col] = _mean([r.get(col, math.nan) for r in rows])
        for col in counts:
            avg[col] = sum(int(r.get(col, 0)) for r in rows)
        rows.append(avg)
    return rows


def to_csv(blocks: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Long CSV: one line per (perturbation, set), rates as fractions with 6 decimals."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["perturbation", "set", "display", *RATE_COLUMNS, *COUNT_COLUMNS])
    for pert, results in blocks.items():
        for row in ordered_rows(results):
            rates = ["" if math.isnan(row[c]) else f"{row[c]:.6f}" for c in RATE_COLUMNS]
            writer.writerow([pert, row["set"], row["display"], *rates,
                             *[int(row[c]) for c in COUNT_COLUMNS]])
    return buf.getvalue()


def pct(value: float) -> str:
    """A fraction as a table cell: percent with one decimal, '–' for NaN."""
    return "–" if math.isnan(value) else f"{100.0 * value:.1f}"


def to_markdown(blocks: Mapping[str, Mapping[str, Mapping[str, float]]], title: str,
                official_ap: str, notes: Sequence[str] = ()) -> str:
    """Markdown with one table per perturbation; figures in percent, one decimal."""
    if official_ap not in ("ap_real_pos", "ap_fake_pos"):
        raise ValueError(f"official_ap must be ap_real_pos or ap_fake_pos, got {official_ap!r}")
    headers = [HEADERS[c] + (", official" if c == official_ap else "") for c in RATE_COLUMNS]
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    for pert, results in blocks.items():
        lines += [f"## {pert}", "",
                  "| Set | " + " | ".join(headers) + " | #real | #fake |",
                  "|---|" + "---:|" * (len(headers) + 2)]
        for row in ordered_rows(results):
            name = f"**{row['display']}**" if row["set"] == AVERAGE else row["display"]
            cells = [pct(row[c]) for c in RATE_COLUMNS] + [str(int(row[c])) for c in COUNT_COLUMNS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_tables(out_dir: str | Path, stem: str,
                 blocks: Mapping[str, Mapping[str, Mapping[str, float]]], title: str,
                 official_ap: str, notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` atomically; returns both paths.

    ``blocks``: ``{perturbation spec: {set name: metrics dict}}`` (clean first).
    """
    out = Path(out_dir)
    csv_path = atomic_write_text(out / f"{stem}.csv", to_csv(blocks))
    md_path = atomic_write_text(out / f"{stem}.md", to_markdown(blocks, title, official_ap, notes))
    return csv_path, md_path

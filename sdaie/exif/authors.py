"""``sdaie import-authors``: the authors' backbone training data as an index folder.

    sdaie import-authors data/SDAIE/exif_tags.json data/SDAIE/pkl_256 --out data/authors_index

Their data is ``exif_tags.json`` (file name -> tag dict) and ``pkl_256/<name>.pkl`` (a torch-saved
uint8 ``3 x H x W`` tensor per photo). Their loader reads it as follows, and so does this import:

- the photos are the JSON's first ``train_size`` names (900000) in file order;
- a photo's tensor is ``pkl_256/`` + its name with every ``jpg`` replaced by ``pkl``;
- the 14 head labels: each dict holds three leading fields, then the 14 values in head-slot order;
  the seven ordinal slots are read by position, the seven categorical slots by name ('Make',
  'Model', 'Flash', 'Metering Mode', 'Exposure Mode', 'White Balance Mode', 'Scene Capture
  Type'), each a class id. Values are kept exactly as given: no log, no re-binning (rank targets
  depend on order only).

A photo whose values cannot be labels (a rank value that is not a finite number, a class id that
is not an integer below the head's class count) or whose tensor file is missing is skipped and
listed in ``summary.json`` with its reason; nothing else is changed. The index folder is an
ordinary one (:func:`sdaie.exif.writer.write_index`, ``docs/index-format.md``) whose manifest
and ``summary.json`` say ``"pixels": "authors-tensors"``, so ``backbone_train.py data.index=...``
trains on it like on any index, cropping the tensors as their code does
(:mod:`sdaie.data.authors`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sdaie.config import Config, ConfigError, HeadConfig, load_config
from sdaie.exif.schema import Schema
from sdaie.exif.store import IndexFormatError, read_manifest
from sdaie.exif.writer import write_index

PIXELS = "authors-tensors"  # manifest "pixels" of an index of the authors' tensors

TRAIN_SIZE = 900_000  # their --train_size default: the JSON's first names
LEADING = 3  # fields before the 14 values
CLASS_FIELDS = {1: "Make", 5: "Model", 6: "Flash", 9: "Metering Mode", 10: "Exposure Mode",
                11: "White Balance Mode", 13: "Scene Capture Type"}
LAYOUT = [("rank", 1), ("class", 7), ("rank", 1), ("rank", 1), ("rank", 1), ("class", 6),
          ("class", 4), ("rank", 1), ("rank", 1), ("class", 6), ("class", 4), ("class", 2),
          ("rank", 1), ("class", 5)]  # (kind, classes) of the official heads fc1..fc14


def is_tensor_index(index_dir: str | Path) -> bool:
    """True when the index folder lists the authors' tensors rather than image files."""
    try:
        return read_manifest(index_dir).get("pixels") == PIXELS
    except (OSError, IndexFormatError):
        return False  # the index loader reports a missing or broken index in its own words


def tensor_name(name: str) -> str:
    """Their file name rule: every ``jpg`` in the name becomes ``pkl``."""
    return name.replace("jpg", "pkl")


def authors_heads(heads: Sequence[HeadConfig]) -> list[HeadConfig]:
    """The schema's heads with the authors' encoding: values as given, class id k = code k.

    The heads must have the official layout (kind and class count per slot)."""
    have = [(h.kind, h.classes if h.kind == "class" else 1) for h in heads]
    if have != LAYOUT:
        raise ConfigError(f"the authors' data labels the 14 official heads {LAYOUT}; "
                          f"schema.heads is {have}")
    return [replace(h, transform="identity", binning="codes", other=False,
                    codes=[[k] for k in range(h.classes)] if h.kind == "class" else [])
            for h in heads]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def photo_labels(tags: dict[str, Any], heads: Sequence[HeadConfig]) -> list[float | int]:
    """The 14 labels of one photo as their loader reads them; ValueError says what is unusable."""
    values = list(tags.values())[LEADING:]
    out: list[float | int] = []
    for slot, head in enumerate(heads):
        if head.kind == "rank":
            if slot >= len(values):
                raise ValueError(f"only {len(values)} values after the {LEADING} leading fields")
            x = _number(values[slot])
            if x is None:
                raise ValueError(f"slot {slot}: {values[slot]!r} is not a finite number")
            out.append(x)
            continue
        field = CLASS_FIELDS[slot]
        k = _number(tags.get(field))
        if k is None or k != int(k) or not 0 <= k < head.classes:
            raise ValueError(f"{field!r}: {tags.get(field)!r} is not a class id in "
                             f"0..{head.classes - 1}")
        out.append(int(k))
    return out


def float32_merges(values: dict[str, set[float]]) -> dict[str, int]:
    """Per rank head, how many distinct values become equal in float32 (training labels are
    float32; their code compares the JSON's doubles, so such pairs are ties here only)."""
    out = {}
    for tag, vals in values.items():
        merged = len(vals) - len(np.unique(np.asarray(sorted(vals), dtype=np.float32)))
        if merged:
            out[tag] = merged
    return out


def _rows(tags: dict[str, dict], names: list[str], pkl_dir: Path, heads: Sequence[HeadConfig],
          check_files: bool, skipped: list[dict[str, str]],
          rank_values: dict[str, set[float]]) -> Iterable[dict[str, Any]]:
    rank_slots = [(i, h.tag) for i, h in enumerate(heads) if h.kind == "rank"]
    for name in names:
        rel = tensor_name(name)
        try:
            labels = photo_labels(tags[name], heads)
        except (ValueError, AttributeError) as exc:
            skipped.append({"path": rel, "reason": f"labels: {exc}"})
            continue
        if check_files and not (pkl_dir / rel).is_file():
            skipped.append({"path": rel, "reason": f"no tensor file {pkl_dir / rel}"})
            continue
        for i, tag in rank_slots:
            rank_values.setdefault(tag, set()).add(labels[i])
        yield {"path": rel, "name": name, "tags": tags[name], "labels": labels, "crop": None}


def import_authors(tags_json: str | Path, pkl_dir: str | Path, out_dir: str | Path, cfg: Config,
                   limit: int = TRAIN_SIZE, check_files: bool = True) -> dict[str, Any]:
    """Write the index folder of the authors' data; returns its summary."""
    heads = authors_heads(cfg.schema.heads)
    with open(tags_json, encoding="utf-8") as fh:
        tags = json.load(fh)
    if not isinstance(tags, dict) or not tags:
        raise ConfigError(f"{tags_json}: expected a non-empty JSON object (file name -> tags)")
    pkl_dir = Path(pkl_dir).resolve()
    if not pkl_dir.is_dir():
        raise FileNotFoundError(f"tensor folder not found: {pkl_dir}")
    names = list(tags)[:limit]
    skipped: list[dict[str, str]] = []
    rank_values: dict[str, set[float]] = {}
    summary: dict[str, Any] = {}

    def document(n: int) -> dict[str, Any]:
        summary.update({"root": str(pkl_dir), "pixels": PIXELS, "source": str(tags_json),
                        "files": len(names), "indexed": n, "skipped": len(skipped),
                        "crop_size": None, "crops": 0,
                        "float32_merged_values": float32_merges(rank_values),
                        "skipped_files": skipped})
        return summary

    rows = _rows(tags, names, pkl_dir, heads, check_files, skipped, rank_values)
    write_index(out_dir, rows, vocab=Schema(heads).to_vocab(), root=pkl_dir, summary=document,
                extra={"pixels": PIXELS})
    return summary


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sdaie import-authors",
        description="Index the authors' backbone training data (exif_tags.json + pkl_256/) so "
                    "backbone_train.py trains on it, labels exactly as given.")
    p.add_argument("tags_json", help="the authors' exif_tags.json")
    p.add_argument("pkl_dir", help="the authors' pkl_256/ folder of uint8 tensors")
    p.add_argument("--out", required=True, help="index folder to write")
    p.add_argument("--limit", type=int, default=TRAIN_SIZE,
                   help=f"first N names of the JSON, as their --train_size (default {TRAIN_SIZE})")
    p.add_argument("--no-check-files", action="store_true",
                   help="do not check that every tensor file exists (faster on slow file systems)")
    p.add_argument("--config", default=None, help="YAML config (its schema.heads name the slots)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        if args.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {args.limit}")
        summary = import_authors(args.tags_json, args.pkl_dir, args.out, load_config(args.config),
                                 args.limit, not args.no_check_files)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"sdaie import-authors: error: {exc}", file=sys.stderr)
        return 2
    print(f"indexed {summary['indexed']} of {summary['files']} photos -> {args.out}; skipped "
          f"{summary['skipped']} (reasons in summary.json)")
    for item in summary["skipped_files"][:10]:
        print(f"  skipped {item['path']}: {item['reason']}")
    return 0 if summary["indexed"] else 1

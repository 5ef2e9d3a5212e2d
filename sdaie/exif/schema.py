"""The tag schema: which EXIF tags become which pretext labels, and how.

A :class:`Schema` is built from ``cfg.schema.heads`` (:class:`sdaie.config.HeadConfig`). Rank
heads carry a transformed number (``log`` or ``identity``: both preserve order, which is all the
ranking loss sees). Class heads carry a class index: ``codes`` heads map explicit EXIF codes to
classes (unlisted codes are masked, or go to the last class when ``other`` is set); ``topk`` heads
(Make, Model) take the ``classes - 1`` most frequent values of a collection plus ``"other"``.
A tag that is missing, masked or invalid is ``None`` in the label vector: a mask, never a class.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from sdaie.config import ConfigError, HeadConfig
from sdaie.exif.reader import CANONICAL_TAGS

OTHER = "other"
VOCAB_VERSION = 1

# Names of single EXIF codes, for readable class names in vocab.json (EXIF 2.32 tables).
CODE_NAMES: dict[str, dict[int, str]] = {
    "MeteringMode": {0: "Unknown", 1: "Average", 2: "CenterWeightedAverage", 3: "Spot",
                     4: "MultiSpot", 5: "Pattern", 6: "Partial", 255: "Other"},
    "ExposureMode": {0: "Auto", 1: "Manual", 2: "AutoBracket"},
    "WhiteBalance": {0: "Auto", 1: "Manual"},
    "SceneCaptureType": {0: "Standard", 1: "Landscape", 2: "Portrait", 3: "Night", 4: "Other"},
    "ExposureProgram": {0: "NotDefined", 1: "Manual", 2: "Program", 3: "AperturePriority",
                        4: "ShutterPriority", 5: "Creative", 6: "Action", 7: "Portrait",
                        8: "Landscape"},
}


def normalize_text(value: Any) -> str:
    """Collapse runs of whitespace; case and the make prefix of a Model are kept as written.

    Cameras disagree on both ("Canon"/"Canon EOS RP" vs "NIKON CORPORATION"/"NIKON D90"); we do
    not merge vendors by hand, so two spellings of one maker are two classes.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())


def _check_head(i: int, head: HeadConfig) -> None:
    where = f"schema.heads[{i}] ({head.tag})"
    if head.tag not in CANONICAL_TAGS:
        raise ConfigError(f"{where}: unknown tag; valid: {', '.join(CANONICAL_TAGS)}")
    if head.kind == "rank":
        if head.classes != 1:
            raise ConfigError(f"{where}: a rank head has classes: 1, got {head.classes}")
        if head.transform not in ("log", "identity"):
            raise ConfigError(f"{where}: transform must be log or identity, got {head.transform!r}")
    elif head.kind == "class":
        if head.classes < 2:
            raise ConfigError(f"{where}: a class head needs classes >= 2, got {head.classes}")
        if head.binning == "codes":
            want = len(head.codes) + (1 if head.other else 0)
            if want != head.classes:
                raise ConfigError(f"{where}: {len(head.codes)} code lists"
                                  f"{' + other' if head.other else ''} != classes {head.classes}")
            flat = [c for group in head.codes for c in group]
            if len(flat) != len(set(flat)):
                raise ConfigError(f"{where}: a code appears in two classes")
        elif head.binning != "topk":
            raise ConfigError(f"{where}: binning must be codes or topk, got {head.binning!r}")
    else:
        raise ConfigError(f"{where}: kind must be class or rank, got {head.kind!r}")


def _code_class_name(tag: str, codes: Sequence[int]) -> str:
    names = CODE_NAMES.get(tag, {})
    if len(codes) == 1 and codes[0] in names:
        return names[codes[0]]
    return "|".join(str(c) for c in codes)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class Schema:
    """Label encoder/decoder for one list of heads and (for topk heads) fitted vocabularies."""

    def __init__(self, heads: Sequence[HeadConfig], topk: dict[str, list[str]] | None = None):
        self.heads = list(heads)
        for i, head in enumerate(self.heads):
            _check_head(i, head)
        self.topk: dict[str, list[str]] = dict(topk or {})
        self._lookup: list[dict[Any, int]] = [self._build_lookup(h) for h in self.heads]

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def fit(cls, heads: Sequence[HeadConfig], tags: Iterable[dict[str, Any]]) -> Schema:
        """Fit the topk vocabularies on a collection: most frequent first, ties by name."""
        heads = list(heads)
        wanted = {h.tag: h.classes - 1 for h in heads if h.kind == "class" and h.binning == "topk"}
        counts: dict[str, Counter] = {tag: Counter() for tag in wanted}
        for record in tags:
            for tag in wanted:
                value = record.get(tag)
                if value is not None:
                    counts[tag][normalize_text(value)] += 1
        topk = {tag: [v for v, _ in sorted(counts[tag].items(), key=lambda kv: (-kv[1], kv[0]))
                      [:k]] for tag, k in wanted.items()}
        return cls(heads, topk)

    @classmethod
    def from_vocab(cls, vocab: dict[str, Any]) -> Schema:
        """Rebuild the schema saved by :meth:`to_vocab` (e.g. from an index's ``vocab.json``)."""
        heads, topk = [], {}
        for entry in vocab["heads"]:
            fields = {k: entry[k] for k in ("tag", "kind", "classes", "transform", "binning",
                                            "codes", "other") if k in entry}
            heads.append(HeadConfig(**fields))
            if entry.get("binning") == "topk" and entry.get("kind") == "class":
                topk[entry["tag"]] = [n for n in entry["names"] if n != OTHER]
        return cls(heads, topk)

    def _build_lookup(self, head: HeadConfig) -> dict[Any, int]:
        if head.kind != "class":
            return {}
        if head.binning == "codes":
            return {code: i for i, group in enumerate(head.codes) for code in group}
        return {name: i for i, name in enumerate(self.topk.get(head.tag, []))}

    # --- encoding ---------------------------------------------------------------------------

    def encode_head(self, i: int, value: Any) -> float | int | None:
        """Label of head ``i`` for one tag value; None = missing or masked."""
        head = self.heads[i]
        if value is None:
            return None
        if head.kind == "rank":
            x = _as_number(value)
            if x is None:
                return None
            if head.transform == "log":
                return math.log(x) if x > 0 else None
            return x
        if head.binning == "topk":
            names = self.topk.get(head.tag, [])
            return self._lookup[i].get(normalize_text(value), len(names))  # else "other"
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        found = self._lookup[i].get(value)
        if found is None and head.other:
            return head.classes - 1
        return found

    def encode(self, tags: dict[str, Any]) -> list[float | int | None]:
        """The label vector of one photo, in head order."""
        return [self.encode_head(i, tags.get(h.tag)) for i, h in enumerate(self.heads)]

    # --- decoding ---------------------------------------------------------------------------

    def class_names(self, i: int) -> list[str]:
        """Ordered class names of class head ``i`` (topk: the top values then ``"other"``)."""
        head = self.heads[i]
        if head.kind != "class":
            return []
        if head.binning == "topk":
            return [*self.topk.get(head.tag, []), OTHER]
        names = [_code_class_name(head.tag, group) for group in head.codes]
        return names + [OTHER] if head.other else names

    def decode(self, labels: Sequence[Any]) -> dict[str, Any]:
        """Label vector -> ``{tag: class name | untransformed number}`` (None stays None)."""
        out: dict[str, Any] = {}
        for i, (head, label) in enumerate(zip(self.heads, labels)):
            if label is None or (isinstance(label, float) and math.isnan(label)):
                out[head.tag] = None
            elif head.kind == "rank":
                out[head.tag] = math.exp(label) if head.transform == "log" else float(label)
            else:
                names = self.class_names(i)
                k = int(label)
                out[head.tag] = names[k] if 0 <= k < len(names) else None
        return out

    def to_vocab(self) -> dict[str, Any]:
        """What ``vocab.json`` holds: every head's config and, for class heads, its class names."""
        heads = []
        for i, head in enumerate(self.heads):
            entry = asdict(head)
            if head.kind == "class":
                entry["names"] = self.class_names(i)
            heads.append(entry)
        return {"version": VOCAB_VERSION, "heads": heads}

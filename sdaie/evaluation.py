"""The evaluation loop of both detectors: perturbations x test sets -> per-image scores -> metrics
-> tables, report and summary.

``oc_main`` and ``bc_eval`` differ only in how a set of files becomes scores and in their decision
rule; each gives that as a :class:`SetScorer` (:class:`OneClassSets`, :class:`BinarySets`) and
everything else is here: label discovery, skipped-file reports, ``scores/<perturbation>/<set>.npz``,
the metrics of labelled sets, the summary of unlabelled in-the-wild folders, the tables.

Per-image scores come from :mod:`sdaie.scoring`, the path ``sdaie detect`` uses too.

Each :class:`SetScorer` carries its ``protocol``: "spec" lists a set's images by exact label
folders (:func:`~sdaie.data.testsets.list_labelled`); "official" lists and labels them as the
authors' code does (:mod:`sdaie.data.official`), and its tiling follows their crop and resize.
Sets passed as ``groups`` get their own table block and average per perturbation (the official
in-the-wild runs).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from sdaie.atomic import atomic_savez
from sdaie.config import Config
from sdaie.data.official import binary_set_files, one_class_set_files
from sdaie.data.testsets import LabelledFiles, TestSet, list_labelled
from sdaie.data.transforms import Perturbation
from sdaie.data.walk import ignored_text
from sdaie.engine.runlog import Timer, append_jsonl, setup_logging, write_json
from sdaie.hashing import file_hash
from sdaie.labels import Decision
from sdaie.metrics import detection_metrics
from sdaie.oneclass.gmm import OneClassGMM
from sdaie.reports import UNLABELLED, write_report
from sdaie.runinfo import write_run_info
from sdaie.scoring import (
    NOT_CACHED,
    BinaryScorer,
    FeatureCache,
    FeatureSet,
    Known,
    Tiling,
    extract_features,
    known_by_path,
    score_files,
)
from sdaie.tables import HEADERS, write_tables

Blocks = dict[str, dict[str, dict[str, float]]]  # {perturbation spec: {set name: figures}}
PROTOCOL_NOTES = {  # the table note naming the protocol that produced a table
    "spec": "protocol: spec (the paper as written)",
    "official": "protocol: official (the authors' evaluation steps, quirks included)"}


class EvalOutput:
    """What an evaluation run writes under ``out``: its log, ``skipped.jsonl``, per-set scores."""

    def __init__(self, out_dir: str | Path, stage: str) -> None:
        self.out = Path(out_dir)
        self.stage = stage
        self.log = setup_logging(self.out, True, stage)
        self.timer = Timer()
        self.skipped_log = self.out / "skipped.jsonl"

    def begin(self, cfg: Config, **run_info: Any) -> dict[str, Any]:
        """Write config and environment; clear the previous run's skipped list and scores (the
        report plots every set found under ``scores/``). Returns the environment."""
        env = write_run_info(self.out, cfg, stage=self.stage, **run_info)
        self.skipped_log.unlink(missing_ok=True)
        shutil.rmtree(self.out / "scores", ignore_errors=True)
        return env

    def report_skipped(self, set_name: str, pert: Perturbation, skipped: list[dict]) -> None:
        for s in skipped:
            self.log.warning("skipped %s: %s", s["path"], s["reason"])
        append_jsonl(self.skipped_log, [{**s, "set": set_name, "perturbation": pert.spec}
                                        for s in skipped])

    def save_scores(self, pert: Perturbation, set_name: str, s: SetScores,
                    **extra: Any) -> Path:
        safe = set_name.replace("/", "_")
        return atomic_savez(self.out / "scores" / pert.tag / f"{safe}.npz", scores=s.scores,
                            labels=s.labels, paths=np.array(s.paths, dtype=str),
                            n_patches=s.n_patches, **extra)


@dataclass
class SetScores:
    """One set's per-image scores under one perturbation (rows aligned), and what was skipped."""

    scores: np.ndarray
    labels: np.ndarray  # 0 real, 1 AI-generated, -1 unlabelled
    paths: list[str]
    n_patches: np.ndarray
    skipped: list[dict]


class SetScorer(Protocol):
    """What differs between the two detectors' evaluations."""

    kind: ClassVar[str]  # "oc" | "bc": names of the tables and the report
    title: ClassVar[str]
    official_ap: ClassVar[str]  # the AP column the paper reports
    score_name: ClassVar[str]  # row key of the score ("log_likelihood" | "p_fake")

    @property
    def decision(self) -> Decision: ...

    @property
    def protocol(self) -> str: ...

    def list_files(self, root: Path) -> LabelledFiles: ...

    def extras(self) -> dict[str, Any]: ...

    def score_set(self, name: str, paths: list[Path], labels: list[int],
                  pert: Perturbation) -> SetScores: ...


@dataclass
class BinarySets:
    """p(fake) of every readable image; fake iff p(fake) > ``threshold``."""

    scorer: BinaryScorer
    max_patches: int
    threshold: float
    strict: bool = False
    protocol: str = "spec"
    kind: ClassVar[str] = "bc"
    title: ClassVar[str] = "Binary detector"
    official_ap: ClassVar[str] = "ap_fake_pos"
    score_name: ClassVar[str] = "p_fake"

    @property
    def decision(self) -> Decision:
        return Decision(self.threshold, fake_when_higher=True)

    def list_files(self, root: Path) -> LabelledFiles:
        return binary_set_files(root) if self.protocol == "official" else list_labelled(root)

    def extras(self) -> dict[str, Any]:
        return {}

    def score_set(self, name: str, paths: list[Path], labels: list[int],
                  pert: Perturbation) -> SetScores:
        tiling = Tiling(self.scorer.patch_size, self.max_patches, pert, self.protocol)
        done = score_files(self.scorer, paths, tiling, self.strict, desc=f"{name} {pert.spec}",
                           batch_patches=self.scorer.batch_patches)
        return SetScores(np.asarray([r.p_fake for r in done.results], np.float64),
                         np.asarray(labels, np.int64)[done.kept],
                         [str(paths[i]) for i in done.kept],
                         np.asarray([r.n_patches for r in done.results], np.int64), done.skipped)


@dataclass
class CachedFeatures:
    """Image features of a file list under a perturbation: files whose content the cache knows
    (from another set or an earlier run) are looked up by their SHA-256, the others extracted;
    the set is then cached with the content hash of each file."""

    extractor: nn.Module
    cache: FeatureCache
    max_patches: int
    batch_patches: int
    device: torch.device | str
    strict: bool
    log: logging.Logger
    protocol: str = "spec"
    _hashes: dict[tuple[str, int, int], str] = field(default_factory=dict, init=False, repr=False)

    def content_hash(self, path: Path) -> str:
        """:func:`_content_hash`, read once per run for a file whose size and mtime are unchanged
        (every perturbation and every set sharing the file would otherwise read it again)."""
        try:
            st = path.stat()
        except OSError:
            return ""
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = _content_hash(path)
        return self._hashes[key]

    def __call__(self, name: str, paths: Sequence[Path], labels: Sequence[int],
                 pert: Perturbation) -> FeatureSet:
        hashes = [self.content_hash(Path(p)) for p in paths]
        fs = self.cache.load(name, pert, self.max_patches, paths, hashes)
        if fs is not None:
            self.log.info("features of %s (%s) from the cache", name, pert.spec)
            return fs
        known = self.cache.known(pert, self.max_patches)
        todo = [p for p, h in zip(paths, hashes) if not h or h not in known]
        fresh: dict[str, Known] = {}
        redo: set[str] = set()  # skipped for a non-finite result: not cached, tried again
        if todo:
            tiling = Tiling(self.extractor.patch_size, self.max_patches, pert, self.protocol)
            label_of = dict(zip(map(str, paths), labels))
            new = extract_features(self.extractor, todo, [label_of[str(p)] for p in todo],
                                   tiling, self.batch_patches, self.device,
                                   strict=self.strict, progress=True, desc=f"{name} {pert.spec}")
            fresh = known_by_path(todo, new)
            redo = {s["path"] for s in new.skipped if s.get(NOT_CACHED)}
        if len(todo) < len(paths):
            self.log.info("%s (%s): %d of %d images' features from the cache (same content)",
                          name, pert.spec, len(paths) - len(todo), len(paths))
        entries = [fresh.get(str(p)) or known[h] for p, h in zip(paths, hashes)]
        fs = _assemble(paths, labels, entries, self.extractor.feature_dim)
        # no hash for those files: neither the set nor their content is served from the cache
        self.cache.save(name, pert, self.max_patches, paths, fs,
                        ["" if str(p) in redo else h for p, h in zip(paths, hashes)])
        return fs


def _content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes ("" when it cannot be read: the loader then says why)."""
    try:
        return file_hash(path, length=32)
    except OSError:
        return ""


def _assemble(paths: Sequence[Path], labels: Sequence[int], entries: Sequence[Known],
              dim: int) -> FeatureSet:
    """The set's :class:`FeatureSet` in file order from what is known of each file."""
    rows = [(str(p), int(y), e) for p, y, e in zip(paths, labels, entries) if e[0] is not None]
    skipped = [{"path": str(p), "reason": e[2]} for p, e in zip(paths, entries) if e[0] is None]
    feats = (np.stack([e[0] for _, _, e in rows]).astype(np.float32) if rows
             else np.zeros((0, dim), np.float32))
    return FeatureSet(feats, np.asarray([y for _, y, _ in rows], np.int64), [p for p, _, _ in rows],
                      np.asarray([e[1] for _, _, e in rows], np.int64), skipped)


@dataclass
class OneClassSets:
    """Log-likelihood of every readable image's feature; real iff it exceeds the threshold."""

    features: CachedFeatures
    model: OneClassGMM
    kind: ClassVar[str] = "oc"
    title: ClassVar[str] = "One-class detector"
    official_ap: ClassVar[str] = "ap_real_pos"
    score_name: ClassVar[str] = "log_likelihood"

    @property
    def decision(self) -> Decision:
        return Decision(self.model.threshold, fake_when_higher=False)

    @property
    def protocol(self) -> str:
        return self.features.protocol

    def list_files(self, root: Path) -> LabelledFiles:
        return one_class_set_files(root) if self.protocol == "official" else list_labelled(root)

    def extras(self) -> dict[str, Any]:
        return {"threshold": np.float64(self.model.threshold)}

    def score_set(self, name: str, paths: list[Path], labels: list[int],
                  pert: Perturbation) -> SetScores:
        fs = self.features(name, paths, labels, pert)
        ll = self.model.score(fs.features) if fs.paths else np.zeros(0)  # no usable image: NaN row
        return SetScores(ll, fs.labels, fs.paths, fs.n_patches, fs.skipped)


@dataclass
class Results:
    blocks: Blocks  # labelled sets: the tables
    unlabelled: Blocks  # in-the-wild folders without labels: {"n", "flagged_fake", "mean_<score>"}
    ignored: dict[str, dict[str, int]] = field(default_factory=dict)  # set -> non-image files

    @property
    def n_scored(self) -> int:
        return (sum(m["n_real"] + m["n_fake"] for b in self.blocks.values() for m in b.values())
                + sum(m["n"] for b in self.unlabelled.values() for m in b.values()))


def group_block(pert: Perturbation, group: str) -> str:
    """The table block of a group of sets under one perturbation, e.g. ``clean, wild/web``."""
    return f"{pert.spec}, {group}"


def evaluate(sets: SetScorer, test_sets: Sequence[TestSet], perturbations: Sequence[Perturbation],
             output: EvalOutput, wild: Sequence[TestSet] = (),
             groups: Mapping[str, Sequence[TestSet]] | None = None) -> Results:
    """Every set under every perturbation (clean first); ``wild`` folders may lack labels and
    share the test sets' block; each of ``groups`` is a block (and an average) of its own."""
    results = Results({}, {})
    for pert in perturbations:
        results.blocks.setdefault(pert.spec, {})
        for ts in [*test_sets, *wild]:
            _evaluate_set(sets, ts, ts in wild, pert, output, results, pert.spec)
        for group, members in (groups or {}).items():
            for ts in members:
                _evaluate_set(sets, ts, False, pert, output, results, group_block(pert, group))
    return results


def _evaluate_set(sets: SetScorer, ts: TestSet, is_wild: bool, pert: Perturbation,
                  output: EvalOutput, results: Results, block: str) -> None:
    log = output.log
    files = sets.list_files(ts.path)
    if files.ignored and ts.name not in results.ignored:
        results.ignored[ts.name] = dict(files.ignored)
        log.info("%s: %s (not images)", ts.name, ignored_text(files.ignored))
    if files.paths and (files.unlabelled or files.ambiguous):
        log.warning("%s: %d files without a label folder and %d under both kinds left out",
                    ts.name, len(files.unlabelled), len(files.ambiguous))
    if not files.paths and not (is_wild and files.unlabelled):
        log.warning("%s has no images under 0_real/1_fake (or nature/ai); left out", ts.path)
        return
    labelled = bool(files.paths)
    paths, labels = ((files.paths, files.labels) if labelled
                     else (files.unlabelled, [UNLABELLED] * len(files.unlabelled)))
    s = sets.score_set(ts.name, paths, labels, pert)
    output.report_skipped(ts.name, pert, s.skipped)
    rule = sets.decision
    if labelled:
        m = detection_metrics(s.labels, rule.fake_score(s.scores), rule.predict_fake(s.scores))
        results.blocks.setdefault(block, {})[ts.name] = m
        log.info("%-12s %-10s acc %.3f  %s %.3f  AUC %.3f", ts.display, pert.spec, m["acc"],
                 HEADERS[sets.official_ap], m[sets.official_ap], m["roc_auc"])
    else:  # an in-the-wild folder without labels: report what the detector says
        n = len(s.scores)
        results.unlabelled.setdefault(pert.spec, {})[ts.name] = {
            "n": int(n),
            "flagged_fake": float(np.mean(rule.predict_fake(s.scores))) if n else float("nan"),
            f"mean_{sets.score_name}": float(np.mean(s.scores)) if n else float("nan")}
    output.save_scores(pert, ts.name, s, **sets.extras())


def write_results(output: EvalOutput, sets: SetScorer, results: Results, notes: Sequence[str],
                  summary: dict[str, Any]) -> dict[str, Any]:
    """Tables (``<kind>_metrics.csv/.md``), ``wild_unlabelled.json`` if any, report, summary."""
    tables = write_tables(output.out, f"{sets.kind}_metrics", results.blocks, sets.title,
                          sets.official_ap, notes)
    if results.unlabelled:
        write_json(output.out / "wild_unlabelled.json", results.unlabelled)
    return finish_evaluation(output.out, sets.kind, sets.decision.threshold, tables, summary,
                             output.log)


def finish_evaluation(out: Path, kind: str, threshold: float, tables: tuple[Path, Path],
                      summary: dict[str, Any], log: logging.Logger) -> dict[str, Any]:
    """The end of oc_main / bc_eval: report.md with plots, summary.json, one log line."""
    csv_path, md_path = tables
    summary["tables"] = [str(csv_path), str(md_path)]
    summary["report"] = str(write_report(out, kind, threshold, md_path))
    write_json(out / "summary.json", summary)
    log.info("tables: %s, %s (%.1f s)", csv_path, md_path, summary["time_s"])
    print("\n" + md_path.read_text(encoding="utf-8").rstrip() + "\n", flush=True)  # the results
    return summary

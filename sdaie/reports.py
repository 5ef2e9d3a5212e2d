"""Reports of an evaluation run: score histograms, ROC curves and a Markdown page that ties them up.

Researchers read a detector's results as pictures as much as tables: where the real and the
generated images' scores fall relative to the threshold, and how the sets' ROC curves compare.
:func:`write_report` draws, per perturbation, one histogram per test set (real vs AI-generated,
threshold marked) and one figure with every labelled set's ROC curve (the operating point at the
threshold marked on each), then writes ``report.md`` that embeds the stage's table and the plots by
relative path, so the folder can be moved or published as it is.

Plotting needs matplotlib (the ``plots`` extra). It is imported only here, lazily, and drawn with
the object-oriented API on an Agg canvas (no display, no global pyplot state). Without it the
report holds the table and says why the plots are missing; the run itself never depends on it.

Input: the per-set score files the stages write, ``<out>/scores/<perturbation tag>/<set>.npz``
with ``scores`` (one-class: log-likelihood, higher = more real; binary: p(fake)), ``labels``
(0 real, 1 AI-generated, -1 unlabelled) and ``paths``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from sdaie.atomic import atomic_write_bytes, atomic_write_text
from sdaie.data.testsets import display_name, order_key
from sdaie.data.transforms import Perturbation
from sdaie.labels import FAKE, REAL, Decision
from sdaie.metrics import roc_auc

UNLABELLED = -1
CLEAN = "clean"
HIST_BINS = 40
# Log-likelihoods of generated images can lie orders of magnitude below the real ones; past this
# ratio of (whole range) / (spread of the real scores) a linear axis would squash the real
# images into one bin, so the histogram switches to a symmetric-log axis.
SYMLOG_RATIO = 100.0
PLOTS_EXTRA_HINT = "install the plots extra: pip install 'sdaie[plots]' (or uv sync --extra plots)"


@dataclass(frozen=True)
class ScoreKind:
    """How to read one stage's score."""

    name: str
    axis: str  # x-axis label of the histogram
    fake_when_higher: bool  # binary: p(fake) up = fake; one-class: log-likelihood up = real
    rule: str  # the decision rule in words, with {t} for the threshold
    above: str  # what lies right of the threshold line
    meaning: str  # one sentence for the report


KINDS: dict[str, ScoreKind] = {
    "oc": ScoreKind(
        "log-likelihood",
        "log-likelihood under the real-image GMM (higher = more like real photos)",
        False, "real iff log-likelihood > {t:.4g}", "predicted real to the right",
        "Score: log-likelihood of the image's feature under the Gaussian mixture fitted on real "
        "images only; higher means more like the real training images. The threshold is the "
        "training images' own log-likelihood at the configured quantile (spec: 2 %), so about "
        "that share of real training images falls below it."),
    "bc": ScoreKind(
        "p(AI-generated)", "p(AI-generated) = 1 - softmax(logits)[real]",
        True, "AI-generated iff p > {t:.4g}", "predicted AI-generated to the right",
        "Score: p(AI-generated) of the binary detector over all grid patches of the image. The "
        "threshold is eval.threshold (default 0.5, where the two softmax outputs are equal), set "
        "before any test image was seen, not tuned on a test set."),
}


@dataclass
class SetScores:
    """One test set's per-image scores under one perturbation."""

    name: str
    scores: np.ndarray
    labels: np.ndarray

    @property
    def display(self) -> str:
        return display_name(self.name)

    def of(self, label: int) -> np.ndarray:
        return self.scores[self.labels == label]


# ---------------------------------------------------------------------------------------------
# Reading the stage outputs
# ---------------------------------------------------------------------------------------------


def _pert_key(tag: str) -> tuple[int, str]:
    return (0 if tag == CLEAN else 1, tag)


def perturbation_label(tag: str) -> str:
    """The tables' name (``jpeg=90``) of a score folder's tag (``jpeg90``); others unchanged."""
    m = re.fullmatch(r"(jpeg|blur|resize)([0-9.]+)", tag)
    return Perturbation(m[1], float(m[2])).spec if m else tag


def load_scores(scores_dir: str | Path) -> dict[str, list[SetScores]]:
    """``{perturbation tag: [sets, table order]}`` from ``scores/<tag>/<set>.npz``, clean first."""
    root = Path(scores_dir)
    out: dict[str, list[SetScores]] = {}
    if not root.is_dir():
        return out
    folders = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: _pert_key(d.name))
    for pert_dir in folders:
        sets = []
        for f in sorted(pert_dir.glob("*.npz"), key=lambda f: order_key(f.stem)):
            with np.load(f, allow_pickle=False) as z:
                sets.append(SetScores(f.stem, np.asarray(z["scores"], np.float64),
                                      np.asarray(z["labels"], np.int64)))
        if sets:
            out[pert_dir.name] = sets
    return out


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def matplotlib_missing() -> str | None:
    """None if plots can be drawn, else the reason (for the report)."""
    try:
        import matplotlib  # noqa: F401  # reason: optional (plots extra)
    except ImportError as exc:
        return f"matplotlib is not installed ({exc}); {PLOTS_EXTRA_HINT}"
    return None


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # reason: optional (plots extra)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.15)
    return atomic_write_bytes(path, buf.getvalue())


def _spread(x: np.ndarray) -> float:
    if x.size < 2:
        return 0.0
    q1, q3 = np.percentile(x, [25, 75])
    return float(q3 - q1) or float(np.std(x))


GROUPS = ((REAL, "real", "tab:blue"), (FAKE, "AI-generated", "tab:red"),
          (UNLABELLED, "unlabelled", "tab:gray"))


def _symlog_edges(lo: float, hi: float, spread: float) -> tuple[np.ndarray, float]:
    """Edges evenly spaced on a symmetric-log axis whose linear part is a power of ten >= spread."""
    from matplotlib.scale import SymmetricalLogTransform  # reason: optional (plots extra)

    linthresh = float(10.0 ** math.ceil(math.log10(max(spread, 1e-6))))
    t = SymmetricalLogTransform(10, linthresh, 1.0)
    grid = np.linspace(*t.transform(np.array([lo, hi])), 2 * HIST_BINS + 1)
    edges = np.asarray(t.inverted().transform(grid), dtype=np.float64)
    edges[0], edges[-1] = lo, hi  # the round trip through the transform must not drop the extremes
    return edges, linthresh


def _padded(lo: float, hi: float) -> np.ndarray:
    if hi - lo <= 0:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.03 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, HIST_BINS + 1)


def _draw(ax, s: SetScores, edges: np.ndarray, threshold: float, kind: ScoreKind) -> str:
    """Each class as a filled step histogram, the threshold dashed; returns what lies off-axis."""
    from matplotlib.ticker import MaxNLocator  # reason: optional (plots extra)

    outside = []
    for label, text, colour in GROUPS:
        x = s.of(label)
        if not x.size:
            continue
        ax.hist(x, bins=edges, histtype="stepfilled", alpha=0.35, color=colour)
        ax.hist(x, bins=edges, histtype="step", linewidth=1.4, color=colour,
                label=f"{text} (n={x.size})")
        left, right = int((x < edges[0]).sum()), int((x > edges[-1]).sum())
        if left or right:
            outside.append(f"{text}: {left} left, {right} right")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1.3,
               label=f"threshold {threshold:.4g} ({kind.above})")
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return ("outside this window: " + "; ".join(outside)) if outside else ""


def histogram_png(path: str | Path, s: SetScores, kind: ScoreKind, threshold: float,
                  subtitle: str = "") -> Path:
    """Histogram of one set's real vs AI-generated scores with the threshold line.

    p(fake) is drawn on [0, 1]. Log-likelihoods are drawn on a linear axis unless the range is
    more than :data:`SYMLOG_RATIO` times the real scores' spread; then two panels: an overview
    on a symmetric-log axis and a linear zoom on the real images and the threshold.
    """
    finite = np.isfinite(s.scores)
    dropped = int((~finite).sum())
    s = SetScores(s.name, s.scores[finite], s.labels[finite])
    labelled = bool((s.labels != UNLABELLED).any()) or not s.labels.size
    title = f"{s.display}: {kind.name} of " + ("real vs AI-generated images" if labelled
                                                else "unlabelled images")
    title += (f"\n{subtitle}" if subtitle else "") + (
        f" ({dropped} non-finite scores not shown)" if dropped else "")
    if kind.fake_when_higher:
        panels = [("", np.linspace(0.0, 1.0, HIST_BINS + 1), None)]
    else:
        lo = float(min(s.scores.min(initial=threshold), threshold))
        hi = float(max(s.scores.max(initial=threshold), threshold))
        ref = s.of(REAL) if s.of(REAL).size >= 2 else s.scores
        spread = _spread(ref)
        if spread > 0 and (hi - lo) / spread > SYMLOG_RATIO:
            edges, linthresh = _symlog_edges(lo, hi, spread)
            q_lo, q_hi = np.percentile(ref, [1, 99])
            zoom = _padded(min(float(q_lo), threshold), max(float(q_hi), threshold))
            panels = [(f"overview (symmetric-log axis, linear within ±{linthresh:g})", edges,
                       linthresh), ("zoom on the real images and the threshold", zoom, None)]
        else:
            panels = [("", _padded(lo, hi), None)]
    fig = _new_figure(7.0 * len(panels) ** 0.8, 4.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, edges, linthresh) in zip(axes, panels):
        off_axis = _draw(ax, s, edges, threshold, kind)
        if linthresh is not None:
            ax.set_xscale("symlog", linthresh=linthresh)
        if name or off_axis:
            ax.set_title("\n".join(t for t in (name, off_axis) if t), fontsize=8)
        ax.set_xlabel(kind.axis, fontsize=9)
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="outside lower center",
               ncols=3, frameon=False)
    fig.suptitle(title, fontsize=10)
    return _save_png(fig, path)


@dataclass
class RocCurve:
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    at_threshold: tuple[float, float]  # (fpr, tpr) of the detector's own decision


def roc_curve_of(s: SetScores, kind: ScoreKind, threshold: float) -> RocCurve | None:
    """ROC, AI-generated positive, unlabelled and non-finite left out; None unless both classes."""
    keep = np.isfinite(s.scores) & (s.labels != UNLABELLED)
    y, x = s.labels[keep], s.scores[keep]
    if not ((y == REAL).any() and (y == FAKE).any()):
        return None
    rule = Decision(threshold, kind.fake_when_higher)
    fake_score = rule.fake_score(x)
    fpr, tpr, _ = roc_curve(y, fake_score)
    flagged = rule.predict_fake(x)
    return RocCurve(fpr, tpr, roc_auc(y, fake_score),
                    (float(flagged[y == REAL].mean()), float(flagged[y == FAKE].mean())))


def roc_png(path: str | Path, sets: Sequence[SetScores], kind: ScoreKind, threshold: float,
            subtitle: str = "") -> Path | None:
    """All labelled sets' ROC curves in one figure; None if no set has both classes."""
    import matplotlib  # reason: optional (plots extra)

    curves = [(s, roc_curve_of(s, kind, threshold)) for s in sets]
    curves = [(s, c) for s, c in curves if c is not None]
    if not curves:
        return None
    fig = _new_figure(8.0, 6.0)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab20" if len(curves) > 10 else "tab10"]
    for i, (s, c) in enumerate(curves):
        colour = cmap(i % cmap.N)
        ax.plot(c.fpr, c.tpr, color=colour, linewidth=1.5, label=f"{s.display} (AUC {c.auc:.3f})")
        ax.plot(*c.at_threshold, marker="o", color=colour, markeredgecolor="black")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    ax.plot([], [], marker="o", linestyle="none", color="white", markeredgecolor="black",
            label="detector's decision\nat the threshold")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (real images flagged as AI-generated)")
    ax.set_ylabel("true positive rate (AI-generated images caught)")
    ax.set_title(f"ROC curves, {kind.name} as score ({kind.rule.format(t=threshold)})"
                 + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    fig.legend(fontsize=8, loc="outside right center")
    return _save_png(fig, path)


# ---------------------------------------------------------------------------------------------
# Markdown report
# ---------------------------------------------------------------------------------------------


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _table_body(table_md: str) -> str:
    """The stage's Markdown table page with its title dropped and headings one level down."""
    lines = table_md.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(("#" + ln) if ln.startswith("#") else ln for ln in lines).strip()


def draw_plots(out_dir: Path, scores: Mapping[str, Sequence[SetScores]], kind: ScoreKind,
               threshold: float) -> dict[str, dict[str, Any]]:
    """PNGs under ``out_dir/plots/<tag>/``; ``{tag: {"roc": path | None, "hist": {set: path}}}``."""
    drawn: dict[str, dict[str, Any]] = {}
    for tag, sets in scores.items():
        folder = out_dir / "plots" / _safe(tag)
        sub = f"perturbation: {perturbation_label(tag)}"
        hists = {s.name: histogram_png(folder / f"hist_{_safe(s.name)}.png", s, kind, threshold,
                                       sub) for s in sets}
        drawn[tag] = {"roc": roc_png(folder / "roc.png", sets, kind, threshold, sub), "hist": hists}
    return drawn


def write_report(out_dir: str | Path, kind: str, threshold: float,
                 table_md: str | Path | None = None, title: str | None = None,
                 scores: Mapping[str, Sequence[SetScores]] | None = None,
                 notes: Sequence[str] = ()) -> Path:
    """Draw the plots (if matplotlib is there) and write ``<out_dir>/report.md``; returns its path.

    ``kind``: ``"oc"`` or ``"bc"``; ``table_md``: the stage's Markdown table (a Path is read,
    a str is the text itself);
    ``scores``: ``{perturbation tag: sets}``, by default read from ``<out_dir>/scores``.
    """
    out = Path(out_dir)
    k = KINDS[kind]
    if scores is None:
        scores = load_scores(out / "scores")
    if isinstance(table_md, Path):
        table_md = table_md.read_text(encoding="utf-8")
    title = title or ("One-class detector" if kind == "oc" else "Binary detector") + ": report"
    lines = [f"# {title}", "", f"- {k.meaning}", f"- Decision rule: {k.rule.format(t=threshold)}."]
    lines += [f"- {n}" for n in notes]
    lines += ["", "## Results", "", _table_body(table_md) if table_md else "(no table given)", ""]
    missing = matplotlib_missing()
    lines += ["## Plots", ""]
    if missing:
        lines += [f"Plots were not drawn: {missing}.", ""]
    elif not scores:
        lines += ["No per-set scores were found, so there is nothing to plot.", ""]
    else:
        drawn = draw_plots(out, scores, k, threshold)
        for tag, d in drawn.items():
            pert = perturbation_label(tag)
            lines += [f"### {pert}", ""]
            if d["roc"] is not None:
                lines += [f"![ROC curves ({pert})]({d['roc'].relative_to(out).as_posix()})", ""]
            for name, p in d["hist"].items():
                lines += [f"![{display_name(name)} ({pert})]({p.relative_to(out).as_posix()})", ""]
    return atomic_write_text(out / "report.md", "\n".join(lines).rstrip() + "\n")

"""Pretext loss (spec section 1) and binary-detector loss (spec section 4).

Pretext: for a pair of photos (x1, x2) with label vectors ``y1, y2: [B, H]`` (NaN = tag missing),
a class head is trained with cross-entropy on the first photo's label; a rank head gives one
score per photo and models P(x1 >= x2) = Phi(s1 - s2) (Thurstone / probit), target 1 when
x1 >= x2 (ties count as 1). A pair enters a rank head only when both labels are present, a photo
enters a class head only when its label is present; each head's term is the mean over what
entered (0 when nothing did), and the total is the unweighted sum over heads.

Ranking losses (``pretext.rank_loss``): ``exact`` computes BCE(Phi(d), target) as -log Phi(+-d),
finite and smooth at any gap. ``official`` computes it as the authors' code does: Phi in float32
as ``0.5 * (1 + erf(d / sqrt(2)))``, then ``nn.BCELoss``, which clamps each log at -100. In float32
Phi rounds to exactly 1 from a gap of 5.35 (to exactly 0 below -5.55), so a misranked pair beyond
that gap costs exactly 100 and its gradient spikes (BCELoss divides by max(p (1 - p), 1e-12):
about 1e5 per pair at a gap of 5.5). Below a gap of about 4 the two agree to 1e-4 relative
(docs/reproducing.md gives the figures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sdaie.config import HeadConfig, head_names

RANK_LOSSES = ("exact", "official", "fidelity")
RANK_LOSS_ALIASES = {"bce": "exact"}  # the name of the exact loss before "official" existed
BCE_SCALE = 1.0 / math.sqrt(2.0)  # Phi(d) = (1 + erf(d / sqrt 2)) / 2: the official probit
FIDELITY_SCALE = 0.5  # the face predecessor's erf(0.5 d), i.e. Phi(d / sqrt 2)
FIDELITY_EPS = 1e-8  # inside the square roots so their gradient stays finite at 0


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask``; 0 (still in the graph) when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def rank_probability(d: torch.Tensor, scale: float = BCE_SCALE) -> torch.Tensor:
    """P(x1 >= x2) = (1 + erf(scale * d)) / 2 for score differences ``d = s1 - s2``."""
    return 0.5 * (1.0 + torch.erf(scale * d))


def probit_bce(d: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise BCE(Phi(d), target) computed as -log Phi(+-d) with ``log_ndtr``.

    Equal to ``F.binary_cross_entropy(Phi(d), target)`` wherever Phi(d) is not saturated, and
    finite with an informative gradient where it is (no probability clamp needed; the official
    float32 ``nn.BCELoss`` differs once Phi(d) rounds to 0 or 1, see :func:`official_probit_bce`).
    """
    return -(target * torch.special.log_ndtr(d) + (1.0 - target) * torch.special.log_ndtr(-d))


def official_probit_bce(d: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise BCE(Phi(d), target) the authors' way: float32 Phi through ``erf``, then
    ``binary_cross_entropy`` (logs clamped at -100, gradient divided by max(p(1-p), 1e-12)).

    Kept for reproducing their training; it saturates where :func:`probit_bce` does not.
    """
    d32 = d.to(torch.float32)
    sqrt2 = d32.new_full((1,), 2.0).sqrt()  # made on the device: no host copy (and wait) per step
    p = 0.5 * (1 + torch.erf(d32 / sqrt2))
    return F.binary_cross_entropy(p, target.to(torch.float32), reduction="none")


def resolve_rank_loss(kind: str) -> str:
    """The canonical name of a ``pretext.rank_loss`` value; ValueError naming the valid ones."""
    kind = RANK_LOSS_ALIASES.get(kind, kind)
    if kind not in RANK_LOSSES:
        raise ValueError(f"rank_loss={kind!r}; valid: {list(RANK_LOSSES)}")
    return kind


def fidelity(d: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise fidelity loss 1 - sqrt(p g) - sqrt((1-p)(1-g)), p = (1 + erf(0.5 d)) / 2."""
    p = rank_probability(d, FIDELITY_SCALE)
    return (1.0 - torch.sqrt(p * target + FIDELITY_EPS)
            - torch.sqrt((1.0 - p) * (1.0 - target) + FIDELITY_EPS))


_PER_PAIR = {"exact": probit_bce, "official": official_probit_bce, "fidelity": fidelity}


def rank_loss_term(s1: torch.Tensor, s2: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor,
                   kind: str = "exact") -> torch.Tensor:
    """Ranking loss of scores ``[B]`` against labels ``[B]`` (NaN masks the pair)."""
    valid = ~(torch.isnan(y1) | torch.isnan(y2))
    target = (y1 >= y2).to(s1.dtype)  # False where NaN; masked anyway
    per_pair = _PER_PAIR[resolve_rank_loss(kind)](s1 - s2, target)
    return _masked_mean(per_pair, valid)


def class_loss_term(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``[B, K]`` logits against class indices stored as float ``[B]`` (NaN masks)."""
    valid = ~torch.isnan(y)
    target = torch.where(valid, y, torch.full_like(y, -100.0)).long()
    per_item = F.cross_entropy(logits, target, ignore_index=-100, reduction="none")
    return _masked_mean(per_item, valid)


def pretext_loss(out1: Sequence[torch.Tensor], out2: Sequence[torch.Tensor], y1: torch.Tensor,
                 y2: torch.Tensor, heads: Sequence[HeadConfig],
                 rank_loss: str = "exact") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Unweighted sum over heads; ``out1/out2`` are per-head outputs ``[B, classes]`` of each photo."""
    if not (len(out1) == len(out2) == len(heads) == y1.shape[1] == y2.shape[1]):
        raise ValueError(f"{len(heads)} heads but {len(out1)}/{len(out2)} outputs and "
                         f"{y1.shape[1]}/{y2.shape[1]} label columns")
    rank_loss = resolve_rank_loss(rank_loss)
    per_head: dict[str, torch.Tensor] = {}
    for i, (name, head) in enumerate(zip(head_names(heads), heads)):
        if head.kind == "rank":
            per_head[name] = rank_loss_term(out1[i][:, 0], out2[i][:, 0], y1[:, i], y2[:, i], rank_loss)
        else:
            per_head[name] = class_loss_term(out1[i], y1[:, i])
    total = torch.stack(list(per_head.values())).sum()
    return total, per_head


def binary_loss(logits: torch.Tensor, target: torch.Tensor, taps_random: Sequence[torch.Tensor],
                taps_pretrained: Sequence[torch.Tensor],
                alpha: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy + alpha * sum_i MSE(f_i random, f_i pretrained), i = 1..5 (mean-reduced MSE)."""
    if len(taps_random) != len(taps_pretrained):
        raise ValueError(f"{len(taps_random)} taps vs {len(taps_pretrained)} pretrained taps")
    ce = F.cross_entropy(logits, target.long())
    parts = {"ce": ce}
    mses = []
    for i, (a, b) in enumerate(zip(taps_random, taps_pretrained), start=1):
        mse = F.mse_loss(a, b.detach())
        parts[f"mse_f{i}"] = mse
        mses.append(mse)
    reg = torch.stack(mses).sum() if mses else logits.new_zeros(())
    parts["reg"] = reg
    return ce + alpha * reg, parts

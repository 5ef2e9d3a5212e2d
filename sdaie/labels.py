"""The one label convention of the project: 0 = real (camera), 1 = AI-generated.

Test-set folders (``0_real`` / ``1_fake``), the binary detector's logit index, every metric and
every score row use it; ``NAMES`` are the words rows and reports print; :class:`Decision` is the
one rule for which side of a threshold is "generated".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REAL, FAKE = 0, 1
NAMES = {REAL: "real", FAKE: "ai-generated"}


@dataclass(frozen=True)
class Decision:
    """A detector's threshold rule: binary fake iff p(fake) > t; one-class real iff log p > t.

    The one-class side is "fake unless score > t", so a NaN log-likelihood counts as fake (the
    one-class detector's own rule) and a NaN p(fake) as real. Every comparison of a score with a
    threshold in the project goes through this class.
    """

    threshold: float
    fake_when_higher: bool

    def predict_fake(self, scores: np.ndarray | float) -> np.ndarray:
        above = np.asarray(scores) > self.threshold
        return above if self.fake_when_higher else ~above

    def fake_score(self, scores: np.ndarray) -> np.ndarray:
        """Scores turned so that higher means more likely AI-generated (for AP and ROC-AUC)."""
        return scores if self.fake_when_higher else -scores

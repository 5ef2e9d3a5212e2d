"""The one threshold rule (which side is generated), for both detectors."""

import numpy as np

from sdaie.labels import Decision


def test_decision_orientation_of_both_detectors():
    scores = np.array([0.2, 0.5, 0.7, np.nan])
    binary = Decision(0.5, fake_when_higher=True)  # fake iff p > t
    assert binary.predict_fake(scores).tolist() == [False, False, True, False]
    np.testing.assert_array_equal(binary.fake_score(scores), scores)
    one_class = Decision(0.5, fake_when_higher=False)  # real iff log p > t; NaN counts as fake
    assert one_class.predict_fake(scores).tolist() == [True, True, False, True]
    np.testing.assert_array_equal(one_class.fake_score(scores), -scores)
    assert bool(one_class.predict_fake(0.7)) is False and bool(binary.predict_fake(0.7)) is True

import math
import zipfile

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from sdaie.oneclass.gmm import fit_one_class, load_gmm, quantile_threshold, save_gmm


@pytest.mark.parametrize("cov", ["full", "diag", "tied", "spherical"])
def test_saved_gmm_reloads_without_pickle_and_scores_identically(tmp_path, cov):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (120, 5)), rng.normal(4, 0.5, (80, 5))])
    model = fit_one_class(x, components=2, covariance_type=cov, quantile=0.05)
    path = save_gmm(tmp_path / "gmm.npz", model, checkpoint="ck.pt")
    with zipfile.ZipFile(path) as z:  # plain arrays only: every member loads with allow_pickle=False
        assert all(n.endswith(".npy") for n in z.namelist())
    loaded, meta = load_gmm(path)
    y = rng.normal(2, 2, (50, 5))
    np.testing.assert_array_equal(loaded.score(y), model.score(y))
    np.testing.assert_array_equal(loaded.gmm.predict(y), model.gmm.predict(y))
    assert loaded.threshold == model.threshold and meta == {"checkpoint": "ck.pt"}
    assert isinstance(loaded.gmm, GaussianMixture)


def test_fit_uses_the_configured_sklearn_settings():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    model = fit_one_class(x, components=3, covariance_type="full", init_params="k-means++",
                          random_state=42, quantile=0.02)
    ref = GaussianMixture(3, covariance_type="full", init_params="k-means++", random_state=42).fit(x)
    np.testing.assert_allclose(model.gmm.means_, ref.means_)
    scores = ref.score_samples(x)
    assert model.threshold == np.sort(scores)[math.floor(0.02 * 300)]  # index 6 of the sorted scores


def test_threshold_index_is_floor_q_n():
    s = np.arange(100.0)[::-1]
    assert quantile_threshold(s, 0.02) == 2.0
    assert quantile_threshold(s, 0.05) == 5.0
    assert quantile_threshold(np.array([3.0, 1.0, 2.0]), 0.0) == 1.0
    with pytest.raises(ValueError):
        quantile_threshold(s, 1.0)


def test_bad_features_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        fit_one_class(np.full((10, 2), np.nan), components=1)
    with pytest.raises(ValueError, match="at least"):
        fit_one_class(np.zeros((3, 2)), components=5)


@pytest.mark.parametrize("n, k, cov", [(30, 1, "full"), (31, 1, "full"), (150, 5, "full"),
                                       (155, 5, "full"), (30, 4, "tied"), (31, 4, "tied"),
                                       (8, 5, "diag"), (10, 5, "spherical")])
def test_small_training_set_warning_matches_singular_covariances(n, k, cov):
    """Reference: the rank of the sample covariance of the images one component gets (numpy)."""
    from sdaie.oneclass.gmm import small_training_set

    d = 30
    rng = np.random.default_rng(0)
    if cov == "full":
        m = n // k  # images per component when split evenly
        singular = np.linalg.matrix_rank(np.cov(rng.normal(size=(m, d)), rowvar=False)) < d
    elif cov == "tied":  # one covariance from all images, around their component means
        singular = np.linalg.matrix_rank(np.cov(rng.normal(size=(n, d)), rowvar=False)) < d
    else:  # one variance per dimension (diag) or one per component: two images suffice
        singular = n // k < 2
    warning = small_training_set(n, d, k, cov)
    assert (warning is not None) == bool(singular), (n, k, cov, warning)
    if warning:
        assert f"{n} images" in warning and "oc_small_cpu.yaml" in warning


def test_the_warning_is_true_held_out_reals_are_rejected():
    """A 5-component full GMM on 150 30-d images: training scores are inflated, and held-out
    images of the same distribution fall under the 2 % threshold far more often than 2 %."""
    rng = np.random.default_rng(1)
    train, held_out = rng.normal(size=(150, 30)), rng.normal(size=(300, 30))
    model = fit_one_class(train, components=5, covariance_type="full")
    rejected = np.mean(model.score(held_out) <= model.threshold)
    assert rejected > 0.5
    sane = fit_one_class(train, components=1, covariance_type="diag")
    assert np.mean(sane.score(held_out) <= sane.threshold) < 0.15

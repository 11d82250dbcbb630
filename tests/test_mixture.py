"""vae_cli.mixture: the EM fit recovers known clusters, densities match a hand computation,
sampling is seeded, and the file pair round-trips and refuses anything tampered with."""

import json
import math

import numpy as np
import pytest

from vae_cli import mixture
from vae_cli.mixture import GaussianMixture, MixtureFileError

MEANS = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, -3.0]])
COVS = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.3, 0.0], [0.0, 2.0]], [[1.5, -0.7], [-0.7, 0.6]]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def _clusters(n=6000, seed=0):
    return GaussianMixture(WEIGHTS, MEANS, COVS).sample(n, np.random.default_rng(seed))


def test_fit_recovers_known_clusters():
    fit = mixture.fit(_clusters(), 3, seed=0)
    order = np.argsort(fit.mixture.means[:, 0])  # the true means are sorted by their first coordinate
    m = fit.mixture
    np.testing.assert_allclose(m.means[order], MEANS, atol=0.1)
    np.testing.assert_allclose(m.covariances[order], COVS, atol=0.15)
    np.testing.assert_allclose(m.weights[order], WEIGHTS, atol=0.02)
    assert fit.converged
    # the fitted points are as likely under the fit as under the truth
    truth = GaussianMixture(WEIGHTS, MEANS, COVS).log_density(_clusters()).mean()
    assert abs(fit.log_likelihood - truth) < 0.02


def test_fit_is_seeded():
    z = _clusters(600)
    a, b = mixture.fit(z, 4, seed=3), mixture.fit(z, 4, seed=3)
    np.testing.assert_array_equal(a.mixture.means, b.mixture.means)
    np.testing.assert_array_equal(a.mixture.covariances, b.mixture.covariances)


def test_fit_survives_identical_points_and_refuses_too_few():
    fit = mixture.fit(np.ones((10, 3)), 2, seed=0)  # no spread: the covariance floor keeps it usable
    assert np.all(np.isfinite(fit.mixture.log_density(np.ones((1, 3)))))
    with pytest.raises(ValueError, match="at least 5 points"):
        mixture.fit(np.zeros((4, 2)), 5)
    with pytest.raises(ValueError, match="finite"):
        mixture.fit(np.array([[0.0, np.nan], [1.0, 1.0]]), 1)


def test_log_density_against_a_hand_computation():
    m = GaussianMixture(np.array([0.25, 0.75]), np.array([[0.0, 0.0], [1.0, 2.0]]),
                        np.array([np.eye(2), [[2.0, 1.0], [1.0, 2.0]]]))
    z = np.array([[1.0, 1.0]])
    # N([1,1]; 0, I) = exp(-1) / (2 pi); N([1,1]; [1,2], [[2,1],[1,2]]): det 3, inverse [[2,-1],[-1,2]] / 3,
    # d = [0,-1], d' S^-1 d = 2/3 -> exp(-1/3) / (2 pi sqrt 3)
    hand = math.log(0.25 * math.exp(-1) / (2 * math.pi) + 0.75 * math.exp(-1 / 3) / (2 * math.pi * math.sqrt(3)))
    assert m.log_density(z)[0] == pytest.approx(hand, rel=1e-12)


def test_from_diagonal_is_the_softmax_weighted_diagonal_mixture():
    m = mixture.from_diagonal(np.log([1.0, 3.0]), np.array([[0.0], [2.0]]), np.log([[4.0], [0.25]]))
    np.testing.assert_allclose(m.weights, [0.25, 0.75])
    np.testing.assert_allclose(m.covariances[:, 0, 0], [4.0, 0.25])
    hand = math.log(0.25 * math.exp(-0.5 * 1 / 4) / math.sqrt(2 * math.pi * 4)
                    + 0.75 * math.exp(-0.5 * 1 / 0.25) / math.sqrt(2 * math.pi * 0.25))
    assert m.log_density(np.array([[1.0]]))[0] == pytest.approx(hand, rel=1e-12)


def test_sample_follows_the_mixture_and_the_seed():
    m = GaussianMixture(WEIGHTS, MEANS, COVS)
    z = m.sample(20000, np.random.default_rng(1))
    assert z.dtype == np.float32 and z.shape == (20000, 2)
    np.testing.assert_array_equal(z, m.sample(20000, np.random.default_rng(1)))
    nearest = np.argmin(((z[:, None] - MEANS[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_allclose(np.bincount(nearest) / len(z), WEIGHTS, atol=0.02)
    np.testing.assert_allclose(np.cov(z[nearest == 0].T), COVS[0], atol=0.1)


def _saved(tmp_path):
    path = tmp_path / "gmm-3.npz"
    m = GaussianMixture(WEIGHTS, MEANS, COVS)
    mixture.save(path, m, {"seed": 7})
    return path, m


def test_save_and_load_round_trip(tmp_path):
    path, m = _saved(tmp_path)
    loaded, protocol = mixture.load(path, dim=2)
    for name in mixture.ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(m, name))
    assert protocol["seed"] == 7 and protocol["k"] == 3 and protocol["latent_dim"] == 2
    assert json.loads((tmp_path / "gmm-3.json").read_text())["format"] == mixture.FORMAT


def _rewrite(path, **arrays):
    """Replace arrays in the .npz and re-sign it, as a careful forger would."""
    import hashlib

    with np.load(path) as npz:
        data = {name: npz[name] for name in npz.files}
    data.update(arrays)
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    protocol_file = mixture.protocol_path(path)
    protocol = json.loads(protocol_file.read_text())
    protocol["npz_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    protocol_file.write_text(json.dumps(protocol))


@pytest.mark.parametrize("change, message", [
    ({"weights": np.array([0.5, 0.3, 0.3])}, "sum to 1"),
    ({"weights": np.array([1.2, -0.1, -0.1])}, "non-negative"),
    ({"means": np.zeros((3, 5))}, "expected weights"),
    ({"means": np.full((3, 2), np.nan)}, "NaN"),
    ({"covariances": np.array([[[1.0, 2.0], [2.0, 1.0]]] * 3)}, "positive definite"),
    ({"covariances": np.array([[[1.0, 0.1], [0.0, 1.0]]] * 3)}, "symmetric"),
    ({"weights": np.array(["a", "b", "c"])}, "floating-point"),
    ({"extra": np.zeros(1)}, "expected the arrays"),
    ({"covariances": None}, "expected the arrays"),
])
def test_load_refuses_bad_arrays(tmp_path, change, message):
    path, _ = _saved(tmp_path)
    _rewrite(path, **change)
    with pytest.raises(MixtureFileError, match=message):
        mixture.load(path, dim=2)


def test_load_never_unpickles(tmp_path):
    path, _ = _saved(tmp_path)
    _rewrite(path, weights=np.array([object(), 1, 2], dtype=object))  # needs pickle to read back
    with pytest.raises(MixtureFileError, match="not a readable array file"):
        mixture.load(path, dim=2)


def test_load_refuses_a_mismatched_pair_and_other_dimensions(tmp_path):
    path, _ = _saved(tmp_path)
    with pytest.raises(MixtureFileError, match="expected weights"):
        mixture.load(path, dim=3)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(MixtureFileError, match="SHA-256"):
        mixture.load(path, dim=2)
    mixture.protocol_path(path).write_text("[1, 2]")
    with pytest.raises(MixtureFileError, match="not a protocol"):
        mixture.load(path, dim=2)
    mixture.protocol_path(path).unlink()
    with pytest.raises(MixtureFileError, match="cannot read"):
        mixture.load(path, dim=2)


def test_moments_against_a_hand_computation():
    m = GaussianMixture(np.array([0.25, 0.75]), np.array([[0.0, 1.0], [4.0, 1.0]]),
                        np.array([np.diag([1.0, 2.0]), np.diag([3.0, 2.0])]))
    np.testing.assert_allclose(m.mean(), [3.0, 1.0])
    # Var z0 = E[var] + Var[mean] = (0.25 + 2.25) + (0.25 * 9 + 0.75 * 1) = 5.5; z1: 2
    np.testing.assert_allclose(m.std(), np.sqrt([5.5, 2.0]))

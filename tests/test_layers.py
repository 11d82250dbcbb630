"""The custom layers: config round trip, and their loss values against hand-computed cases."""

import math

import keras
import numpy as np
import pytest

from vae_cli.layers import ReconstructionLoss, Sampling
from vae_cli.losses import kl_divergence, reconstruction_nll


def test_kl_closed_form_matches_a_hand_computed_case():
    z_mean = np.array([[0.0, 0.0], [1.0, -1.0]], np.float32)
    z_log_var = np.array([[0.0, 0.0], [math.log(2.0), 0.0]], np.float32)
    # row 2: -0.5 * [(1 + ln2 - 1 - 2) + (1 + 0 - 1 - 1)] = 1.5 - 0.5 ln 2
    expected = [0.0, 1.5 - 0.5 * math.log(2.0)]
    np.testing.assert_allclose(np.asarray(kl_divergence(z_mean, z_log_var)), expected, atol=1e-6)

    layer = Sampling(seed=1)
    layer([z_mean, z_log_var])
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), np.mean(expected), atol=1e-6)
    layer.beta.assign(0.25)  # the warm-up path scales the added loss
    layer([z_mean, z_log_var])
    np.testing.assert_allclose(float(layer.losses[0]), 0.25 * np.mean(expected), atol=1e-6)


def test_sampling_statistics_and_seed():
    n = 20000
    z_mean = np.full((n, 2), 3.0, np.float32)
    z_log_var = np.full((n, 2), math.log(0.25), np.float32)  # std 0.5
    z = np.asarray(Sampling(seed=7)([z_mean, z_log_var]))
    assert abs(z.mean() - 3.0) < 0.02
    assert abs(z.std() - 0.5) < 0.02
    again = np.asarray(Sampling(seed=7)([z_mean, z_log_var]))
    np.testing.assert_array_equal(z, again)


def test_sampling_keeps_exp_finite_for_extreme_log_variance():
    z = Sampling(seed=0)([np.zeros((2, 3), np.float32), np.full((2, 3), 1e4, np.float32)])
    assert np.all(np.isfinite(np.asarray(z)))


def test_reconstruction_values_by_hand():
    x = np.array([[[[1.0], [0.0]]]], np.float32)  # (1, 1, 2, 1)
    x_hat = np.array([[[[0.8], [0.4]]]], np.float32)
    bce = -(math.log(0.8) + math.log(0.6))
    np.testing.assert_allclose(np.asarray(reconstruction_nll(x, x_hat, "bernoulli")), [bce], rtol=1e-5)
    gaussian = 0.04 + 0.16 + 0.5 * 2 * math.log(math.pi)  # squared error + D/2 log(pi), D = 2
    np.testing.assert_allclose(np.asarray(reconstruction_nll(x, x_hat, "gaussian")), [gaussian], rtol=1e-5)
    layer = ReconstructionLoss("gaussian", weight=10.0)
    layer([x, x_hat])
    np.testing.assert_allclose(float(layer.losses[0]), 10 * (0.2 + math.log(math.pi)), rtol=1e-5)


@pytest.mark.parametrize("layer", [Sampling(seed=3, name="z"), ReconstructionLoss("gaussian", 2.0)])
def test_layers_round_trip_through_get_config(layer):
    again = layer.__class__.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)


def test_reconstruction_rejects_unknown_likelihood():
    with pytest.raises(ValueError, match="likelihood"):
        ReconstructionLoss("poisson")

"""vae_cli.priors: log p(z) of the learned priors against hand computations, the one-sample KL
term, and the prior read back as arrays; --prior values checked like every other setting."""

import math

import keras
import numpy as np
import pytest

from vae_cli import priors
from vae_cli.checkpoint import rng_states
from vae_cli.config import Config, resolve
from vae_cli.errors import UsageError
from vae_cli.layers import LOG_VAR_RANGE
from vae_cli.losses import log_mixture_diag
from vae_cli.models import build_vae


def _normal(z, mean, var):
    return math.exp(-0.5 * (z - mean) ** 2 / var) / math.sqrt(2 * math.pi * var)


def test_log_mixture_diag_against_a_hand_computation():
    z = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
    means = np.array([[0.0, 0.0], [1.0, -1.0]], np.float32)
    log_vars = np.log(np.array([[1.0, 4.0], [0.5, 2.0]], np.float32))
    logits = np.log(np.array([1.0, 3.0], np.float32))
    got = np.asarray(log_mixture_diag(z, means, log_vars, logits))
    uniform = np.asarray(log_mixture_diag(z, means, log_vars))
    for row, (a, b) in enumerate(z):
        p0 = _normal(a, 0.0, 1.0) * _normal(b, 0.0, 4.0)
        p1 = _normal(a, 1.0, 0.5) * _normal(b, -1.0, 2.0)
        assert got[row] == pytest.approx(math.log(0.25 * p0 + 0.75 * p1), rel=1e-5)
        assert uniform[row] == pytest.approx(math.log(0.5 * p0 + 0.5 * p1), rel=1e-5)


def test_mog_prior_log_density_and_components():
    config = Config(prior="mog:2", latent_dim=1)
    layer = priors.build_prior(config, None, None)
    z_in = keras.Input((1,))
    model = keras.Model(z_in, layer(z_in))
    layer.set_weights([np.log([1.0, 3.0]), np.array([[-1.0], [2.0]]), np.log([[0.5], [2.0]])])
    got = np.asarray(model(np.array([[0.0], [1.5]], np.float32)))
    for value, z in zip(got, (0.0, 1.5)):
        hand = math.log(0.25 * _normal(z, -1.0, 0.5) + 0.75 * _normal(z, 2.0, 2.0))
        assert value == pytest.approx(hand, rel=1e-5)
    _, means, _ = priors.prior_components(config, model, None)
    np.testing.assert_allclose(means, [[-1.0], [2.0]])
    mixture = priors.prior_mixture(config, model, None)
    np.testing.assert_allclose(mixture.weights, [0.25, 0.75], rtol=1e-6)
    np.testing.assert_allclose(mixture.covariances[:, 0, 0], [0.5, 2.0], rtol=1e-6)


def _vamp_model(config):
    """x (1x2x1 images) -> pseudo-inputs -> a linear 'encoder' -> VampPrior log p(z), built by
    build_prior; the encoder's z_mean = 1*u_0 + 2*u_1 and z_log_var = 2*u_0."""
    image = keras.Input((1, 2, 1))
    flat = keras.layers.Flatten()(image)
    z_mean = keras.layers.Dense(1, name="z_mean")(flat)
    z_log_var = keras.layers.Dense(1, name="z_log_var")(flat)
    encoder = keras.Model(image, [z_mean, z_log_var, z_mean])
    encoder.get_layer("z_mean").set_weights([np.array([[1.0], [2.0]]), np.zeros(1)])
    encoder.get_layer("z_log_var").set_weights([np.array([[2.0], [0.0]]), np.zeros(1)])
    x, z_in = keras.Input((1, 2, 1)), keras.Input((1,))
    log_prior = priors.build_prior(config, x, encoder)
    model = keras.Model([x, z_in], log_prior(z_in))
    # pseudo-inputs (0.2, 0.4) and (1.3 -> clipped to 1, 0.25)
    model.get_layer(priors.PSEUDO_INPUTS_LAYER).set_weights([np.array([[[[0.2], [0.4]]], [[[1.3], [0.25]]]])])
    return model, encoder


def test_vamp_prior_log_density_against_a_hand_computation():
    config = Config(prior="vamp:2", latent_dim=1, arch="mlp")
    model, encoder = _vamp_model(config)
    z = np.array([[0.5], [1.2], [-3.0]], np.float32)
    got = np.asarray(model([np.zeros((1, 1, 2, 1), np.float32), z]))
    # components: mean 0.2 + 0.8 = 1.0, log-variance 0.4; mean 1.0 + 0.5 = 1.5, log-variance 2.0
    for value, (zi,) in zip(got, z):
        hand = math.log(0.5 * _normal(zi, 1.0, math.exp(0.4)) + 0.5 * _normal(zi, 1.5, math.exp(2.0)))
        assert value == pytest.approx(hand, rel=1e-5)
    logits, means, log_vars = priors.prior_components(config, model, encoder)
    np.testing.assert_allclose(logits, [0.0, 0.0])
    np.testing.assert_allclose(means, [[1.0], [1.5]], rtol=1e-6)
    np.testing.assert_allclose(log_vars, [[0.4], [2.0]], rtol=1e-6)


def test_reading_a_vamp_prior_draws_no_z():
    """prior_components runs only the encoder's mean and log-variance: the seed state of its
    Sampling layer, which training goes on from (the sample grid reads the prior at every epoch's
    end) and a checkpoint resumes from, stays where it was."""
    config = Config(prior="vamp:3", latent_dim=2, arch="mlp", hidden_dim=8)
    models = build_vae(config, (4, 4, 1))
    seeds = rng_states(models.vae)
    _, means, log_vars = priors.prior_components(config, models.vae, models.encoder)
    assert rng_states(models.vae) == seeds
    z_mean, z_log_var, _ = models.encoder(models.vae.get_layer(priors.PSEUDO_INPUTS_LAYER).images())
    assert rng_states(models.vae) != seeds  # the whole encoder draws a z
    np.testing.assert_allclose(means, z_mean, rtol=1e-6)
    np.testing.assert_allclose(log_vars, np.clip(z_log_var, *LOG_VAR_RANGE), rtol=1e-6)


def test_prior_kl_is_log_q_minus_log_p_and_adds_beta_times_its_mean():
    layer = priors.PriorKL()
    z_mean, z_log_var = np.array([[0.0], [1.0]], np.float32), np.log(np.array([[1.0], [0.25]], np.float32))
    z, log_pz = np.array([[0.5], [1.0]], np.float32), np.array([-1.0, -2.0], np.float32)
    kl = np.asarray(priors.PriorKL.estimate(z_mean, z_log_var, z, log_pz))
    hand = [math.log(_normal(0.5, 0.0, 1.0)) + 1.0, math.log(_normal(1.0, 1.0, 0.25)) + 2.0]
    np.testing.assert_allclose(kl, hand, rtol=1e-5)
    passed, estimate = layer([z_mean, z_log_var, z, log_pz])
    np.testing.assert_array_equal(np.asarray(passed), z)  # z passes through
    np.testing.assert_allclose(np.asarray(estimate), hand, rtol=1e-5)  # the VAE's "kl" output
    layer.beta.assign(0.5)
    layer([z_mean, z_log_var, z, log_pz])
    assert float(layer.losses[-1]) == pytest.approx(0.5 * np.mean(hand), rel=1e-5)
    quiet = priors.PriorKL(kl_loss=False)
    quiet([z_mean, z_log_var, z, log_pz])
    assert not quiet.losses


def test_prior_kl_matches_the_closed_form_on_average():
    """Under N(0, I) the one-sample estimate averages to the closed-form KL."""
    rng = np.random.default_rng(0)
    z_mean = np.tile(np.array([[0.7, -0.3]], np.float32), (20000, 1))
    z_log_var = np.tile(np.log(np.array([[0.5, 2.0]], np.float32)), (20000, 1))
    z = (z_mean + np.exp(0.5 * z_log_var) * rng.standard_normal(z_mean.shape)).astype(np.float32)
    log_pz = log_mixture_diag(z, np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32))
    kl = np.asarray(priors.PriorKL.estimate(z_mean, z_log_var, z, log_pz))
    closed = -0.5 * np.sum(1 + np.log([0.5, 2.0]) - np.array([0.7, -0.3]) ** 2 - np.array([0.5, 2.0]))
    assert kl.mean() == pytest.approx(closed, abs=0.03)


def test_standard_prior_components_are_n01():
    config = Config(latent_dim=3)
    assert priors.build_prior(config, None, None) is None
    logits, means, log_vars = priors.prior_components(config, None, None)
    assert logits.shape == (1,) and not means.any() and not log_vars.any() and means.shape == (1, 3)


@pytest.mark.parametrize("value", ["vamp:0", "mog:-1", "mog", "vamp:1001", "gauss:3", "mog:3.5", " mog:3"])
def test_bad_prior_values_get_one_line(value):
    with pytest.raises(UsageError, match=r"^--prior: expected standard, mog:K or vamp:K with K an integer "
                                         rf"from 1 to 1000, got '{value}'$"):
        resolve(None, {"prior": value})


def test_prior_combinations_that_cannot_work_are_refused():
    with pytest.raises(UsageError, match="--free-bits 0.5 .* --prior mog:3"):
        resolve(None, {"prior": "mog:3", "free_bits": 0.5})
    with pytest.raises(UsageError, match="--prior vamp:3 .* --conditional"):
        resolve(None, {"prior": "vamp:3", "conditional": True})
    with pytest.raises(UsageError, match="--prior vamp:3 .* --no-batch-norm$"):
        resolve(None, {"prior": "vamp:3", "batch_norm": True})
    assert resolve(None, {"prior": "mog:3", "conditional": True, "batch_norm": True}).prior == "mog:3"

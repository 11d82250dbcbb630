"""Registered custom layers: the VAE's randomness and its loss terms live here, not in Lambdas.

Keras 3 has no functional `Model.add_loss`; a layer's `self.add_loss` inside `call` is the
supported route, and registering the classes lets saved models load with `safe_mode=True`.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from .losses import (free_bits_kl, kl_divergence, log_normal_diag, log_standard_normal, logmeanexp,
                     reconstruction_nll)

# exp(log_var) must stay finite even when a diverging encoder emits huge values; e^20 ~ 5e8 is
# already far beyond any useful posterior variance for data in [0, 1].
LOG_VAR_RANGE = (-30.0, 20.0)
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned")


def _check_likelihood(likelihood):
    if likelihood not in LIKELIHOODS:
        raise ValueError(
            f"Invalid value received for argument `likelihood`. Expected one of {LIKELIHOODS}. "
            f"Received: likelihood={likelihood}")


@keras.saving.register_keras_serializable(package="vae_cli")
class Binarize(layers.Layer):
    """Dynamic binarisation: in training steps each pixel becomes 1 with probability equal to
    its grey level, a fresh draw every step; outside training the images pass unchanged.

    Args:
        seed: seed of the layer's `SeedGenerator`.

    Call arguments:
        inputs: images `(batch, H, W, C)` with values in [0, 1].
        training: whether this is a training step.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        noise = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator, dtype=inputs.dtype)
        return ops.cast(noise < inputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="vae_cli")
class Sampling(layers.Layer):
    """Draws z = mean + exp(log_var / 2) * eps and adds beta * KL(q(z|x) || N(0, I)) to the loss.

    Args:
        seed: seed of the layer's `SeedGenerator` (required under tf.distribute).
        free_bits: nats per latent unit below which its batch-averaged KL is not penalised
            (see `losses.free_bits_kl`); 0 is the plain ELBO.
        kl_loss: False when another layer (`IWAELoss`) accounts for the prior and posterior
            terms; the layer then only samples and tracks the KL.

    Call arguments:
        inputs: `[z_mean, z_log_var]`, each `(batch, latent_dim)`.

    The KL weight `beta` is a non-trainable variable so a warm-up callback can change it
    between epochs without retracing; the unweighted KL is tracked as the metric `kl`.
    """

    def __init__(self, seed=None, free_bits=0.0, kl_loss=True, **kwargs):
        super().__init__(**kwargs)
        if free_bits < 0:
            raise ValueError(f"Invalid value received for argument `free_bits`. Expected a number "
                             f">= 0. Received: free_bits={free_bits}")
        self.seed = seed
        self.free_bits = float(free_bits)
        self.kl_loss = bool(kl_loss)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def build(self, input_shape):
        self.beta = self.add_weight(shape=(), initializer="ones", trainable=False, name="beta")

    def call(self, inputs):
        z_mean, z_log_var = inputs
        z_log_var = ops.clip(z_log_var, *LOG_VAR_RANGE)
        kl = kl_divergence(z_mean, z_log_var)  # (batch,)
        if self.kl_loss:
            self.add_loss(self.beta * free_bits_kl(z_mean, z_log_var, self.free_bits))
        self.kl_tracker.update_state(kl)
        eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "free_bits": self.free_bits,
                "kl_loss": self.kl_loss}


@keras.saving.register_keras_serializable(package="vae_cli")
class ReconstructionLoss(layers.Layer):
    """Passes x_hat through and adds weight * -log p(x | x_hat) (nats per example) to the loss.

    Args:
        likelihood: one of `LIKELIHOODS` (see `losses.reconstruction_nll`).
        weight: multiplier of the term in the training loss; the tracked metric `recon` is
            unweighted so it stays comparable across runs.

    Call arguments:
        inputs: `[x, x_hat]`, both `(batch, H, W, C)`; `[x, x_mean, x_log_var]` for
            "gaussian-learned". Returns x_hat (the mean).
    """

    def __init__(self, likelihood="bernoulli", weight=1.0, **kwargs):
        super().__init__(**kwargs)
        _check_likelihood(likelihood)
        self.likelihood = likelihood
        self.weight = float(weight)
        self.recon_tracker = keras.metrics.Mean(name="recon")

    def call(self, inputs):
        x, *decoded = inputs
        nll = reconstruction_nll(x, decoded if len(decoded) > 1 else decoded[0], self.likelihood)
        self.add_loss(self.weight * ops.mean(nll))
        self.recon_tracker.update_state(nll)  # (batch,)
        return decoded[0]

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {**super().get_config(), "likelihood": self.likelihood, "weight": self.weight}


@keras.saving.register_keras_serializable(package="vae_cli")
class IWSampling(layers.Layer):
    """Draws k samples z ~ q(z|x) per example for the importance-weighted objective.

    Args:
        k: samples per example.
        seed: seed of the layer's `SeedGenerator`.

    Call arguments:
        inputs: `[z_mean, z_log_var]`, each `(batch, latent_dim)`. Returns z of shape
            `(k * batch, latent_dim)`, sample-major: row `j * batch + i` is draw j for example i.
    """

    def __init__(self, k, seed=None, **kwargs):
        super().__init__(**kwargs)
        if int(k) < 1:
            raise ValueError(f"Invalid value received for argument `k`. Expected an integer >= 1. "
                             f"Received: k={k}")
        self.k = int(k)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        z_log_var = ops.clip(z_log_var, *LOG_VAR_RANGE)
        mean, log_var = ops.tile(z_mean, (self.k, 1)), ops.tile(z_log_var, (self.k, 1))
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * eps

    def compute_output_shape(self, input_shape):
        batch, dim = input_shape[0]
        return (None if batch is None else self.k * batch, dim)

    def get_config(self):
        return {**super().get_config(), "k": self.k, "seed": self.seed}


@keras.saving.register_keras_serializable(package="vae_cli")
class IWAELoss(layers.Layer):
    """Adds the importance-weighted bound -log (1/k) sum_j w_j (Burda et al. 2015) to the loss.

    log w_j = weight * log p(x | z_j) + beta * (log p(z_j) - log q(z_j | x)) for the k draws of
    `IWSampling`; with k = 1 it is the ELBO with a sampled instead of a closed-form KL, and for
    any k it is at least as tight (never larger) than the mean of the k single-sample ELBOs.

    Args:
        k: samples per example (as in `IWSampling`).
        likelihood: one of `LIKELIHOODS`.
        weight: multiplier of log p(x | z) (the `recon_weight` of the ELBO).

    Call arguments:
        inputs: `[x, z_mean, z_log_var, z, x_hat]` (`x_hat` as `x_mean, x_log_var` for
            "gaussian-learned"), z and x_hat with `k * batch` rows. Returns the first draw's
            x_hat, `(batch, H, W, C)`. The mean reconstruction term over the k draws is tracked
            as `recon`, so `recon + kl` stays the ELBO.
    """

    def __init__(self, k, likelihood="bernoulli", weight=1.0, **kwargs):
        super().__init__(**kwargs)
        _check_likelihood(likelihood)
        self.k = int(k)
        self.likelihood = likelihood
        self.weight = float(weight)
        self.recon_tracker = keras.metrics.Mean(name="recon")

    def build(self, input_shape):
        self.beta = self.add_weight(shape=(), initializer="ones", trainable=False, name="beta")

    def log_weights(self, inputs):
        """log w as (k, batch)."""
        x, z_mean, z_log_var, z, *decoded = inputs
        z_log_var = ops.clip(z_log_var, *LOG_VAR_RANGE)
        k, batch = self.k, ops.shape(x)[0]
        x_rep = ops.tile(x, (k,) + (1,) * (len(x.shape) - 1))
        log_px = -reconstruction_nll(x_rep, decoded if len(decoded) > 1 else decoded[0], self.likelihood)
        log_prior = log_standard_normal(z) - log_normal_diag(
            z, ops.tile(z_mean, (k, 1)), ops.tile(z_log_var, (k, 1)))
        return ops.reshape(self.weight * log_px + self.beta * log_prior, (k, batch)), log_px

    def call(self, inputs):
        log_w, log_px = self.log_weights(inputs)
        self.add_loss(-ops.mean(logmeanexp(log_w, axis=0)))
        self.recon_tracker.update_state(-log_px)
        return inputs[4][: ops.shape(inputs[0])[0]]

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "k": self.k, "likelihood": self.likelihood,
                "weight": self.weight}

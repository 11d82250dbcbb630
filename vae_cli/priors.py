"""Learned priors p(z) (--prior mog:K, vamp:K): their layers, log p(z) in keras.ops, and the
prior of a built model read back as arrays for evaluation and sampling.

Both are mixtures of diagonal Gaussians. mog:K learns K means, log-variances and mixing logits
directly (`MixturePrior`). vamp:K, the VampPrior of Tomczak and Welling (2018), learns K
pseudo-inputs u_k of the image shape (`PseudoInputs`) and mixes the encoder's posteriors
q(z | u_k) uniformly (`VampDensity`), so the prior follows the encoder as it trains. Neither
KL(q(z|x) || p(z)) has a closed form: `PriorKL` uses the one-sample estimate
log q(z|x) - log p(z) at the z the decoder sees, an unbiased estimate of the KL whose gradient
flows through the reparameterised z.

The prior's parameters are weights of the VAE model (saved in vae.weights.h5 with the rest), so
a run reloads, resumes and evaluates with the prior it trained; the standalone encoder and
decoder files do not need them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from .config import Config, parse_prior
from .layers import LOG_VAR_RANGE
from .losses import log_mixture_diag, log_normal_diag
from .mixture import GaussianMixture, from_diagonal

PRIOR_LAYER = "prior"  # the layer whose call gives log p(z): MixturePrior or VampDensity
PSEUDO_INPUTS_LAYER = "pseudo_inputs"
# Tomczak and Welling's pseudo-input initialisation for MNIST: N(0.05, 0.01^2) per pixel, each
# pixel kept in the image range [0, 1] by a hard clip (their hardtanh).
PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD = 0.05, 0.01


@keras.saving.register_keras_serializable(package="vae_cli")
class MixturePrior(layers.Layer):
    """The learnable mixture of K diagonal Gaussians of --prior mog:K.

    Args:
        k: components.
        seed: seed of the means' initialiser: N(0, 1) per coordinate, so the components start
            spread around N(0, I)'s bulk; log-variances start at 0 and the weights equal.

    Call arguments:
        inputs: z, `(rows, latent_dim)`. Returns log p(z), `(rows,)`.

    The weights are `logits` (K,), `means` (K, d) and `log_vars` (K, d); log-variances are
    clipped to LOG_VAR_RANGE when used, as the encoder's are.
    """

    def __init__(self, k, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if int(k) < 1:
            raise ValueError(f"Invalid value received for argument `k`. Expected an integer >= 1. "
                             f"Received: k={k}")
        self.k = int(k)
        self.seed = seed

    def build(self, input_shape):
        d = input_shape[-1]
        self.logits = self.add_weight(shape=(self.k,), initializer="zeros", name="logits")
        self.means = self.add_weight(shape=(self.k, d), initializer=keras.initializers.RandomNormal(
            stddev=1.0, seed=self.seed), name="means")
        self.log_vars = self.add_weight(shape=(self.k, d), initializer="zeros", name="log_vars")

    def components(self):
        """(logits, means, log_vars) as used by `call`."""
        return self.logits, self.means, ops.clip(self.log_vars, *LOG_VAR_RANGE)

    def call(self, inputs):
        logits, means, log_vars = self.components()
        return log_mixture_diag(inputs, means, log_vars, logits)

    def compute_output_shape(self, input_shape):
        return input_shape[:1]

    def get_config(self):
        return {**super().get_config(), "k": self.k, "seed": self.seed}


@keras.saving.register_keras_serializable(package="vae_cli")
class PseudoInputs(layers.Layer):
    """The K learnable pseudo-inputs of --prior vamp:K, images of the data's shape.

    Args:
        k: pseudo-inputs.
        seed: seed of their initialiser (see PSEUDO_INPUT_MEAN).

    Call arguments:
        inputs: the image batch `(batch, H, W, C)`; only its shape is used (it places the layer
            in the model). Returns the pseudo-inputs clipped to [0, 1], `(k, H, W, C)`.
    """

    def __init__(self, k, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if int(k) < 1:
            raise ValueError(f"Invalid value received for argument `k`. Expected an integer >= 1. "
                             f"Received: k={k}")
        self.k = int(k)
        self.seed = seed

    def build(self, input_shape):
        init = keras.initializers.RandomNormal(PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD, seed=self.seed)
        self.pixels = self.add_weight(shape=(self.k, *input_shape[1:]), initializer=init, name="pixels")

    def images(self):
        """The pseudo-inputs as the encoder sees them, (k, H, W, C) in [0, 1]."""
        return ops.clip(self.pixels, 0.0, 1.0)

    def call(self, inputs):
        return self.images()

    def compute_output_shape(self, input_shape):
        return (self.k, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "k": self.k, "seed": self.seed}


@keras.saving.register_keras_serializable(package="vae_cli")
class VampDensity(layers.Layer):
    """log p(z) of the VampPrior: the uniform mixture of the pseudo-inputs' posteriors.

    Call arguments:
        inputs: `[z, means, log_vars]`: z `(rows, d)` and the encoder's z_mean and z_log_var of
            the K pseudo-inputs, each `(K, d)`. Returns log p(z), `(rows,)`.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        z, means, log_vars = inputs
        return log_mixture_diag(z, means, ops.clip(log_vars, *LOG_VAR_RANGE))

    def compute_output_shape(self, input_shape):
        return input_shape[0][:1]


@keras.saving.register_keras_serializable(package="vae_cli")
class PriorKL(layers.Layer):
    """Adds beta times the batch mean of each example's one-sample KL estimate
    log q(z|x) - log p(z) under a learned prior to the loss, and returns the estimate (the VAE's
    `kl`, which models.VAE tracks: a layer's own metric update is lost under JAX).

    Args:
        kl_loss: False to only compute the estimate (when another layer accounts for the terms).

    Call arguments:
        inputs: `[z_mean, z_log_var, z, log_pz]`: the posterior (batch, d) each, the z drawn from
            it (batch, d) and log p(z) (batch,). Returns `(z, kl)`: z unchanged (the decoder's
            input runs through this layer, which keeps it in the model) and the estimate (batch,).

    `beta` is a non-trainable variable, like `Sampling`'s, for the KL warm-up.
    """

    def __init__(self, kl_loss=True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.kl_loss = bool(kl_loss)

    def build(self, input_shape):
        self.beta = self.add_weight(shape=(), initializer="ones", trainable=False, name="beta")

    @staticmethod
    def estimate(z_mean, z_log_var, z, log_pz):
        """log q(z|x) - log p(z) per example, (batch,) nats."""
        return log_normal_diag(z, z_mean, ops.clip(z_log_var, *LOG_VAR_RANGE)) - log_pz

    def call(self, inputs):
        kl = self.estimate(*inputs)
        if self.kl_loss:
            self.add_loss(self.beta * ops.mean(kl))
        return inputs[2], kl

    def compute_output_shape(self, input_shape):
        return input_shape[2], input_shape[3]

    def get_config(self):
        return {**super().get_config(), "kl_loss": self.kl_loss}


def build_prior(config: Config, x, encoder):
    """The prior's layers for a VAE built from `config`: a function z -> log p(z) (rows,), or
    None for the standard prior (whose terms stay in closed form).

    x: the model's image input, where a VampPrior's pseudo-inputs are placed; encoder: the
    encoder model, which a VampPrior runs on its pseudo-inputs (once per step, shared by every
    call of the returned function).
    """
    kind, k = parse_prior(config.prior)
    if kind == "standard":
        return None
    if kind == "mog":
        return MixturePrior(k, seed=config.seed + 3, name=PRIOR_LAYER)
    pseudo = PseudoInputs(k, seed=config.seed + 3, name=PSEUDO_INPUTS_LAYER)(x)
    means, log_vars, _ = encoder(pseudo)
    density = VampDensity(name=PRIOR_LAYER)
    return lambda z: density([z, means, log_vars])


def prior_components(config: Config, vae, encoder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The prior of a built model as arrays (logits (K,), means (K, d), log_vars (K, d)): one
    standard-normal component for the standard prior; the pseudo-inputs' posteriors (in
    inference mode) for a VampPrior."""
    kind, _ = parse_prior(config.prior)
    d = config.latent_dim
    if kind == "standard":
        return np.zeros(1, np.float32), np.zeros((1, d), np.float32), np.zeros((1, d), np.float32)
    if kind == "mog":
        logits, means, log_vars = vae.get_layer(PRIOR_LAYER).components()
    else:  # the encoder's mean and log-variance alone: its Sampling layer would draw a z, moving
        # the seed state that training goes on from (and a checkpoint resumes from)
        posterior = keras.Model(encoder.input, encoder.outputs[:2])
        means, log_vars = posterior(vae.get_layer(PSEUDO_INPUTS_LAYER).images(), training=False)
        log_vars = ops.clip(log_vars, *LOG_VAR_RANGE)
        logits = np.zeros(len(means), np.float32)
    return tuple(np.asarray(a, np.float32) for a in (logits, means, log_vars))


def prior_mixture(config: Config, vae, encoder) -> GaussianMixture:
    """The model's prior as a GaussianMixture, to sample from (`GaussianMixture.sample`)."""
    return from_diagonal(*prior_components(config, vae, encoder))

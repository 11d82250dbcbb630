"""Registered custom layers: the VAE's randomness and its loss terms live here, not in Lambdas.

Keras 3 has no functional `Model.add_loss`; a layer's `self.add_loss` inside `call` is the
supported route, and registering the classes lets saved models load with `safe_mode=True`.

No layer updates a metric (under JAX a layer's state change in `call` is lost): the loss layers
return their per-example terms for models.VAE to track. The loss and sampling layers run in
float32 whatever the dtype policy, so --precision mixed never touches the ELBO's terms.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from .config import LIKELIHOODS
from .losses import free_bits_kl, kl_divergence, log_normal_diag, log_standard_normal, logmeanexp, reconstruction_nll

# exp(log_var) must stay finite even when a diverging encoder emits huge values; e^20 ~ 5e8 is
# already far beyond any useful posterior variance for data in [0, 1].
LOG_VAR_RANGE = (-30.0, 20.0)


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
        kl_loss: False when another layer (`IWAELoss`, or `priors.PriorKL` for a learned
            prior) accounts for the prior and posterior terms; the layer then only samples.
        track_kl: kept for the saved models of earlier versions; the model's `kl` comes from
            `KLDivergence` or `priors.PriorKL` (models.VAE tracks it).

    Call arguments:
        inputs: `[z_mean, z_log_var]`, each `(batch, latent_dim)`.

    The KL weight `beta` is a non-trainable variable so a warm-up callback can change it
    between epochs without retracing (the unweighted KL is `KLDivergence`'s output).
    """

    def __init__(self, seed=None, free_bits=0.0, kl_loss=True, track_kl=True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if free_bits < 0:
            raise ValueError(f"Invalid value received for argument `free_bits`. Expected a number "
                             f">= 0. Received: free_bits={free_bits}")
        self.seed = seed
        self.free_bits = float(free_bits)
        self.kl_loss = bool(kl_loss)
        self.track_kl = bool(track_kl)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.beta = self.add_weight(shape=(), initializer="ones", trainable=False, name="beta")

    def call(self, inputs):
        z_mean, z_log_var = inputs
        z_log_var = ops.clip(z_log_var, *LOG_VAR_RANGE)
        if self.kl_loss:
            self.add_loss(self.beta * free_bits_kl(z_mean, z_log_var, self.free_bits))
        eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "free_bits": self.free_bits,
                "kl_loss": self.kl_loss, "track_kl": self.track_kl}


@keras.saving.register_keras_serializable(package="vae_cli")
class KLDivergence(layers.Layer):
    """The unweighted KL(q(z|x) || N(0, I)) of each example, in nats: the `kl` the VAE reports.

    Call arguments:
        inputs: `[z_mean, z_log_var]`, each `(batch, d)`, log-variance clipped as in `Sampling`.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        return kl_divergence(z_mean, ops.clip(z_log_var, *LOG_VAR_RANGE))

    def compute_output_shape(self, input_shape):
        return input_shape[0][:1]


@keras.saving.register_keras_serializable(package="vae_cli")
class ReconstructionLoss(layers.Layer):
    """Passes x_hat through and adds weight * -log p(x | x_hat) (nats per example) to the loss.

    Args:
        likelihood: one of `LIKELIHOODS` (see `losses.reconstruction_nll`).
        weight: multiplier of the term in the training loss; the returned term (the VAE's
            `recon`) is unweighted so it stays comparable across runs.

    Call arguments:
        inputs: `[x, x_hat]`, both `(batch, H, W, C)`; `[x, x_mean, x_log_var]` for
            "gaussian-learned". Returns `(x_hat, nll)`: the mean and -log p(x | z), `(batch,)`.
    """

    def __init__(self, likelihood="bernoulli", weight=1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        _check_likelihood(likelihood)
        self.likelihood = likelihood
        self.weight = float(weight)

    def call(self, inputs):
        x, *decoded = inputs
        nll = reconstruction_nll(x, decoded if len(decoded) > 1 else decoded[0], self.likelihood)
        self.add_loss(self.weight * ops.mean(nll))
        return decoded[0], nll

    def compute_output_shape(self, input_shape):
        return input_shape[1], input_shape[0][:1]

    def get_config(self):
        return {**super().get_config(), "likelihood": self.likelihood, "weight": self.weight}


# Which 3x3 taps land on the same source pixel after nearest 2x upsampling, for each of the 4
# taps of the equivalent stride-2 transposed kernel (see UpsampleConv2D).
_UPSAMPLE_TAPS = ((2,), (1, 2), (0, 1), (0,))


def _positive_filters(filters):
    """The `filters` argument of the conv layers below, checked the way Keras checks Conv2D's."""
    if not isinstance(filters, int) or filters < 1:
        raise ValueError(f"Invalid value received for argument `filters`. Expected a positive integer. "
                         f"Received: filters={filters}")
    return filters


def upsample_nearest(x):
    """(batch, H, W, C) -> (batch, 2H, 2W, C), each pixel repeated 2x2, as UpSampling2D(2)."""
    return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)


@keras.saving.register_keras_serializable(package="vae_cli")
class UpsampleConv2D(layers.Layer):
    """Nearest-neighbour 2x upsampling followed by a 3x3 "same" convolution, computed in one op.

    conv3x3(upsample2x(x)) is exactly a stride-2 transposed convolution of x whose 4x4 kernel
    holds sums of the 3x3 taps that read the same source pixel. The weights are the 3x3 kernel
    and bias a `Conv2D(filters, 3, padding="same")` would hold; the 4x larger upsampled tensor
    is never built and the multiply-adds drop to 4/9, which makes the conv decoder's biggest
    layer ~1.7x faster on CPU (see README, Performance). On the JAX engine, whose CPU transposed
    convolution is many times slower, it computes the upsampling and the convolution as they are.

    Args:
        filters: output channels.
        activation: applied after the bias, as in `Conv2D`.

    Call arguments:
        inputs: `(batch, H, W, C)`; the output is `(batch, 2H, 2W, filters)`.
    """

    def __init__(self, filters, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = _positive_filters(filters)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(shape=(3, 3, channels, self.filters),
                                      initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")
        taps = [[1.0 if u in group else 0.0 for u in range(3)] for group in _UPSAMPLE_TAPS]
        self._taps = taps  # (4, 3): transposed tap <- conv taps

    def transposed_kernel(self):
        """The (4, 4, filters, C) kernel of the equivalent stride-2 "same" transposed convolution
        (the layout of `Conv2DTranspose`'s kernel, which vae-export gives these weights)."""
        taps = ops.convert_to_tensor(self._taps, dtype=self.kernel.dtype)
        return ops.einsum("ru,cv,uvio->rcoi", taps, taps, self.kernel)  # (3, 3, C, F) -> (4, 4, F, C)

    def call(self, inputs):
        if keras.backend.backend() == "jax":  # XLA's CPU transposed convolution is many times slower
            return self.activation(ops.conv(upsample_nearest(inputs), self.kernel, padding="same") + self.bias)
        y = ops.conv_transpose(inputs, self.transposed_kernel(), strides=2, padding="same")
        return self.activation(y + self.bias)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="vae_cli")
class NarrowConv2D(layers.Layer):
    """`Conv2D(filters, 3, padding="same")` that is fast with a single output channel.

    A one-filter convolution equals a depthwise 3x3 convolution followed by a sum over the input
    channels; on CPU that route trains ~2x faster than TensorFlow's Conv2D, whose kernels handle
    one output channel poorly (the decoder's grayscale output layer). With more filters, and on
    the JAX engine (XLA's grouped convolutions are slow), the plain convolution is used. The
    weights are those of the Conv2D it replaces.

    Args:
        filters: output channels.
        activation: applied after the bias, as in `Conv2D`.

    Call arguments:
        inputs: `(batch, H, W, C)`; the output is `(batch, H, W, filters)`.
    """

    def __init__(self, filters, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = _positive_filters(filters)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(3, 3, input_shape[-1], self.filters),
                                      initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def call(self, inputs):
        if self.filters == 1 and keras.backend.backend() != "jax":  # XLA's grouped convolutions are slow
            y = ops.sum(ops.depthwise_conv(inputs, self.kernel, padding="same"), axis=-1, keepdims=True)
        else:
            y = ops.conv(inputs, self.kernel, padding="same")
        return self.activation(y + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "activation": keras.activations.serialize(self.activation)}


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
        kwargs.setdefault("dtype", "float32")
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
class TileRows(layers.Layer):
    """Repeats a batch k times along the first axis, sample-major like `IWSampling`.

    Args:
        k: copies of the batch.

    Call arguments:
        inputs: `(batch, F)`. Returns `(k * batch, F)`: row `j * batch + i` is row i.
    """

    def __init__(self, k, **kwargs):
        super().__init__(**kwargs)
        if int(k) < 1:
            raise ValueError(f"Invalid value received for argument `k`. Expected an integer >= 1. "
                             f"Received: k={k}")
        self.k = int(k)

    def call(self, inputs):
        return ops.tile(inputs, (self.k,) + (1,) * (len(inputs.shape) - 1))

    def compute_output_shape(self, input_shape):
        return (None if input_shape[0] is None else self.k * input_shape[0], *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "k": self.k}


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
            x_hat, `(batch, H, W, C)`, and each example's reconstruction term averaged over the
            k draws, `(batch,)` (the VAE's `recon`, so `recon + kl` stays the ELBO).
    """

    def __init__(self, k, likelihood="bernoulli", weight=1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        _check_likelihood(likelihood)
        self.k = int(k)
        self.likelihood = likelihood
        self.weight = float(weight)

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
        batch = ops.shape(inputs[0])[0]
        return inputs[4][:batch], -ops.mean(ops.reshape(log_px, (self.k, batch)), axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape[0], input_shape[0][:1]

    def get_config(self):
        return {**super().get_config(), "k": self.k, "likelihood": self.likelihood,
                "weight": self.weight}

"""The VAE's terms as pure `keras.ops` functions, per example, in nats.

Nothing here holds state or knows the Config: layers, the trainer and the evaluator all call
these, so the number `vae-eval` reports is the number training minimised.
"""

from __future__ import annotations

import math

from keras import ops


def kl_divergence(z_mean, z_log_var):
    """KL(q(z|x) || N(0, I)) in closed form, summed over latent units: (batch, d) -> (batch,)."""
    return -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


def _flatten(x):
    return ops.reshape(x, (ops.shape(x)[0], -1))


def reconstruction_nll(x, x_hat, likelihood: str):
    """-log p(x | z) summed over pixels: x (batch, H, W, C) and the decoder's output -> (batch,).

    bernoulli: binary cross-entropy (x may be grey levels in [0, 1], as in the tutorials).
    gaussian: the sum of squared errors plus D/2 * log(pi), which is exactly -log N(x; x_hat,
    sigma^2 = 1/2): the gradient is that of the plain squared error, and the reported loss is
    still a true negative log-likelihood in nats, comparable with -log p(x) estimates.
    gaussian-learned: x_hat is the decoder's pair (mean, log_var), one variance per pixel.
    """
    if likelihood == "gaussian-learned":
        mean, log_var = x_hat
        return -log_normal_diag(_flatten(x), _flatten(mean), _flatten(log_var))
    pixel_shape = tuple(x.shape[1:])
    x, x_hat = _flatten(x), _flatten(x_hat)
    if likelihood == "bernoulli":
        # Probabilities are clipped to [1e-7, 1 - 1e-7], so one pixel costs at most about 16 nats.
        # Keras would use the logits behind a sigmoid it can see, but the flatten above hides
        # them in eager and graph mode alike, so training and vae-eval compute the same number.
        return ops.sum(ops.binary_crossentropy(x, x_hat), axis=-1)
    if likelihood == "gaussian":
        # counted before flattening: inside fit's traced step the flat width is unknown (None)
        num_pixels = (math.prod(pixel_shape) if None not in pixel_shape
                      else ops.cast(ops.shape(x)[-1], x.dtype))
        return ops.sum(ops.square(x - x_hat), axis=-1) + 0.5 * num_pixels * math.log(math.pi)
    raise ValueError(f"unknown likelihood {likelihood!r}")


def log_normal_diag(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))) summed over the last axis."""
    return -0.5 * ops.sum(
        math.log(2.0 * math.pi) + log_var + ops.square(z - mean) * ops.exp(-log_var), axis=-1)


def log_standard_normal(z):
    """log N(z; 0, I) summed over the last axis."""
    return -0.5 * ops.sum(math.log(2.0 * math.pi) + ops.square(z), axis=-1)


def log_mixture_diag(z, means, log_vars, logits=None):
    """log sum_k w_k N(z; means_k, diag(exp(log_vars_k))) with w = softmax(logits), uniform when
    logits is None (a learned prior, priors.py): z (N, d), means and log_vars (K, d) -> (N,)."""
    comps = log_normal_diag(z[:, None, :], means[None], log_vars[None])  # (N, K)
    if logits is None:
        log_w = -ops.log(ops.cast(ops.shape(means)[0], comps.dtype))
    else:
        log_w = (logits - ops.logsumexp(logits))[None]
    return ops.logsumexp(comps + log_w, axis=-1)


def free_bits_kl(z_mean, z_log_var, free_bits: float):
    """The KL term of the training loss with free bits (Kingma et al. 2016): scalar.

    Each latent unit's KL is averaged over the batch first and then floored at `free_bits`
    nats, so a unit is not pushed further towards the prior once it carries less than that;
    0 gives the plain batch mean of the summed KL.
    """
    per_unit = -0.5 * (1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))  # (batch, d)
    per_unit = ops.mean(per_unit, axis=0)  # (d,)
    if free_bits > 0:
        per_unit = ops.maximum(per_unit, free_bits)
    return ops.sum(per_unit)


def logmeanexp(a, axis: int):
    """log(mean(exp(a))) along axis, stable for large |a|."""
    m = ops.stop_gradient(ops.max(a, axis=axis, keepdims=True))
    return ops.squeeze(m, axis) + ops.log(ops.mean(ops.exp(a - m), axis=axis))

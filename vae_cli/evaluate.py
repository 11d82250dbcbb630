"""Held-out numbers of a trained VAE: negative ELBO (recon + KL), the importance-weighted bound
on -log p(x) (Burda et al. 2015), and the number of active latent units.

All values are nats per example, averaged over the data. The reconstruction term is exactly
the one training minimised (`losses.reconstruction_nll`), so -ELBO here is the training loss
(with beta = recon_weight = 1) on held-out data.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .losses import kl_divergence, log_normal_diag, log_standard_normal, reconstruction_nll

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al.: Cov_x(E_q[z_u]) > 0.01


def _logmeanexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log(mean(exp(a))) without overflow: subtract the max before exponentiating."""
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.mean(np.exp(a - m), axis=axis))


def iw_log_weights(encoder_out, decoder, x, k: int, likelihood: str, rng: np.random.Generator):
    """log w = log p(x|z) + log p(z) - log q(z|x) for k draws z ~ q(z|x): (batch, k)."""
    z_mean, z_log_var = (np.asarray(t, np.float32) for t in encoder_out[:2])
    b, d = z_mean.shape
    eps = rng.standard_normal((k, b, d)).astype(np.float32)
    z = z_mean[None] + np.exp(0.5 * z_log_var)[None] * eps  # (k, batch, d)
    z_flat = z.reshape(k * b, d)
    x_hat = decoder(z_flat, training=False)  # a (mean, log_var) pair for gaussian-learned
    x_rep = np.broadcast_to(x[None], (k, *x.shape)).reshape(k * b, *x.shape[1:])
    log_px_z = np.asarray(-reconstruction_nll(x_rep, x_hat, likelihood)).reshape(k, b)
    log_pz = np.asarray(log_standard_normal(z_flat)).reshape(k, b)
    log_qz = np.asarray(log_normal_diag(z_flat, np.repeat(z_mean[None], k, 0).reshape(k * b, d),
                                        np.repeat(z_log_var[None], k, 0).reshape(k * b, d))).reshape(k, b)
    return (log_px_z + log_pz - log_qz).T


def evaluate(encoder, decoder, x: np.ndarray, *, likelihood: str, iw_samples: int = 0,
             batch_size: int = 256, seed: int = 0,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Negative ELBO (one z sample per example, as in training), its parts, and the IW bound.

    The IW bound is evaluated in chunks of samples so that memory stays at about
    batch_size * chunk decoded images whatever iw_samples is.
    """
    rng = np.random.default_rng(seed)
    recon_sum = kl_sum = iw_sum = 0.0
    z_means = []
    n = len(x)
    chunk = max(1, min(iw_samples, 4096 // max(1, batch_size) or 1)) if iw_samples else 0
    for start in range(0, n, batch_size):
        xb = np.asarray(x[start:start + batch_size], np.float32)
        z_mean, z_log_var, _ = (np.asarray(t) for t in encoder(xb, training=False))
        eps = rng.standard_normal(z_mean.shape).astype(np.float32)
        z = z_mean + np.exp(0.5 * np.clip(z_log_var, -30, 20)) * eps
        recon_sum += float(np.sum(reconstruction_nll(xb, decoder(z, training=False), likelihood)))
        kl_sum += float(np.sum(kl_divergence(z_mean, np.clip(z_log_var, -30, 20))))
        z_means.append(z_mean)
        if iw_samples:
            log_w = np.concatenate([
                iw_log_weights((z_mean, np.clip(z_log_var, -30, 20)), decoder, xb,
                               min(chunk, iw_samples - j), likelihood, rng)
                for j in range(0, iw_samples, chunk)], axis=1)  # (batch, K)
            iw_sum += float(np.sum(-_logmeanexp(log_w, axis=1)))
        if progress:
            progress(min(start + batch_size, n), n)
    z_means = np.concatenate(z_means)
    variances = z_means.var(axis=0)
    result = {
        "n_examples": int(n),
        "neg_elbo": (recon_sum + kl_sum) / n,
        "recon": recon_sum / n,
        "kl": kl_sum / n,
        "active_units": int(np.sum(variances > ACTIVE_UNIT_THRESHOLD)),
        "latent_dim": int(z_means.shape[1]),
        "unit_variances": [float(v) for v in variances],
    }
    if iw_samples:
        result["iw_nll"] = iw_sum / n
        result["iw_samples"] = int(iw_samples)
    return result

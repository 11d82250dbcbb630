"""Held-out numbers of a trained VAE: negative ELBO (recon + KL), the importance-weighted bound
on -log p(x) (Burda et al. 2015), and the number of active latent units.

All values are nats per example, averaged over the data. The reconstruction and KL terms are
exactly the ones training minimised (`losses`), with the same clipping of log-variances, so
-ELBO here is the training loss (with beta = recon_weight = 1) on held-out data. `labels` are
one-hot (N, K) and are given exactly when the models are conditional (then the numbers are
-log p(x | y)). `prior` is a learned prior as arrays (logits, means, log_vars), from
priors.prior_components; with it the KL term is the one-sample estimate log q(z|x) - log p(z)
that training minimised, and the IW bound's log p(z) is the mixture's. None is N(0, I).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from keras import ops

from . import backend
from .layers import LOG_VAR_RANGE
from .losses import kl_divergence, log_mixture_diag, log_normal_diag, log_standard_normal, reconstruction_nll

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al.: Cov_x(E_q[z_u]) > 0.01
# IW samples are decoded in chunks of about this many images: at 4096 a 28x28 conv decoder's
# activations took ~1.6 GB, at 512 they stay near 0.2 GB.
DECODED_PER_CALL = 512


def _inputs(a, labels):
    return a if labels is None else [a, labels]


def _logmeanexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log(mean(exp(a))) without overflow: subtract the max before exponentiating."""
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.mean(np.exp(a - m), axis=axis))


def posterior(encoder, x: np.ndarray, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """q(z|x) as (z_mean, z_log_var), the log-variance clipped exactly as the Sampling layer does."""
    z_mean, z_log_var, _ = backend.predict(encoder, _inputs(x, labels), max(len(x), 1))
    return np.asarray(z_mean, np.float32), np.clip(np.asarray(z_log_var, np.float32), *LOG_VAR_RANGE)


def log_prior(z, prior=None):
    """log p(z) (rows,): N(0, I) when prior is None, else the mixture (logits, means, log_vars)."""
    if prior is None:
        return log_standard_normal(z)
    logits, means, log_vars = prior
    return log_mixture_diag(z, means, log_vars, logits)


def elbo_terms(decoder, x, z_mean, z_log_var, eps, likelihood: str, labels=None, prior=None):
    """Per-example (recon, kl) with z = z_mean + exp(z_log_var / 2) * eps: the training loss terms
    (the KL in closed form for N(0, I), else the one-sample estimate at z)."""
    z = z_mean + np.exp(0.5 * z_log_var) * eps
    x_hat = decoder(_inputs(z, labels), training=False)
    recon = np.asarray(reconstruction_nll(x, x_hat, likelihood), np.float64)
    if prior is None:
        return recon, np.asarray(kl_divergence(z_mean, z_log_var), np.float64)
    return recon, np.asarray(log_normal_diag(z, z_mean, z_log_var) - log_prior(z, prior), np.float64)


def iw_log_weights(decoder, x, z_mean, z_log_var, eps, likelihood: str, labels=None, prior=None):
    """log w = log p(x|z) + log p(z) - log q(z|x) for z = mean + std * eps, eps (k, batch, d).

    Returns (batch, k). `decoder` is a Keras model or a function of its inputs (the compiled
    form, `_compiled`, passes the model's weights explicitly). Written in keras.ops so it runs
    as one compiled graph on either engine.
    """
    k = ops.shape(eps)[0]
    d = ops.shape(z_mean)[-1]
    # row i * batch + j of every (k * batch, ...) tensor is sample i of example j
    z = ops.reshape(z_mean[None] + ops.exp(0.5 * z_log_var)[None] * eps, (-1, d))
    mean, log_var = ops.tile(z_mean, (k, 1)), ops.tile(z_log_var, (k, 1))
    x_rep = ops.tile(x, (k, 1, 1, 1))
    inputs = _inputs(z, None if labels is None else ops.tile(labels, (k, 1)))
    x_hat = decoder(inputs, training=False) if hasattr(decoder, "stateless_call") else decoder(inputs)
    log_w = (-reconstruction_nll(x_rep, x_hat, likelihood) + log_prior(z, prior)
             - log_normal_diag(z, mean, log_var))  # (k * batch,)
    return ops.transpose(ops.reshape(log_w, (k, -1)))


def _compiled(decoder, likelihood: str, prior=None):
    """iw_log_weights as one compiled function of the engine (backend.compiled: a tf.function,
    or jax.jit over the decoder's weights), so decoding and the densities run as a single graph
    instead of op by op; recompiled only when a chunk's shape changes. Returns float64 numpy."""
    log_weights = backend.compiled(
        lambda decode, x, z_mean, z_log_var, eps, *labels: iw_log_weights(
            decode, x, z_mean, z_log_var, eps, likelihood, *(labels or (None,)), prior=prior), decoder)

    def call(x, z_mean, z_log_var, eps, labels=None):
        extra = () if labels is None else (labels,)
        return np.asarray(log_weights(x, z_mean, z_log_var, eps, *extra), np.float64)
    return call


def _compiled_elbo(decoder, likelihood: str, prior=None):
    """elbo_terms as one compiled call on JAX (op by op on TensorFlow, which compiles nothing)."""
    def terms(decode, x, z_mean, z_log_var, eps, *labels):
        z = z_mean + ops.exp(0.5 * z_log_var) * eps
        x_hat = decode(_inputs(z, ops.convert_to_tensor(labels[0]) if labels else None))  # tensors, not mixed
        if prior is None:
            kl = kl_divergence(z_mean, z_log_var)
        else:
            kl = log_normal_diag(z, z_mean, z_log_var) - log_prior(z, prior)
        return reconstruction_nll(x, x_hat, likelihood), kl
    run = backend.compiled(terms, decoder, tf_function=False)

    def call(x, z_mean, z_log_var, eps, labels=None):
        recon, kl = run(x, z_mean, z_log_var, eps, *(() if labels is None else (labels,)))
        return np.asarray(recon, np.float64), np.asarray(kl, np.float64)
    return call


def _padded(a, rows: int):
    """a with zero rows appended up to `rows` (None stays None): every batch then has one shape,
    which the JAX engine compiles once; each example's numbers depend on its own row alone."""
    if a is None or len(a) == rows:
        return a
    return np.concatenate([a, np.zeros((rows - len(a), *a.shape[1:]), a.dtype)])


def iw_nll(log_weights, x, z_mean, z_log_var, iw_samples: int, rng, labels=None):
    """Per-example -log (1/K sum_k w_k), streamed over chunks of samples.

    log_weights(x, z_mean, z_log_var, eps, labels) -> (batch, k) is `_compiled(decoder,
    likelihood)`. A running max and a rescaled running sum make the log-sum-exp
    stable and keep memory at one chunk (about DECODED_PER_CALL images) whatever K is, so
    K = 5000 needs no more than K = 50.
    """
    b, d = z_mean.shape
    chunk = max(1, DECODED_PER_CALL // b)
    running_max = np.full(b, -np.inf)
    running_sum = np.zeros(b)
    for start in range(0, iw_samples, chunk):
        k = min(chunk, iw_samples - start)
        eps = rng.standard_normal((k, b, d)).astype(np.float32)
        log_w = np.asarray(log_weights(x, z_mean, z_log_var, eps, labels), np.float64)  # (b, k)
        new_max = np.maximum(running_max, log_w.max(axis=1))
        running_sum = running_sum * np.exp(running_max - new_max) + np.exp(log_w - new_max[:, None]).sum(1)
        running_max = new_max
    return -(running_max + np.log(running_sum) - np.log(iw_samples))


def _mean_and_se(values: np.ndarray) -> tuple[float, float]:
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), se


def evaluate(encoder, decoder, x: np.ndarray, *, likelihood: str, iw_samples: int = 0,
             batch_size: int = 256, seed: int = 0, labels=None, prior=None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Negative ELBO (one z sample per example, as in training), its parts, the IW bound with
    `iw_samples` samples (0: skipped) and the active units, with standard errors of the means.

    The ELBO and the IW bound draw from separate random streams, so -ELBO for a seed does not
    change with iw_samples.
    """
    if len(x) == 0:
        raise ValueError("evaluate needs at least one example")
    elbo_rng, iw_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    elbo = _compiled_elbo(decoder, likelihood, prior)
    log_weights = _compiled(decoder, likelihood, prior) if iw_samples else None
    recon, kl, iw, z_means = [], [], [], []
    n = len(x)
    batch_size = min(batch_size, n)
    for start in range(0, n, batch_size):
        xb = np.asarray(x[start:start + batch_size], np.float32)
        yb = None if labels is None else np.asarray(labels[start:start + batch_size], np.float32)
        rows = len(xb)
        xb, yb = _padded(xb, batch_size), _padded(yb, batch_size)  # the last batch too: one shape
        z_mean, z_log_var = posterior(encoder, xb, yb)
        eps = elbo_rng.standard_normal((rows, z_mean.shape[1])).astype(np.float32)
        r, k = elbo(xb, z_mean, z_log_var, _padded(eps, batch_size), yb)
        xb, yb, z_mean, z_log_var = (None if a is None else a[:rows] for a in (xb, yb, z_mean, z_log_var))
        recon.append(r[:rows])
        kl.append(k[:rows])
        z_means.append(z_mean)
        if iw_samples:
            iw.append(iw_nll(log_weights, xb, z_mean, z_log_var, iw_samples, iw_rng, yb))
        if progress:
            progress(min(start + batch_size, n), n)
    return _summary(np.concatenate(recon), np.concatenate(kl), np.concatenate(z_means),
                    np.concatenate(iw) if iw_samples else None, iw_samples)


def _summary(recon, kl, z_means, iw, iw_samples: int) -> dict:
    variances = z_means.var(axis=0)
    neg_elbo, neg_elbo_se = _mean_and_se(recon + kl)
    result = {
        "n_examples": len(recon),
        "neg_elbo": neg_elbo,
        "neg_elbo_se": neg_elbo_se,
        "recon": float(recon.mean()),
        "kl": float(kl.mean()),
        "active_units": int(np.sum(variances > ACTIVE_UNIT_THRESHOLD)),
        "latent_dim": int(z_means.shape[1]),
        "unit_variances": [float(v) for v in variances],
    }
    if iw is not None:
        result["iw_nll"], result["iw_nll_se"] = _mean_and_se(iw)
        result["iw_samples"] = int(iw_samples)
    return result


def pixel_levels(channels: int) -> str:
    """What the numbers of a pixel are, in the protocol's words: grey levels, or the channel
    values of a colour image."""
    return "grey levels" if channels == 1 else "channel values"


def report(result: dict, *, run: str, data: dict, trained_on: str, likelihood: str, seed: int,
           conditional: bool, binarized: bool, prior: str = "standard", channels: int = 1) -> dict:
    """The numbers with the protocol that produced them, so they can be set beside the literature.

    data: the evaluation images (spec, source, split, n_examples); trained_on: one line on what
    the model learned from, since 4,500 digits and the literature's 60,000 are not comparable.
    """
    k = result.get("iw_samples", 0)
    drawn = "each pixel 1 with probability equal to its grey level" if channels == 1 else \
        "each channel value 1 with probability equal to that value"
    protocol = {
        "data": data,
        "trained_on": trained_on,
        "pixels": (f"binarised once: {drawn} (seed {seed})" if binarized
                   else f"{pixel_levels(channels)} in [0, 1], not binarised"),
        "binarized": binarized,
        "likelihood": likelihood,
        "prior": prior,
        "quantity": "-log p(x | y), labels given" if conditional else "-log p(x)",
        "elbo_samples": 1,
        "iw_samples": k,
        "seed": seed,
        "units": "nats per example (mean over the data; se = standard error of that mean)",
    }
    return {"run": run, "protocol": protocol, **result}


def _prior_text(prior: str) -> str:
    return "" if prior == "standard" else f"learned prior {prior} (KL: its one-sample estimate); "


def format_table(rep: dict) -> str:
    """The report as a short table, the protocol stated above the numbers."""
    p, d, k = rep["protocol"], rep["protocol"]["data"], rep["protocol"]["iw_samples"]
    lines = [
        f"run:      {rep['run']}",
        f"data:     {d['source']}",
        f"split:    {d['split']}, {d['n_examples']:,} images",
        f"trained:  {p['trained_on']}",
        (f"protocol: {p['pixels']}; {p['likelihood']} likelihood; {_prior_text(p.get('prior', 'standard'))}ELBO "
         f"with {p['elbo_samples']} z sample per image; {f'IW bound with K={k}' if k else 'no IW bound'}; "
         f"seed {p['seed']}"),
        "",
        f"{'':34}{'nats':>10}{'± se':>8}",
        f"{'-ELBO':34}{rep['neg_elbo']:10.2f}{rep['neg_elbo_se']:8.2f}",
        f"{'  reconstruction':34}{rep['recon']:10.2f}",
        f"{'  KL':34}{rep['kl']:10.2f}",
    ]
    if "iw_nll" in rep:
        name = f"{'-log p(x|y)' if '|' in p['quantity'] else '-log p(x)'}, IW bound (K={rep['iw_samples']})"
        lines.append(f"{name:34}{rep['iw_nll']:10.2f}{rep['iw_nll_se']:8.2f}")
    lines.append(f"{'active units (Cov > 0.01)':34}{rep['active_units']:>7} of {rep['latent_dim']}")
    return "\n".join(lines)

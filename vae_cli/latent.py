"""Latent-space operations that return arrays: encode, decode in batches, prior samples,
interpolations, traversals, the manifold grid, label conditioning and 2-D projections of codes.

Nothing here writes files or draws: plots.py turns these arrays into figures. Every decode is
batched; the tutorial's per-point loop (900 `predict` calls for a 30x30 manifold) is the thing
this module exists to replace. `labels` arguments are one-hot (N, K) float arrays and are given
exactly when the models are conditional.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from . import backend
from .data import binarize, one_hot
from .errors import UsageError

# Images per encoder/decoder call: large enough to keep the CPU busy, small enough that a conv
# model's activations stay near 100 MB (at 1024, decoding added ~0.3 GB to the peak memory of a run).
DECODE_BATCH = 256
# A 30x30 grid in two calls instead of four: 22% less decode time on 2 CPU cores (0.138 s vs
# 0.177 s), for at most ~50 MB more activations while it runs.
MANIFOLD_BATCH = 512
MAX_TSNE_POINTS = 2000  # sklearn's t-SNE runs 1,000 iterations; 2,000 points keep it to seconds


def _inputs(a: np.ndarray, labels: np.ndarray | None):
    return a if labels is None else [a, np.asarray(labels, dtype=np.float32)]


def _posterior(encoder, x: np.ndarray, labels, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """z_mean and z_log_var of every image, each (N, latent_dim)."""
    if len(x) == 0:
        empty = np.zeros((0, encoder.output_shape[0][-1]), np.float32)
        return empty, empty
    z_mean, z_log_var, _ = backend.predict(encoder, _inputs(np.asarray(x, np.float32), labels), batch_size)
    return np.asarray(z_mean), np.asarray(z_log_var)


def encode_mean(encoder, x: np.ndarray, labels=None, batch_size: int = DECODE_BATCH) -> np.ndarray:
    """z_mean of every image, (N, latent_dim)."""
    return _posterior(encoder, x, labels, batch_size)[0].astype(np.float32)


def encode_draw(encoder, x: np.ndarray, rng: np.random.Generator, labels=None,
                batch_size: int = DECODE_BATCH) -> np.ndarray:
    """One z ~ q(z | x) = N(z_mean, exp(z_log_var)) per image, (N, latent_dim), drawn with rng."""
    z_mean, z_log_var = (a.astype(np.float64) for a in _posterior(encoder, x, labels, batch_size))
    return (z_mean + np.exp(0.5 * z_log_var) * rng.standard_normal(z_mean.shape)).astype(np.float32)


def decode(decoder, z: np.ndarray, labels=None, batch_size: int = DECODE_BATCH) -> np.ndarray:
    """x_hat for each latent point, float32 (N, H, W, C) in [0, 1].

    A gaussian-learned decoder also outputs each pixel's log-variance; images are its means.
    """
    z = np.asarray(z, dtype=np.float32)
    if len(z) == 0:
        return np.zeros((0, *keras_shape(decoder)[1:]), np.float32)
    # backend.predict skips predict()'s one-time setup (~0.3 s), which would dominate a 900-point
    # grid, and compiles once per model on JAX
    return _means(backend.predict(decoder, _inputs(z, labels), batch_size))


def _means(out) -> np.ndarray:
    return np.asarray(out[0] if isinstance(out, (list, tuple)) else out, dtype=np.float32)


def keras_shape(decoder) -> tuple:
    """The decoder's image output shape (the mean's, for a gaussian-learned decoder)."""
    shape = decoder.output_shape
    return shape[0] if isinstance(shape, list) else shape


def prior_z(n: int, latent_dim: int, *, seed: int, temperature: float = 1.0) -> np.ndarray:
    """n draws from N(0, temperature^2 I), reproducible for a seed."""
    rng = np.random.default_rng(seed)
    return (temperature * rng.standard_normal((n, latent_dim))).astype(np.float32)


def class_grid(num_classes: int, per_class: int, latent_dim: int, *, seed: int):
    """Inputs for a rows-are-classes grid: the same per_class z in every row.

    Returns (z (K * per_class, d), one-hot labels (K * per_class, K)); row k holds class k.
    """
    z = np.tile(prior_z(per_class, latent_dim, seed=seed), (num_classes, 1))
    return z, one_hot(np.repeat(np.arange(num_classes), per_class), num_classes)


def pixel_rng(seed: int) -> np.random.Generator:
    """The generator of Bernoulli pixel draws (data.binarize): its own stream, so the z draws of
    the same seed stay the same with and without them."""
    return np.random.default_rng([seed, 1])


def interpolate(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """steps points on the straight line from a to b, both ends included: (steps, *a.shape)."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32).reshape(-1, *([1] * np.ndim(a)))
    return ((1 - t) * np.asarray(a, np.float32) + t * np.asarray(b, np.float32)).astype(np.float32)


class Samples(NamedTuple):
    images: np.ndarray  # (N, H, W, C) float32 in [0, 1]
    z: np.ndarray  # (N, d) the latent points decoded
    labels: np.ndarray | None  # (N, K) one-hot decoder conditioning, None for a plain VAE


def generate_batches(decoder, latent_dim: int, *, n: int = 0, z=None, seed: int = 0, temperature: float = 1.0,
                     num_classes: int | None = None, label: int | None = None, binary: bool = False,
                     batch_size: int | None = None) -> Iterator[Samples]:
    """Decode the given points z, or n draws from N(0, temperature^2 I), batch_size at a time, so
    memory stays at one batch whatever n is. The batches concatenate to exactly what one call
    would give for the seed (numpy's generators yield the same stream in pieces).

    A conditional decoder (num_classes set) gets `label` for every image, or labels cycling
    through the classes so any grid of them shows each class. binary: each pixel drawn from
    Bernoulli(x_hat), a true sample of p(x | z) (data.binarize, drawn from pixel_rng(seed)).
    """
    batch_size = batch_size or DECODE_BATCH
    z_rng, pixels = np.random.default_rng(seed), pixel_rng(seed)
    total = n if z is None else len(z)
    for start in range(0, total, batch_size):
        count = min(batch_size, total - start)
        z_batch = (temperature * z_rng.standard_normal((count, latent_dim))).astype(np.float32) if z is None \
            else np.asarray(z[start:start + count], np.float32)
        labels = None
        if num_classes is not None:
            classes = np.full(count, label) if label is not None else np.arange(start, start + count) % num_classes
            labels = one_hot(classes, num_classes)
        images = decode(decoder, z_batch, labels)
        if binary:
            images = binarize(images, pixels)
        yield Samples(images, z_batch, labels)


def generate(decoder, latent_dim: int, **kwargs) -> Samples:
    """All of `generate_batches` at once (for counts that fit in memory)."""
    parts = list(generate_batches(decoder, latent_dim, **kwargs))
    if not parts:
        raise ValueError("generate needs n > 0 or at least one point z")
    labels = None if parts[0].labels is None else np.concatenate([p.labels for p in parts])
    return Samples(np.concatenate([p.images for p in parts]), np.concatenate([p.z for p in parts]), labels)


def interpolate_images(encoder, decoder, x_pair: np.ndarray, steps: int, labels=None,
                       decoder_label=None) -> Samples:
    """Decode the straight walk between the z_means of two images.

    In a conditional run each image is encoded with its own one-hot label (labels, (2, K)) and the
    decoder's label is blended along the walk too, unless decoder_label ((K,)) fixes it.
    """
    ends = encode_mean(encoder, x_pair, labels)
    z = interpolate(ends[0], ends[1], steps)
    cond = None
    if labels is not None:
        cond = (np.tile(decoder_label, (steps, 1)).astype(np.float32) if decoder_label is not None
                else interpolate(labels[0], labels[1], steps))
    return Samples(decode(decoder, z, cond), z, cond)


def traversal_z(origin: np.ndarray, dims, values: np.ndarray) -> np.ndarray:
    """One row per dimension in dims: origin with that dimension set to each of values.

    Returns (len(dims) * len(values), d), row-major (dimension, value).
    """
    values = np.asarray(values, np.float32)
    z = np.repeat(np.asarray(origin, np.float32)[None], len(dims) * len(values), axis=0)
    for row, dim in enumerate(dims):
        z[row * len(values):(row + 1) * len(values), dim] = values
    return z


def principal_axes(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, top-2 principal directions (2, d) and their explained-variance ratios of codes z."""
    z = np.asarray(z, dtype=np.float64)
    mean = z.mean(axis=0)
    _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
    var = s**2
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    axes = np.zeros((2, z.shape[1]))
    k = min(2, vt.shape[0])
    axes[:k] = vt[:k]
    if k < 2:  # a 1-D latent: the second axis is absent, keep it zero
        ratio = np.concatenate([ratio, np.zeros(2 - k)])
    return mean.astype(np.float32), axes.astype(np.float32), ratio[:2].astype(np.float32)


def tsne_2d(z: np.ndarray, *, seed: int) -> np.ndarray:
    """t-SNE embedding (N, 2) of codes z (scikit-learn, imported only when asked for)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise UsageError("--tsne needs scikit-learn, which is not installed; "
                         "run pip install 'vae-cli[tsne]' (or pip install scikit-learn)") from None
    perplexity = float(min(30.0, max(2.0, (len(z) - 1) / 3)))  # sklearn requires < n_samples
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(z, np.float64)).astype(np.float32)


def latent_grid(n: int, value_range: float) -> np.ndarray:
    """n evenly spaced values over [-value_range, value_range]."""
    return np.linspace(-value_range, value_range, n, dtype=np.float32)


def manifold(decoder, latent_dim: int, *, n: int = 30, value_range: float = 4.0,
             origin=None, axes=None, label=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode an n x n grid of latent points in batched calls (MANIFOLD_BATCH points each).

    For latent_dim == 2 the grid covers z[0] (columns) and z[1] (rows, top = largest). For
    larger latents pass `origin` and `axes` (2, d), e.g. from `principal_axes`, and the grid
    spans origin + a*axes[0] + b*axes[1]. A conditional decoder gets the one-hot `label` (K,)
    at every point. Returns (images row-major, grid_x, grid_y top-down).
    """
    grid_x = latent_grid(n, value_range)
    grid_y = grid_x[::-1].copy()
    a, b = np.meshgrid(grid_x, grid_y)  # (n, n) each, row i <-> grid_y[i]
    if axes is None:
        if latent_dim != 2:
            raise ValueError("a manifold over more than 2 latent dimensions needs origin and axes")
        z = np.stack([a.ravel(), b.ravel()], axis=1)
    else:
        origin = np.zeros(latent_dim, np.float32) if origin is None else origin
        z = origin + a.ravel()[:, None] * axes[0] + b.ravel()[:, None] * axes[1]
    labels = None if label is None else np.tile(np.asarray(label, np.float32), (len(z), 1))
    return decode(decoder, z.astype(np.float32), labels, MANIFOLD_BATCH), grid_x, grid_y

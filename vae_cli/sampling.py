"""Latent-space operations that return arrays: encode, decode in batches, prior samples,
the manifold grid and the principal directions of the latent codes.

Nothing here writes files or draws: plots.py turns these arrays into figures. Every decode is
batched; the tutorial's per-point loop (900 `predict` calls for a 30x30 manifold) is the thing
this module exists to replace.
"""

from __future__ import annotations

import numpy as np

DECODE_BATCH = 1024


def encode_mean(encoder, x: np.ndarray, batch_size: int = DECODE_BATCH) -> np.ndarray:
    """z_mean of every image, (N, latent_dim)."""
    z_mean, _, _ = encoder.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(z_mean, dtype=np.float32)


def decode(decoder, z: np.ndarray, batch_size: int = DECODE_BATCH) -> np.ndarray:
    """x_hat for each latent point, float32 (N, H, W, C) in [0, 1].

    A gaussian-learned decoder also outputs each pixel's log-variance; images are its means.
    """
    z = np.asarray(z, dtype=np.float32)
    if len(z) <= batch_size:  # one direct call skips predict()'s per-call setup
        out = decoder(z, training=False)
    else:
        out = decoder.predict(z, batch_size=batch_size, verbose=0)
    return np.asarray(out[0] if isinstance(out, (list, tuple)) else out, dtype=np.float32)


def prior_z(n: int, latent_dim: int, *, seed: int, temperature: float = 1.0) -> np.ndarray:
    """n draws from N(0, temperature^2 I), reproducible for a seed."""
    rng = np.random.default_rng(seed)
    return (temperature * rng.standard_normal((n, latent_dim))).astype(np.float32)


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


def latent_grid(n: int, value_range: float) -> np.ndarray:
    """n evenly spaced values over [-value_range, value_range]."""
    return np.linspace(-value_range, value_range, n, dtype=np.float32)


def manifold(decoder, latent_dim: int, *, n: int = 30, value_range: float = 4.0,
             origin=None, axes=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode an n x n grid of latent points in ONE batched call.

    For latent_dim == 2 the grid covers z[0] (columns) and z[1] (rows, top = largest). For
    larger latents pass `origin` and `axes` (2, d), e.g. from `principal_axes`, and the grid
    spans origin + a*axes[0] + b*axes[1]. Returns (images row-major, grid_x, grid_y top-down).
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
    return decode(decoder, z.astype(np.float32)), grid_x, grid_y

"""The standard figures of a run, drawn from models and arrays; shared by vae-train and vae-plot
so both produce the same look."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import plots, sampling

FIGURES = ("loss", "latent", "manifold", "samples", "recon")
MAX_SCATTER_POINTS = 10_000


def latent_projection(z: np.ndarray):
    """2-D view of codes z: the codes themselves for d <= 2, else a PCA projection.

    Returns (points (N, 2), xlabel, ylabel, origin, axes) where origin/axes are None for d <= 2.
    """
    if z.shape[1] == 2:
        return z, "z[0]", "z[1]", None, None
    if z.shape[1] == 1:
        return np.concatenate([z, np.zeros_like(z)], axis=1), "z[0]", "(latent is 1-D)", None, None
    origin, axes, ratio = sampling.principal_axes(z)
    points = (z - origin) @ axes.T
    return (points, f"PC1 ({ratio[0]:.0%} of variance)", f"PC2 ({ratio[1]:.0%} of variance)",
            origin, axes)


def draw_figures(encoder, decoder, *, latent_dim: int, x, y, out_dir, history=None,
                 what=FIGURES, grid: int = 30, value_range: float = 4.0, seed: int = 0,
                 n_samples: int = 100) -> list[Path]:
    """Write the requested figures into out_dir; returns the paths written."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    need_codes = {"latent", "manifold"} & set(what)
    z = sampling.encode_mean(encoder, x[:MAX_SCATTER_POINTS]) if need_codes else None
    labels = None if y is None else y[:MAX_SCATTER_POINTS]
    proj = latent_projection(z) if z is not None else None

    if "loss" in what and history:
        plots.plot_loss(history, out_dir / "loss.png")
        written.append(out_dir / "loss.png")
    if "latent" in what:
        points, xl, yl, _, _ = proj
        title = "Latent space (z_mean)" if latent_dim <= 2 else f"Latent space (PCA of {latent_dim}-D z_mean)"
        plots.plot_latent(points, labels, out_dir / "latent.png", xlabel=xl, ylabel=yl, title=title)
        written.append(out_dir / "latent.png")
    if "manifold" in what:
        _, xl, yl, origin, axes = proj
        if latent_dim == 1:
            axes, origin = np.array([[1.0], [0.0]], np.float32), np.zeros(1, np.float32)
        images, gx, gy = sampling.manifold(decoder, latent_dim, n=grid, value_range=value_range,
                                           origin=origin, axes=axes)
        title = "Decoded latent grid" if latent_dim == 2 else "Decoded grid over the top two principal directions"
        plots.plot_manifold(images, gx, gy, out_dir / "manifold.png", xlabel=xl, ylabel=yl, title=title)
        written.append(out_dir / "manifold.png")
    if "samples" in what:
        z_prior = sampling.prior_z(n_samples, latent_dim, seed=seed)
        plots.save_image_grid(sampling.decode(decoder, z_prior), out_dir / "samples.png",
                              title="Samples, z ~ N(0, I)")
        written.append(out_dir / "samples.png")
    if "recon" in what:
        # Evenly spaced picks: sources sorted by class (like the bundled digits) still show all classes.
        originals = x[np.linspace(0, len(x) - 1, min(20, len(x))).astype(int)]
        x_hat = sampling.decode(decoder, sampling.encode_mean(encoder, originals))
        plots.plot_reconstructions(originals, x_hat, out_dir / "reconstructions.png", n=20)
        written.append(out_dir / "reconstructions.png")
    return written

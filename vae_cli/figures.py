"""The standard figures of a run, drawn from models and arrays; shared by vae-train and vae-plot
so both produce the same look.

Each figure is a small function from a `FigureSet` (models, held-out images, options) to the
paths it wrote; FIGURES maps names (the values of vae-plot --what) to them. Figures drawn from the
models alone (loss, samples, a manifold of a latent space of at most two dimensions) need no
images, so vae-plot loads the data only when `needs_data` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from . import latent, plots
from .data import one_hot

TRAINING_FIGURES = ("loss", "latent", "manifold", "samples", "recon")
# A conditional run has one manifold per class, which take several times as long to draw as all
# the other figures together; vae-train leaves them to `vae-plot RUN --what manifold` and shows
# the classes in samples.png instead.
CONDITIONAL_TRAINING_FIGURES = ("loss", "latent", "samples", "recon")
MAX_SCATTER_POINTS = 10_000
MAX_TRAVERSAL_DIMS = 20  # beyond this the rows get too thin: the most active dimensions are shown
INTERPOLATION_PAIRS, INTERPOLATION_STEPS = 8, 10


def needs_data(what, latent_dim: int) -> bool:
    """Whether any of the figures `what` is drawn from held-out images: all but loss and samples,
    and manifold too when latent_dim > 2 (its plane spans the codes' two principal directions)."""
    return any(name not in ("loss", "samples", "manifold") or (name == "manifold" and latent_dim > 2)
               for name in what)


@dataclass
class FigureSet:
    """What the figures are drawn from. x/y are held-out images and their labels (y may be None
    unless the run is conditional, i.e. num_classes is set); x may be None when no figure drawn
    needs images (see needs_data). class_names names the labels in keys and titles (config.json
    keeps a folder's class names); anything but a list of strings is ignored."""

    encoder: object
    decoder: object
    latent_dim: int
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    history: dict | None = None
    grid: int = 30
    value_range: float = 4.0  # manifold: [-r, r] along each axis
    traversal_range: float = 3.0
    seed: int = 0
    n_samples: int = 100
    tsne: bool = False
    index: int = 0  # the held-out image whose code the traversal starts from
    sampler: object = None  # samplers.LatentSampler of the samples figure; None: z ~ N(0, I)
    prior: object = None  # a learned prior (mixture.GaussianMixture): the manifold and traversal span it

    def __post_init__(self):
        if self.num_classes is not None and self.x is not None and self.y is None:
            raise ValueError("a conditional run's figures need the labels y of the images x")
        names = self.class_names
        ok = isinstance(names, (list, tuple)) and names and all(isinstance(t, str) for t in names)
        self.class_names = tuple(names) if ok else None

    def class_name(self, k: int) -> str:
        """Class k as figure text: its name when known, else `label k`."""
        if self.class_names and 0 <= k < len(self.class_names):
            return plots.class_label(self.class_names[k])
        return f"label {k}"

    def labels(self, count: int | None = None):
        """One-hot labels of the first `count` images for a conditional run, else None."""
        if self.num_classes is None:
            return None
        return one_hot(self.y[:count], self.num_classes)

    @cached_property
    def codes(self) -> np.ndarray:
        """z_mean of (at most MAX_SCATTER_POINTS) held-out images."""
        if self.x is None:
            raise ValueError("this figure is drawn from held-out images, but none were given")
        n = MAX_SCATTER_POINTS
        return latent.encode_mean(self.encoder, self.x[:n], self.labels(n))

    @cached_property
    def projection(self):
        return latent_projection(self.codes)


def latent_projection(z: np.ndarray):
    """2-D view of codes z: the codes themselves for d <= 2, else a PCA projection.

    Returns (points (N, 2), xlabel, ylabel, origin, axes) where origin/axes are None for d <= 2.
    """
    if z.shape[1] == 2:
        return z, "z[0]", "z[1]", None, None
    if z.shape[1] == 1:
        return np.concatenate([z, np.zeros_like(z)], axis=1), "z[0]", "(latent is 1-D)", None, None
    origin, axes, ratio = latent.principal_axes(z)
    points = (z - origin) @ axes.T
    return (points, f"PC1 ({ratio[0]:.0%} of variance)", f"PC2 ({ratio[1]:.0%} of variance)",
            origin, axes)


def _loss(fs: FigureSet, out: Path) -> list[Path]:
    if not fs.history:
        return []
    plots.plot_loss(fs.history, out / "loss.png")
    return [out / "loss.png"]


def _latent(fs: FigureSet, out: Path) -> list[Path]:
    labels = None if fs.y is None else fs.y[:MAX_SCATTER_POINTS]
    if fs.tsne and fs.latent_dim > 2:
        n = min(len(fs.codes), latent.MAX_TSNE_POINTS)
        points = latent.tsne_2d(fs.codes[:n], seed=fs.seed)
        plots.plot_latent(points, None if labels is None else labels[:n], out / "latent-tsne.png",
                          xlabel="t-SNE 1", ylabel="t-SNE 2", class_names=fs.class_names,
                          title=f"Latent space (t-SNE of {fs.latent_dim}-D z_mean, {n:,} images)")
        return [out / "latent-tsne.png"]
    points, xl, yl, _, _ = fs.projection
    title = ("Latent space (z_mean)" if fs.latent_dim <= 2
             else f"Latent space (PCA of {fs.latent_dim}-D z_mean)")
    plots.plot_latent(points, labels, out / "latent.png", xlabel=xl, ylabel=yl, title=title,
                      class_names=fs.class_names)
    return [out / "latent.png"]


def _manifold(fs: FigureSet, out: Path) -> list[Path]:
    """manifold.png; a conditional run gets manifold-<label>.png, one per class."""
    if fs.latent_dim > 2:
        _, xl, yl, origin, axes = fs.projection
    else:  # the latent space itself: no codes needed
        xl, yl, origin, axes = "z[0]", "z[1]" if fs.latent_dim == 2 else "(latent is 1-D)", None, None
    if fs.latent_dim == 1:
        axes, origin = np.array([[1.0], [0.0]], np.float32), np.zeros(1, np.float32)
    title = ("Decoded latent grid" if fs.latent_dim == 2
             else "Decoded grid over the top two principal directions")
    to_z = (lambda gx, gy: (gx, gy))  # grid values are z values, except over a learned prior:
    if fs.prior is not None and fs.latent_dim <= 2:  # its mean +- range x its standard deviation
        mean, std = fs.prior.mean().astype(np.float32), fs.prior.std().astype(np.float32)
        origin, axes = mean, np.diag(np.pad(std, (0, 2 - fs.latent_dim)))[:2, :fs.latent_dim]
        title = f"Decoded latent grid over the prior (mean ± {fs.value_range:g} std)"
        to_z = (lambda gx, gy: (mean[0] + gx * std[0], gy if fs.latent_dim == 1 else mean[1] + gy * std[1]))
    classes = [None] if fs.num_classes is None else range(fs.num_classes)
    written = []
    for k in classes:
        label = None if k is None else one_hot(np.array([k]), fs.num_classes)[0]
        images, gx, gy = latent.manifold(fs.decoder, fs.latent_dim, n=fs.grid, value_range=fs.value_range,
                                           origin=origin, axes=axes, label=label)
        gx, gy = to_z(gx, gy)
        path = out / ("manifold.png" if k is None else f"manifold-{k}.png")
        plots.plot_manifold(images, gx, gy, path, xlabel=xl, ylabel=yl,
                            title=title if k is None else f"{title}, {fs.class_name(k)}")
        written.append(path)
    return written


def _samples(fs: FigureSet, out: Path) -> list[Path]:
    source = "z ~ N(0, I)" if fs.sampler is None or fs.sampler.mixture is None else f"z from {fs.sampler.description}"
    if fs.num_classes is None:
        z = latent.prior_z(fs.n_samples, fs.latent_dim, seed=fs.seed) if fs.sampler is None \
            else fs.sampler(fs.n_samples, seed=fs.seed)
        plots.save_image_grid(latent.decode(fs.decoder, z), out / "samples.png", title=f"Samples, {source}")
    else:
        per_class = 10
        z, labels = latent.class_grid(fs.num_classes, per_class, fs.latent_dim, seed=fs.seed)
        if fs.sampler is not None:  # the same per_class points in every row, as class_grid's
            z = np.tile(fs.sampler(per_class, seed=fs.seed), (fs.num_classes, 1))
        plots.plot_labelled_rows(latent.decode(fs.decoder, z, labels), per_class,
                                 [fs.class_name(k) for k in range(fs.num_classes)], out / "samples.png",
                                 title=f"Samples per class, {source} (one z per column)")
    return [out / "samples.png"]


def _recon(fs: FigureSet, out: Path) -> list[Path]:
    # Evenly spaced picks: sources sorted by class (like the bundled digits) still show all classes.
    picks = np.linspace(0, len(fs.x) - 1, min(20, len(fs.x))).astype(int)
    originals = fs.x[picks]
    labels = None if fs.num_classes is None else one_hot(fs.y[picks], fs.num_classes)
    codes = latent.encode_mean(fs.encoder, originals, labels)
    plots.plot_reconstructions(originals, latent.decode(fs.decoder, codes, labels),
                               out / "reconstructions.png", n=20)
    return [out / "reconstructions.png"]


def _interpolation(fs: FigureSet, out: Path) -> list[Path]:
    """Rows of latent walks between random pairs of held-out images, the images at both ends."""
    n_pairs = min(INTERPOLATION_PAIRS, len(fs.x) // 2)
    if n_pairs < 1:
        return []
    picks = np.random.default_rng(fs.seed).choice(len(fs.x), 2 * n_pairs, replace=False)
    rows = []
    for a, b in picks.reshape(-1, 2):
        pair = fs.x[[a, b]]
        labels = None if fs.num_classes is None else one_hot(fs.y[[a, b]], fs.num_classes)
        walk = latent.interpolate_images(fs.encoder, fs.decoder, pair, INTERPOLATION_STEPS, labels)
        rows.append(np.concatenate([pair[:1], walk.images, pair[1:]]))
    plots.save_image_grid(np.concatenate(rows), out / "interpolation.png", ncols=INTERPOLATION_STEPS + 2,
                          title="Latent interpolations (first and last column: the held-out images)")
    return [out / "interpolation.png"]


def _traversal(fs: FigureSet, out: Path) -> list[Path]:
    """One row per latent dimension swept over [-r, r], the others at one image's z_mean."""
    image, label = fs.x[fs.index:fs.index + 1], None
    if fs.num_classes is not None:
        label = one_hot(fs.y[fs.index:fs.index + 1], fs.num_classes)
    origin = latent.encode_mean(fs.encoder, image, label)[0]
    dims = np.arange(fs.latent_dim)
    if fs.latent_dim > MAX_TRAVERSAL_DIMS:  # the most active units, in index order
        dims = np.sort(np.argsort(fs.codes.var(axis=0))[::-1][:MAX_TRAVERSAL_DIMS])
    values = np.linspace(-fs.traversal_range, fs.traversal_range, 11, dtype=np.float32)
    z = latent.traversal_z(origin, dims, values)
    title, xlabel = f"Latent traversal from held-out image #{fs.index}", None
    if fs.prior is not None:  # a learned prior: each dimension over its own mean +- t std
        mean, std = fs.prior.mean(), fs.prior.std()
        for row, dim in enumerate(dims):
            z[row * len(values):(row + 1) * len(values), dim] = mean[dim] + values * std[dim]
        xlabel = "t: the traversed dimension at the prior's mean + t std (others held fixed)"
    labels = None if label is None else np.repeat(label, len(z), axis=0)
    plots.plot_traversal(latent.decode(fs.decoder, z, labels), len(dims), len(values), values,
                         out / "traversal.png", dims=dims, title=title, xlabel=xlabel)
    return [out / "traversal.png"]


FIGURES = {"loss": _loss, "latent": _latent, "manifold": _manifold, "samples": _samples,
           "recon": _recon, "interpolation": _interpolation, "traversal": _traversal}


def draw(fs: FigureSet, out_dir, what=TRAINING_FIGURES) -> list[Path]:
    """Write the requested figures into out_dir; returns the paths written."""
    out = Path(out_dir)
    return [path for name in what for path in FIGURES[name](fs, out)]


def draw_figures(encoder, decoder, *, latent_dim: int, x, y, out_dir, history=None,
                 what=TRAINING_FIGURES, **options) -> list[Path]:
    """The training figures (or `what`); options are FigureSet fields (grid, seed, num_classes...)."""
    return draw(FigureSet(encoder, decoder, latent_dim, x, y, history=history, **options), out_dir, what)

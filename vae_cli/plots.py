"""Every PNG vae-cli writes: figure functions that take numpy arrays and a path.

Each function draws under the Agg backend, saves, and closes its figure; nothing here builds a
model, loads a run or reads a config (model diagrams are diagram.py's). Every write goes to a
hidden temporary file in the target directory and is renamed into place, so a killed process
never leaves a truncated PNG. Images are float arrays in [0, 1] shaped
(N, H, W, C) with C == 1 (drawn grayscale) or C == 3 (RGB).
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display: plotting commands only ever write files
import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .atomic import atomic_path  # noqa: E402

DPI = 110
MAX_TICK_LABELS = 11  # more z labels than this overlap on a 30-wide manifold
GAP_VALUE = 0.5  # between mosaic tiles: mid grey shows against black digits' and white backgrounds
MAX_CLASS_NAME = 24  # characters of a class name shown in a key or a row label
_LOSS_TITLES = {"loss": "total loss", "recon": "reconstruction", "kl": "KL divergence"}


# ---------------------------------------------------------------------------- writing helpers

def save_figure(fig, path, *, tight: bool = True) -> None:
    """Save a figure atomically at the shared dpi, then close it whatever happens.

    tight=False keeps the figure's own layout: a tight bounding box draws the figure twice, which
    doubles the cost of the big manifold mosaic, whose margins are already sized in inches.
    """
    try:
        with atomic_path(path) as tmp:
            # zlib level 1: ~30% faster to write than the default 6, files ~7% larger
            layout = {"bbox_inches": "tight", "pad_inches": 0.08} if tight else {}
            fig.savefig(tmp, dpi=DPI, pil_kwargs={"compress_level": 1}, **layout)
    finally:
        plt.close(fig)


def _as_images(images) -> np.ndarray:
    """Float (N, H, W, C) clipped to [0, 1]; accepts a single (H, W, C) image too."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, C) with C 1 or 3. Received: shape={images.shape}")
    return np.clip(images, 0.0, 1.0)


def _scale(h_px: int, w_px: int, target: int = 800, max_scale: float = 8.0,
           max_px: int = 1800) -> float:
    """Screen pixels per image pixel: enlarge small mosaics, never past max_px on a side."""
    side = max(h_px, w_px, 1)
    scale = min(max_scale, max(1.0, target / side))
    return min(scale, max_px / side)


def _image_figure(h_px: int, w_px: int, scale: float, margins=(0.0, 0.0, 0.0, 0.0)):
    """A figure whose single axes shows h_px x w_px image pixels at `scale` screen pixels each.

    margins are (left, bottom, right, top) in inches, room for tick labels and titles; sizing the
    axes exactly keeps every image pixel visible instead of resampling it to a default layout.
    """
    left, bottom, right, top = margins
    img_w, img_h = w_px * scale / DPI, h_px * scale / DPI
    fig_w, fig_h = img_w + left + right, img_h + bottom + top
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((left / fig_w, bottom / fig_h, img_w / fig_w, img_h / fig_h))
    return fig, ax


def _imshow(ax, mosaic: np.ndarray, scale: float = 1.0) -> None:
    """Draw an (H, W, C) mosaic: grayscale on [0, 1] for C == 1, RGB otherwise."""
    interpolation = "nearest" if scale >= 1 else "antialiased"
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation=interpolation)
    else:
        ax.imshow(mosaic, interpolation=interpolation)


def _thin(n: int, most: int = MAX_TICK_LABELS) -> np.ndarray:
    """Indices of at most `most` roughly even positions among n, both ends included."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, most)).astype(int))


def _cell_ticks(set_ticks, set_labels, values, size: int, step: int, fmt: str = "%.1f") -> None:
    """Minor ticks at every cell centre (cells `size` pixels wide, one every `step`), labelled
    major ticks at a thinned subset."""
    centres = np.arange(len(values)) * step + (size - 1) / 2
    keep = _thin(len(values))
    set_ticks(centres, minor=True)
    set_ticks(centres[keep])
    set_labels([fmt % values[i] for i in keep])


def class_label(name: str) -> str:
    """A class name as figure text: printable, at most MAX_CLASS_NAME characters, and never read
    as mathtext (a folder may be called `$x$`)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(name))
    if len(text) > MAX_CLASS_NAME:
        text = text[: MAX_CLASS_NAME - 1] + "\u2026"
    return text.replace("$", r"\$")


# ---------------------------------------------------------------------------- images

def tile_gap(h: int, w: int) -> int:
    """Pixels between neighbouring tiles of h x w images: 1, or 2 from 64 pixels up."""
    return 1 if min(h, w) < 64 else 2


def tile_images(images, ncols=None, gap=None) -> np.ndarray:
    """(N, H, W, C) -> one mosaic, row-major, tiles `gap` pixels apart (default tile_gap(H, W))
    on GAP_VALUE grey, so small images never merge into stripes; blank cells are 0.

    ncols defaults to ceil(sqrt(N)); the shape is (rows*H + (rows-1)*gap, ncols*W + (ncols-1)*gap, C).
    """
    images = np.asarray(images)
    n, h, w, c = images.shape
    gap = tile_gap(h, w) if gap is None else int(gap)
    ncols = max(1, int(ncols) if ncols else math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    fill = GAP_VALUE if np.issubdtype(images.dtype, np.floating) else np.iinfo(images.dtype).max // 2
    cells = np.full((nrows * ncols, h + gap, w + gap, c), fill, dtype=images.dtype)
    cells[:, :h, :w] = 0
    cells[:n, :h, :w] = images
    # (rows, cols, H+g, W+g, C) -> (rows, H+g, cols, W+g, C) -> one image; drop the outer gap
    mosaic = cells.reshape(nrows, ncols, h + gap, w + gap, c).transpose(0, 2, 1, 3, 4)
    mosaic = mosaic.reshape(nrows * (h + gap), ncols * (w + gap), c)
    return mosaic[: mosaic.shape[0] - gap, : mosaic.shape[1] - gap]


def save_image(image, path) -> None:
    """One (H, W, C) image as a PNG at its native resolution (grayscale PNG for C == 1)."""
    from PIL import Image

    pixels = np.round(_as_images(image)[0] * 255).astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0], "L") if pixels.shape[-1] == 1 else Image.fromarray(pixels)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def save_image_grid(images, path, *, ncols=None, title=None) -> None:
    """The tiled mosaic with no axes and an optional title; 100 digits stay readable."""
    mosaic = tile_images(_as_images(images), ncols)
    h, w = mosaic.shape[:2]
    scale = _scale(h, w)
    fig, ax = _image_figure(h, w, scale, (0, 0, 0, 0.35 if title else 0))
    _imshow(ax, mosaic, scale)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=11)
    save_figure(fig, path)


def plot_interpolation(images, path, *, title=None) -> None:
    """One row of images (the steps of a latent walk), left to right."""
    images = _as_images(images)
    save_image_grid(images, path, ncols=len(images), title=title)


def plot_reconstructions(originals, reconstructions, path, *, n=10) -> None:
    """Originals above their reconstructions, in row pairs of at most 10 images."""
    originals, reconstructions = _as_images(originals), _as_images(reconstructions)
    n = max(1, min(n, len(originals), len(reconstructions)))
    per_row = min(n, 10)
    pairs = math.ceil(n / per_row)
    h, w = originals.shape[1:3]
    scale = _scale(2 * pairs * h, per_row * w, target=700)
    row_in, gap_in, left_in = h * scale / DPI, 0.15, 1.2  # left margin holds the row labels
    fig_w, fig_h = left_in + per_row * w * scale / DPI + 0.05, pairs * (2 * row_in + gap_in)
    fig = plt.figure(figsize=(fig_w, fig_h))
    for p in range(pairs):
        chunk = slice(p * per_row, min((p + 1) * per_row, n))
        for row, (batch, label) in enumerate(((originals, "input"), (reconstructions, "reconstruction"))):
            top = p * (2 * row_in + gap_in) + (row + 1) * row_in  # inches from the figure top
            box = (left_in / fig_w, 1 - top / fig_h, 1 - (left_in + 0.05) / fig_w, row_in / fig_h)
            ax = fig.add_axes(box)
            _imshow(ax, tile_images(batch[chunk], per_row), scale)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
    save_figure(fig, path)


def _labelled_rows(images, ncols, row_labels, path, *, title=None, values=None, xlabel=None) -> None:
    """A mosaic of len(row_labels) rows of ncols images, each row named on the left; columns get
    tick labels from `values` when given."""
    images = _as_images(images)
    h, w = images.shape[1:3]
    step = h + tile_gap(h, w)
    mosaic = tile_images(images, ncols)[: len(row_labels) * step - tile_gap(h, w)]
    scale = _scale(*mosaic.shape[:2], target=700)
    left = 0.25 + 0.08 * max(len(label) for label in row_labels)
    fig, ax = _image_figure(*mosaic.shape[:2], scale,
                            (left, 0.6 if values is not None else 0.1, 0.1, 0.4 if title else 0.1))
    _imshow(ax, mosaic, scale)
    if values is not None:
        _cell_ticks(ax.set_xticks, ax.set_xticklabels, np.asarray(values, dtype=float), w,
                    w + tile_gap(h, w), fmt="%g")
    else:
        ax.set_xticks([])
    ax.set_yticks(np.arange(len(row_labels)) * step + (h - 1) / 2)
    ax.set_yticklabels(row_labels)
    if xlabel:
        ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    save_figure(fig, path)


def plot_traversal(images, n_dims, n_steps, values, path, *, dims=None, title="Latent traversal",
                   xlabel=None) -> None:
    """One row per latent dimension (labelled z[i], i from dims, default 0..n_dims-1); columns are
    the traversed values (xlabel says what they are)."""
    dims = range(n_dims) if dims is None else dims
    _labelled_rows(images, n_steps, [f"z[{i}]" for i in dims], path, title=title, values=values,
                   xlabel=xlabel or "value of the traversed dimension (others held fixed)")


def plot_labelled_rows(images, ncols, row_labels, path, *, title=None) -> None:
    """Rows of ncols images named on the left, e.g. one row of samples per class."""
    _labelled_rows(images, ncols, list(row_labels), path, title=title)


def plot_manifold(mosaic_images, grid_x, grid_y, path, *, xlabel="z[0]", ylabel="z[1]",
                  title=None) -> None:
    """The decoded grid as one image; row i is grid_y[i] (top = first), column j is grid_x[j]."""
    images = _as_images(mosaic_images)
    grid_x, grid_y = np.asarray(grid_x, dtype=float), np.asarray(grid_y, dtype=float)
    mosaic = tile_images(images, len(grid_x))
    h, w = images.shape[1:3]
    scale = _scale(*mosaic.shape[:2], target=840)
    fig, ax = _image_figure(*mosaic.shape[:2], scale, (0.8, 0.6, 0.2, 0.4))
    _imshow(ax, mosaic, scale)
    gap = tile_gap(h, w)
    _cell_ticks(ax.set_xticks, ax.set_xticklabels, grid_x, w, w + gap)
    _cell_ticks(ax.set_yticks, ax.set_yticklabels, grid_y, h, h + gap)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    save_figure(fig, path, tight=False)


# ---------------------------------------------------------------------------- charts

def plot_loss(history: dict[str, list[float]], path) -> None:
    """One panel per quantity among (loss, recon, kl): train solid, validation dashed."""
    names = [k for k in _LOSS_TITLES if k in history or f"val_{k}" in history]
    if not names:  # an unfamiliar history: plot whatever training curves it has
        names = sorted(k for k in history if not k.startswith("val_"))
    n_epochs = max((len(v) for v in history.values()), default=0)
    marker = "o" if n_epochs <= 30 else None
    fig, axes = plt.subplots(1, len(names) or 1, squeeze=False, figsize=(4.2 * max(1, len(names)), 3.4))
    for ax, name in zip(axes[0], names):
        for key, style, label in ((name, "-", "train"), (f"val_{name}", "--", "validation")):
            if key in history and len(history[key]):
                values = np.asarray(history[key], dtype=float)
                ax.plot(np.arange(1, len(values) + 1), values, style, marker=marker, markersize=4,
                        label=label, color="C0" if style == "-" else "C1")
        ax.set_title(_LOSS_TITLES.get(name, name))
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if n_epochs <= 1:  # a lone point: give it a visible epoch axis, not 0.945..1.055
            ax.set_xlim(0.5, 1.5)
            ax.set_xticks([1])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def _class_colours(labels: np.ndarray):
    """(colour index per point, cmap, norm, class ids): discrete tab10 up to 10 classes."""
    classes, index = np.unique(labels, return_inverse=True)
    k = len(classes)
    if k <= 10:
        cmap = ListedColormap(plt.get_cmap("tab10").colors[:k])
    else:
        cmap = plt.get_cmap("viridis").resampled(k)
    return index, cmap, BoundaryNorm(np.arange(k + 1) - 0.5, k), classes


def plot_latent(points, labels, path, *, xlabel="z[0]", ylabel="z[1]", title="Latent space",
                class_names=None) -> None:
    """Scatter of 2-D points, coloured by integer class with a colorbar when labels exist; the
    bar names class k class_names[k] when given, else k."""
    points = np.asarray(points, dtype=float).reshape(len(points), -1)[:, :2]
    size = 3 if len(points) > 3000 else 8
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.5, linewidths=0, color="C0")
        title = f"{title} (no labels)"
    else:
        index, cmap, norm, classes = _class_colours(np.asarray(labels).reshape(-1))
        ax.scatter(points[:, 0], points[:, 1], c=index, cmap=cmap, norm=norm, s=size,
                          alpha=0.6, linewidths=0)
        keep = _thin(len(classes))
        solid = plt.cm.ScalarMappable(norm=norm, cmap=cmap)  # the bar without the dots' alpha
        bar = fig.colorbar(solid, ax=ax, ticks=keep, fraction=0.046, pad=0.03)
        names = list(class_names or [])
        bar.set_ticklabels([class_label(names[c]) if 0 <= c < len(names) else str(c) for c in classes[keep]])
        bar.set_label("class" if names else "label")
        bar.minorticks_off()
    spans = np.ptp(points, axis=0) if len(points) else np.ones(2)
    if spans.min() > 0 and 0.25 <= spans[0] / spans[1] <= 4:  # equal only when it costs little
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.25)
    save_figure(fig, path)

"""Generated images as files: one PNG per image, a grid, and the arrays, in a folder of their own.

The folder must be new or empty, so writing never changes a file that already existed. Layout:

    sample-0001.png ...   one image each, native resolution (grayscale or RGB)
    grid.png              the first GRID_MAX images tiled (one row for an interpolation)
    samples.npy           float32 (N, H, W, C) in [0, 1]
    z.npy                 float32 (N, latent_dim): the latent points that were decoded
    labels.npy            float32 (N, K): the decoder's one-hot label input (conditional runs only)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from . import plots
from .atomic import atomic_path
from .errors import UsageError
from .run import check_can_create, make_unique_dir
from .sampling import Samples

GRID_MAX = 400  # a 20 x 20 grid is the most that stays readable in one PNG


def check_output_folder(out: str | os.PathLike) -> Path:
    """Refuse, before any work, an --out that exists and is not an empty folder, or that cannot be made."""
    path = Path(out).expanduser()
    check_can_create(path)
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"--out: {path} already holds files; vae-sample writes only into a new or "
                         "empty folder so nothing is overwritten; pick another --out or leave it out")
    return path


def new_output_folder(root: Path) -> Path:
    """root/<YYYYmmdd-HHMMSS>[-k]: a folder nobody has used."""
    return make_unique_dir(root, time.strftime("%Y%m%d-%H%M%S"))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array, allow_pickle=False)


def write_samples(folder: Path, samples: Samples, *, title: str, ncols: int | None = None) -> list[Path]:
    """Write every file of the layout above into `folder` (created if needed); returns them."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.clip(samples.images, 0.0, 1.0).astype(np.float32)
    width = max(4, len(str(len(images))))
    written = []
    for i, image in enumerate(images, start=1):
        path = folder / f"sample-{i:0{width}d}.png"
        plots.save_image(image, path)
        written.append(path)
    shown = images[:GRID_MAX]
    if len(images) > GRID_MAX:
        title = f"{title} (first {GRID_MAX:,} of {len(images):,})"
    plots.save_image_grid(shown, folder / "grid.png", ncols=ncols, title=title)
    arrays = {"samples.npy": images, "z.npy": samples.z.astype(np.float32)}
    if samples.labels is not None:
        arrays["labels.npy"] = samples.labels.astype(np.float32)
    for name, array in arrays.items():
        _save_npy(folder / name, array)
    return [*written, folder / "grid.png", *(folder / name for name in arrays)]

"""Generated images as files: one PNG per image, a grid, and the arrays, in a folder of their own.

The folder must be new or empty, so writing never changes a file that already existed. Layout:

    sample-0001.png ...   one image each, native resolution (grayscale or RGB)
    grid.png              the first GRID_MAX images tiled (one row for an interpolation)
    samples.npy           float32 (N, H, W, C) in [0, 1]
    z.npy                 float32 (N, latent_dim): the latent points that were decoded
    labels.npy            float32 (N, K): the decoder's one-hot label input (conditional runs only)
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from . import plots
from .atomic import atomic_path
from .errors import Interrupted, UsageError
from .run import check_can_create, make_unique_dir
from .latent import Samples

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


class _NpyWriter:
    """An .npy file written one batch at a time: header for the final shape first, then raw rows,
    so an array of any length passes through memory one batch at a time."""

    def __init__(self, stack: contextlib.ExitStack, path: Path, total: int, row_shape: tuple[int, ...]):
        tmp = stack.enter_context(atomic_path(path))
        self.file = stack.enter_context(open(tmp, "wb"))  # noqa: SIM115  (closed before the rename)
        np.lib.format.write_array_header_1_0(
            self.file, {"descr": "<f4", "fortran_order": False, "shape": (total, *row_shape)})

    def write(self, rows: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())


def write_samples(folder: Path, batches: Iterable[Samples], total: int, *, title: str,
                  ncols: int | None = None, progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write every file of the layout above into `folder` (created if needed) from batches
    holding `total` images in all; returns the .npy files. Memory holds one batch plus the grid.

    The PNGs appear as they are made; the .npy files are renamed into place only once complete,
    so an interrupted run leaves no .npy at all rather than a short one. Ctrl-C raises
    Interrupted, whose message says which PNGs were kept.
    """
    folder.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(total)))
    shown: list[np.ndarray] = []
    done = 0
    try:
        with contextlib.ExitStack() as stack:
            arrays: dict[str, _NpyWriter] = {}
            for batch in batches:
                images = np.clip(batch.images, 0.0, 1.0).astype(np.float32)
                parts = {"samples.npy": images, "z.npy": batch.z, "labels.npy": batch.labels}
                if not arrays:
                    arrays = {name: _NpyWriter(stack, folder / name, total, part.shape[1:])
                              for name, part in parts.items() if part is not None}
                for name, writer in arrays.items():
                    writer.write(parts[name])
                for image in images:
                    plots.save_image(image, folder / f"sample-{done + 1:0{width}d}.png")
                    done += 1
                    shown.extend([image] if len(shown) < GRID_MAX else [])
                if progress:
                    progress(done, total)
            if done != total or not arrays:
                raise ValueError(f"write_samples was promised {total} images and got {done}")
    except KeyboardInterrupt:
        kept = (f"kept {done:,} PNG{'s' if done != 1 else ''} (sample-{1:0{width}d}.png to "
                f"sample-{done:0{width}d}.png) in {folder}/" if done else f"no images were written to {folder}/")
        raise Interrupted(signal.SIGINT, f"interrupted; {kept}; no grid.png and no .npy files, which are "
                          "written only once every image is done") from None
    if total > GRID_MAX:
        title = f"{title} (first {GRID_MAX:,} of {total:,})"
    plots.save_image_grid(np.stack(shown), folder / "grid.png", ncols=ncols, title=title)
    return [folder / name for name in arrays]

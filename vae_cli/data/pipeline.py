"""The tf.data pipeline: batches of in-memory arrays or of files streamed from disk.

One batching function (`stream_batches`) serves both; `epoch_keyed_batches` is the all-epochs
pipeline whose order depends on (seed, epoch) alone, which is what makes resume exact.
TensorFlow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import numpy as np

from ..backend import import_tensorflow
from ..errors import UsageError

# TensorFlow can use numpy memory in place only when it starts on this boundary (Eigen's largest
# alignment); images are converted into such buffers so the pipeline does not hold a second copy.
_ALIGN = 64


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one pass over n examples, the last one possibly short."""
    return -(-n // batch_size)


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
    tf = import_tensorflow()

    _check_batch_size(batch_size)
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


def epoch_keyed_batches(x, *, batch_size: int, seed: int, first_epoch: int, epochs: int, y=None):
    """Shuffled batches for epochs first_epoch..epochs-1 as one finite pipeline; fit it with
    steps_per_epoch=steps_per_epoch(len(x), batch_size) and initial_epoch=first_epoch.

    Epoch e visits x in a permutation drawn from (seed, e) alone, so a run resumed at epoch e
    sees exactly the batches the uninterrupted run saw. (tf.data's own reshuffling draws a new
    seed per iterator, and how many iterators Keras creates is an internal detail a new process
    cannot replay.)
    """
    tf = import_tensorflow()

    _check_batch_size(batch_size)
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


def aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an _ALIGN-byte boundary, so the
    pipeline can use it in place."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise UsageError(f"--batch-size: expected an integer >= 1, got {batch_size}")


def _as_tensor(x):
    """A tensor over x's own memory (via DLPack) when x is aligned float32, else a copy; other
    inputs (labels, file names) go to TensorFlow as they are.

    Saves the pipeline's copy of the images: 0.2 GB of a 60,000-digit run's peak memory.
    """
    tf = import_tensorflow()

    if not isinstance(x, np.ndarray):
        return x
    if x.dtype == np.float32 and x.flags.c_contiguous and x.size and x.ctypes.data % _ALIGN == 0:
        try:
            return tf.experimental.dlpack.from_dlpack(x.__dlpack__())
        except (BufferError, TypeError, ValueError):  # e.g. a read-only array: copy instead
            pass
    return tf.convert_to_tensor(x)

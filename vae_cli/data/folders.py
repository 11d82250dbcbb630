"""Folder datasets (`--dataset folder:DIR`): image files streamed from disk by tf.data.

Layout: DIR holds PNG, JPEG, BMP or GIF files, found recursively (hidden files and folders are
skipped). When DIR holds no images itself and at least two of its subfolders do, each such
subfolder is a class and its name a label, sorted by name as in
keras.utils.image_dataset_from_directory; otherwise the images carry no labels.

Memory: only file names are held and shuffled; images are read, decoded, converted and resized
in parallel as batches are needed, with prefetch, so memory does not grow with the number of
files. A bounded sample of the validation images is kept as arrays for the figures and the
metrics.json numbers.

Unreadable files: every file is opened once with Pillow before training (header and chunk
checks, no pixel decoding); files that fail are left out and counted in one warning. A file
that passes and still fails to decode in TensorFlow is dropped by the pipeline's ignore_errors
instead of ending the epoch.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backend import import_tensorflow
from ..errors import UsageError
from .base import split_indices
from .pipeline import steps_per_epoch, stream_batches

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_TF_FORMATS = {"PNG", "JPEG", "MPO", "BMP", "GIF"}  # what tf.io.decode_image reads
_TF_BMP_MODES = {"L", "RGB", "RGBA"}  # TensorFlow cannot decode 1-, 4-bit or palette BMPs
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
MAX_NATIVE_SIDE = 512  # larger images need an explicit --image-size (a 4000x3000 VAE is a mistake)
SAMPLE_BYTES = 64 << 20  # the in-memory validation sample for figures stays below this
SAMPLE_MAX = 2000  # as many as metrics.json evaluates (train.EVAL_EXAMPLES)


def adapt_images(images, image_size, channels: int):
    """Float images (..., H, W, C) in [0, 1] -> channels 1 or 3 (0: keep) and (height, width).

    Grayscale is ITU-R 601 luma, whose weights sum to exactly 1 so grey pixels keep their value
    (tf.image.rgb_to_grayscale's rounded weights sum to 0.9999); a channel beyond RGB (alpha) is
    dropped. Resizing is bilinear with antialiasing, squashing rather than cropping.
    """
    tf = import_tensorflow()

    images = tf.convert_to_tensor(images, tf.float32)
    have = images.shape[-1]
    if channels == 1 and have != 1:
        luma = tf.constant([0.299, 0.587, 0.114], tf.float32)
        images = (tf.reduce_sum(images[..., :3] * luma, axis=-1, keepdims=True) if have >= 3
                  else images[..., :1])
    elif channels == 3 and have != 3:
        images = images[..., :3] if have > 3 else tf.image.grayscale_to_rgb(images[..., :1])
    if image_size is not None and tuple(images.shape[-3:-1]) != tuple(image_size):
        images = tf.clip_by_value(tf.image.resize(images, image_size, antialias=True), 0.0, 1.0)
    return images


def _decoder(shape, with_labels: bool):
    tf = import_tensorflow()

    height, width, channels = shape

    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=tf.float32,
                                   expand_animations=False)  # a GIF gives its first frame
        return tf.ensure_shape(adapt_images(image, (height, width), channels), shape)

    return (lambda path, label: (decode(path), label)) if with_labels else decode


@dataclass(frozen=True)
class FolderDataset:
    """base.TrainingData over files: batches stream, x_val/y_val are a sample."""

    train_files: tuple[str, ...]
    train_labels: np.ndarray | None
    val_files: tuple[str, ...]
    val_labels: np.ndarray | None
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...] | None
    x_val: np.ndarray  # float32 sample of the validation images (at most SAMPLE_MAX, SAMPLE_BYTES)
    y_val: np.ndarray | None
    source: str
    val_split: str
    skipped: int  # unreadable files left out
    location: str | None = None  # 'folder:/absolute/path' (spec.absolute_spec), as config.json records it

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.image_shape

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    @property
    def n_train(self) -> int:
        return len(self.train_files)

    @property
    def n_val(self) -> int:
        return len(self.val_files)

    @property
    def info(self) -> dict:
        return {"used": self.source, "validation": self.val_split, "n_train": self.n_train,
                "n_val": self.n_val, "n_test": 0, "test": None, "location": self.location,
                "image_shape": list(self.image_shape),
                "class_names": None if self.class_names is None else list(self.class_names),
                "skipped_files": self.skipped, "figure_sample": len(self.x_val)}

    def train_batches(self, batch_size: int, *, seed: int, shard=None, repeat: bool = False,
                      labels: bool = False):
        return self._batches(self.train_files, self.train_labels, batch_size, seed, shard, repeat, labels)

    def epoch_steps(self, batch_size: int) -> int:
        """Batches in one pass over the training files, which were all read once before training
        (so the progress bar counts real steps)."""
        return steps_per_epoch(self.n_train, batch_size)

    def train_arrays(self) -> None:
        """Streamed from disk: never in memory as one array."""
        return None

    def epoch_batches(self, batch_size: int, *, seed: int, first_epoch: int, epochs: int,
                      labels: bool = False):
        """Passes over the files, each reshuffled by tf.data, repeated without end and cut into
        epochs of epoch_steps batches by fit. A file that passed the scan and still fails to
        decode shortens its pass (rare), and then its epoch takes a batch of the next pass
        instead of ending training for lack of data. A resumed run continues with weights,
        optimizer and RNG restored, in a different file order."""
        passes = self.train_batches(batch_size, seed=seed + first_epoch, labels=labels).repeat()
        return passes, self.epoch_steps(batch_size)

    def val_batches(self, batch_size: int, *, shard=None, labels: bool = False):
        return self._batches(self.val_files, self.val_labels, batch_size, None, shard, False, labels)

    def _batches(self, files, y, batch_size, seed, shard, repeat, labels):
        if labels and y is None:
            raise UsageError(f"{self.source.split(': ')[0]} has no labels: put the images in one "
                             "subfolder per class")
        return _stream(files, y if labels else None, self.image_shape, batch_size, seed=seed,
                       shard=shard, repeat=repeat)


def _stream(files, labels, shape, batch_size: int, *, seed=None, shard=None, repeat=False):
    """Batches of decoded images, or (images, labels) when labels are given."""
    elements = list(files) if labels is None else (list(files), labels)
    return stream_batches(elements, len(files), batch_size=batch_size, seed=seed, shard=shard,
                          repeat=repeat, decode=_decoder(shape, labels is not None))


# ---------------------------------------------------------------- finding and checking files


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk_images(folder: str) -> list[str]:
    """Image files under folder, recursively, in a stable (sorted) order."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        found += [os.path.join(parent, f) for f in sorted(files)
                  if not _is_hidden(f) and f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def _list_files(root: Path):
    """(paths, labels or None, class names or None) by the layout rule in the module docstring."""
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    top = [e.path for e in entries if e.is_file() and not _is_hidden(e.name)
           and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    per_class = {e.name: _walk_images(e.path) for e in entries if e.is_dir() and not _is_hidden(e.name)}
    per_class = {name: files for name, files in per_class.items() if files}
    if not top and len(per_class) >= 2:
        names = tuple(per_class)
        paths = [p for files in per_class.values() for p in files]
        labels = np.repeat(np.arange(len(names)), [len(f) for f in per_class.values()])
        return paths, labels, names
    return top + [p for files in per_class.values() for p in files], None, None


def _probe(path: str):
    """((height, width), is_gray) from the file's header, or a one-phrase reason it is unusable."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd but readable files
            with Image.open(path) as im:
                fmt, mode, (width, height) = im.format, im.mode, im.size
                im.verify()  # PNG: walks every chunk and checks its CRC, so truncation shows
    except Exception as exc:  # Pillow raises many types for damaged files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return reason.replace(f" {path!r}", "").replace(path, "")[:120]
    if fmt not in _TF_FORMATS or (fmt == "BMP" and mode not in _TF_BMP_MODES):
        return f"{fmt} images in mode {mode} cannot be decoded by TensorFlow; convert it to PNG"
    return (height, width), mode in _GRAY_MODES


def _probe_chunk(paths):
    """_probe over a list: (heights, widths, gray flags) arrays, 0 height for an unusable file, and
    the reasons by index. Chunks keep the scan's memory flat: one future per file would not be."""
    heights, widths = np.zeros(len(paths), np.int32), np.zeros(len(paths), np.int32)
    gray, reasons = np.zeros(len(paths), bool), {}
    for i, path in enumerate(paths):
        probe = _probe(path)
        if isinstance(probe, str):
            reasons[i] = probe
        else:
            (heights[i], widths[i]), gray[i] = probe
    return heights, widths, gray, reasons


def _scan(paths, labels, spec: str, warn):
    """Keep the readable files; one warning names how many were left out and why."""
    chunk = 256
    with ThreadPoolExecutor(max_workers=min(16, 4 * (os.cpu_count() or 1))) as pool:
        parts = list(pool.map(_probe_chunk, [paths[i:i + chunk] for i in range(0, len(paths), chunk)]))
    heights, widths, gray = (np.concatenate([p[k] for p in parts]) for k in range(3))
    reasons = {start * chunk + i: why for start, p in enumerate(parts) for i, why in p[3].items()}
    ok = heights > 0
    examples = "; ".join(f"{os.path.basename(paths[i])}: {why}" for i, why in list(reasons.items())[:3])
    examples += "; ..." if len(reasons) > 3 else ""
    if not ok.any():  # the error alone, not a warning line before it
        raise UsageError(f"dataset '{spec}': none of the {len(paths):,} image files could be read "
                         f"({examples})")
    if reasons:
        warn(f"dataset '{spec}': skipped {len(reasons):,} of {len(paths):,} files that are not readable "
             f"images ({examples})")
    kept = [p for p, good in zip(paths, ok) if good]
    sizes = Counter(zip(heights[ok].tolist(), widths[ok].tolist()))
    return kept, (None if labels is None else labels[ok]), sizes, bool(gray[ok].all()), len(reasons)


def _image_shape(sizes: Counter, all_gray: bool, image_size, channels: int, spec: str):
    if image_size is None and len(sizes) > 1:
        common = ", ".join(f"{h}x{w} ({n:,} files)" for (h, w), n in sizes.most_common(3))
        raise UsageError(f"dataset '{spec}': the images have {len(sizes)} different sizes (most common: "
                         f"{common}); choose one with --image-size, e.g. --image-size 64 or 64x48 (HxW)")
    if image_size is None:
        ((h, w),) = sizes
        if max(h, w) > MAX_NATIVE_SIDE:
            raise UsageError(f"dataset '{spec}': the images are {h}x{w} pixels, too large to train on "
                             "as they are; resize them on the fly with --image-size, e.g. 64 or 128")
        image_size = (h, w)
    return (*image_size, channels or (1 if all_gray else 3))


# ---------------------------------------------------------------- the public loader


def load_folder(spec: str, *, validation_split: float, seed: int, image_size=None, channels: int = 0,
                warn=print) -> FolderDataset:
    """Scan DIR, split its files (seeded) and return a streaming FolderDataset."""
    root = Path(spec.split(":", 1)[1]).expanduser().resolve()  # `source` records where the data was
    paths, labels, class_names = _list_files(root)
    if not paths:
        raise UsageError(f"dataset '{spec}': no {', '.join(IMAGE_EXTENSIONS)} files in {root} or its "
                         "subfolders")
    paths, labels, sizes, all_gray, skipped = _scan(paths, labels, spec, warn)
    shape = _image_shape(sizes, all_gray, image_size, channels, spec)
    train_idx, val_idx, desc = split_indices(len(paths), validation_split, seed)
    train_files, val_files = (tuple(paths[i] for i in idx) for idx in (train_idx, val_idx))
    y_train, y_val = (None, None) if labels is None else (labels[train_idx], labels[val_idx])
    x_sample, y_sample = _validation_sample(val_files, y_val, shape, seed)
    classes = "" if class_names is None else f" in {len(class_names)} classes ({_names(class_names)})"
    source = (f"folder:{root}: {len(paths):,} images{classes}, read as {shape[0]}x{shape[1]}, "
              f"{shape[2]} channel{'s' if shape[2] > 1 else ''}")
    return FolderDataset(train_files, y_train, val_files, y_val, shape, class_names, x_sample, y_sample,
                         source, desc, skipped, f"folder:{root}")


def _names(class_names, most: int = 5) -> str:
    shown = ", ".join(class_names[:most])
    return shown + (", ..." if len(class_names) > most else "")


def _validation_sample(files, labels, shape, seed: int):
    """A seeded random subset of the validation images as arrays, bounded in count and bytes."""
    limit = max(256, min(SAMPLE_MAX, SAMPLE_BYTES // (4 * int(np.prod(shape)))))
    order = np.sort(np.random.default_rng(seed).permutation(len(files))[:limit])
    subset = [files[i] for i in order]
    batches = _stream(subset, None if labels is None else labels[order], shape, 256)
    images, classes = [np.zeros((0, *shape), np.float32)], [np.zeros(0, np.int64)]
    for batch in batches.as_numpy_iterator():
        images.append(batch if labels is None else batch[0])
        classes.append(classes[0] if labels is None else batch[1])
    return np.concatenate(images), None if labels is None else np.concatenate(classes)

"""What a dataset provides: the interface training needs (TrainingData), its in-memory
implementation (Dataset), the held-out split evaluation uses, and how a validation split is
carved out of training data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from ..errors import UsageError
from .pipeline import epoch_keyed_batches, make_tf_dataset, steps_per_epoch


class TrainingData(Protocol):
    """What training, its figures and metrics.json ask of a dataset, and nothing else.

    Every source answers all of it (Dataset: arrays in memory; folders.FolderDataset: files
    streamed from disk) and every view forwards all of it (views.DataView). Training never asks
    which class it holds: a view hiding the concrete class once turned a --binarize run's
    compiled calls into ones that ran past the end of an epoch.
    """

    source: str  # what was actually loaded, one line
    val_split: str  # how the validation split was carved out of train (older runs: "test", validated on it)
    x_val: np.ndarray  # float32 (N, H, W, C) in [0, 1]: the validation images, or a bounded sample
    y_val: np.ndarray | None  # int64 (N,), None when the source has no labels

    @property
    def input_shape(self) -> tuple[int, int, int]: ...

    @property
    def num_classes(self) -> int | None: ...

    @property
    def n_train(self) -> int: ...

    @property
    def n_val(self) -> int: ...

    @property
    def info(self) -> dict:
        """What config.json and metrics.json record about the data: "used" (source), "validation"
        (val_split), "n_train", "n_val", "n_test" (the size of the source's test split, which
        training never sees and vae-eval scores by default; 0: none, vae-eval then scores the
        validation split), "test" (where that split comes from) and "location" (the spec with an
        absolute path, where readers find the data from any working folder)."""

    def epoch_steps(self, batch_size: int) -> int:
        """Batches per epoch: epoch_batches is one pipeline over all epochs that fit cuts into
        epochs by this step count (so the progress bar counts real steps, and a compiled call of
        several steps must end on an epoch's last batch)."""

    def train_arrays(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(x_train, y_train) when the training images are held in memory, else None: the JAX
        engine batches arrays with numpy instead of tf.data (feed.py)."""

    def train_batches(self, batch_size: int, *, seed: int, shard=None, repeat: bool = False,
                      labels: bool = False):
        """Shuffled tf.data batches; see pipeline.stream_batches for shard and repeat."""

    def epoch_batches(self, batch_size: int, *, seed: int, first_epoch: int, epochs: int,
                      labels: bool = False):
        """(training batches for epochs first_epoch..epochs-1, epoch_steps(batch_size))."""

    def val_batches(self, batch_size: int, *, shard=None, labels: bool = False):
        """The validation batches, in a fixed order."""


@dataclass(frozen=True)
class Dataset:
    """A source held in memory as arrays: TrainingData plus x_train/y_train."""

    x_train: np.ndarray  # float32 (N, H, W, C) in [0, 1]
    y_train: np.ndarray | None  # int64 (N,), None when the source has no labels
    x_val: np.ndarray
    y_val: np.ndarray | None
    source: str
    val_split: str
    n_test: int = 0  # the source's test split: counted, never held (evaluation loads it)
    test_source: str | None = None
    location: str | None = None  # spec.absolute_spec of the spec it was loaded from

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
        return {"used": self.source, "validation": self.val_split, "n_train": self.n_train,
                "n_val": self.n_val, "n_test": self.n_test, "test": self.test_source,
                "location": self.location}

    def epoch_steps(self, batch_size: int) -> int:
        """Always known: epoch_batches is one pipeline over all epochs, cut by step count."""
        return steps_per_epoch(self.n_train, batch_size)

    def train_arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.x_train, self.y_train

    def train_batches(self, batch_size: int, *, seed: int, shard=None, repeat: bool = False,
                      labels: bool = False):
        return make_tf_dataset(self.x_train, batch_size=batch_size, shuffle=True, seed=seed,
                               y=self._labels(self.y_train, labels), shard=shard, repeat=repeat)

    def epoch_batches(self, batch_size: int, *, seed: int, first_epoch: int, epochs: int,
                      labels: bool = False):
        """Batches in an order fixed by (seed, epoch), so an interrupted run resumes bit for bit
        (see pipeline.epoch_keyed_batches)."""
        return (epoch_keyed_batches(self.x_train, batch_size=batch_size, seed=seed, first_epoch=first_epoch,
                                    epochs=epochs, y=self._labels(self.y_train, labels)),
                self.epoch_steps(batch_size))

    def val_batches(self, batch_size: int, *, shard=None, labels: bool = False):
        return make_tf_dataset(self.x_val, batch_size=batch_size, shuffle=False, seed=0,
                               y=self._labels(self.y_val, labels), shard=shard)

    def _labels(self, y, wanted: bool):
        if wanted and y is None:
            raise UsageError(f"dataset {self.source.split(':')[0]!r} has no labels")
        return y if wanted else None


class HeldOut(NamedTuple):
    """The held-out split of a source, as evaluation and plots use it."""

    x: np.ndarray  # float32 (N, H, W, C) in [0, 1]
    y: np.ndarray | None  # int64 (N,), None when the source has no labels
    split: str  # "test", TrainingData.val_split, or all images of data no model was trained on
    source: str  # what was actually loaded, one line


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(train indices, validation indices, description) of a seeded split of n examples; sorted
    index sets keep the source order inside each split."""
    if n < 2:
        raise UsageError(f"dataset has {n} example(s); a validation split needs at least 2")
    n_val = min(max(1, round(n * fraction)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    desc = f"validation: {100 * fraction:g}% of train held out ({n_val:,} of {n:,}, seed {seed})"
    return np.sort(perm[n_val:]), np.sort(perm[:n_val]), desc

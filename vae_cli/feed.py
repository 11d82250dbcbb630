"""The batches `fit` trains and validates on, for the engine that runs it.

TensorFlow, and data streamed from disk on either engine: the dataset's tf.data pipelines
(data.py). JAX with the images in memory: numpy batches, so a JAX run never imports TensorFlow
(~4 s of start-up on 2 CPU cores). Both keep the property resume relies on: epoch e visits the
training images in a permutation drawn from (seed, e) alone, so a run resumed at epoch e sees
the batches the uninterrupted run saw (the two engines draw different permutations, and on
JAX every training batch is full; see array_feed).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .data import one_hot


class Feed(NamedTuple):
    train: Any  # fit's x: batches of every remaining epoch, one pipeline
    steps: int | None  # batches per epoch (None: each epoch is its own pass)
    validation: Any  # fit's validation_data
    validation_batch_size: int | None  # for validation arrays; None for a pipeline


def array_steps(n: int, batch_size: int) -> int:
    """Training batches per epoch of `array_feed`: full batches only."""
    return max(1, n // batch_size)


def even_batch_size(n: int, batch_size: int, replicas: int = 1) -> int:
    """The batch size, at most batch_size, that cuts n examples into the fewest batches of equal
    size where it can (500 in 128s: 4 x 125), each a multiple of the replicas."""
    batches = -(-n // batch_size)
    size = -(-n // batches)
    return min(batch_size, -(-size // replicas) * replicas)


def array_feed(x_train, y_train, x_val, y_val, *, batch_size: int, seed: int, first_epoch: int, epochs: int,
               num_classes: int | None = None, replicas: int = 1) -> Feed:
    """Numpy batches of in-memory images for epochs first_epoch..epochs-1; with num_classes the
    inputs are {"x": images, "label": one-hot} as a conditional VAE takes them.

    The engine compiles the training step for one batch shape, so every training batch is full:
    an epoch is len(x_train) // batch_size batches of its permutation, and the few examples
    past the last full batch (a different few each epoch) wait for the next epoch. Validation
    keeps every example, in batches of one size where the count allows (`even_batch_size`);
    under data parallelism each batch must split evenly over the replicas, so up to
    replicas - 1 validation examples are left out.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch = min(batch_size, len(x_train))
    steps = array_steps(len(x_train), batch)

    def inputs(x, y):
        return x if num_classes is None else {"x": x, "label": one_hot(y, num_classes)}

    def batches():
        for epoch in range(first_epoch, epochs):
            order = np.random.default_rng([seed, epoch]).permutation(len(x_train))
            for start in range(0, steps * batch, batch):
                idx = order[start:start + batch]
                yield (inputs(x_train[idx], None if y_train is None else y_train[idx]),)

    n_val = len(x_val) - len(x_val) % replicas
    validation = (inputs(x_val[:n_val], None if y_val is None else y_val[:n_val]),)
    return Feed(batches(), steps, validation, even_batch_size(n_val, batch_size, replicas))


def pipeline_feed(data, *, batch_size: int, seed: int, first_epoch: int, epochs: int) -> Feed:
    """The dataset's own tf.data pipelines (see data.Dataset.epoch_batches)."""
    batches, steps = data.epoch_batches(batch_size, seed=seed, first_epoch=first_epoch, epochs=epochs)
    return Feed(batches, steps, data.val_batches(batch_size), None)

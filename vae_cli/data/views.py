"""Views of a dataset: the same data with some of its batches changed (labels as a one-hot
conditioning input, binarised validation images), and the pixel and label conversions they use.

A view answers every TrainingData member, each forwarded by name in DataView rather than by
__getattr__, so a member added to TrainingData and missing here fails the conformance test
(tests/test_data_views.py) instead of silently falling through.
"""

from __future__ import annotations

import numpy as np

from ..backend import import_tensorflow
from .base import TrainingData


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels (N,) -> float32 (N, num_classes), the conditioning input of a conditional VAE."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}. Received: "
                         f"{labels.min()}..{labels.max()}")
    return np.eye(num_classes, dtype=np.float32)[labels]


def binarize(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pixel drawn from Bernoulli(its grey level): 1 with that probability, else 0.

    The one numpy binarisation (validation images, vae-eval's test images, vae-sample's
    Bernoulli pixels); the caller's generator decides the stream. The draws are float32, the
    dtype of the images, and a generator gives the same draws in pieces as at once.
    """
    return (rng.random(np.shape(images), dtype=np.float32) < images).astype(np.float32)


def conditional_inputs(batches, num_classes: int):
    """(images, labels) batches -> {"x": images, "label": one-hot labels}: the inputs of a
    conditional VAE, keyed by its input names (a dict is never mistaken by fit for targets)."""
    tf = import_tensorflow()

    return batches.map(lambda x, y: {"x": x, "label": tf.one_hot(y, num_classes)})


class DataView:
    """A dataset that answers every TrainingData member as the wrapped one does; subclasses
    override what they change."""

    def __init__(self, data: TrainingData):
        self.data = data

    source = property(lambda self: self.data.source)
    val_split = property(lambda self: self.data.val_split)
    x_val = property(lambda self: self.data.x_val)
    y_val = property(lambda self: self.data.y_val)
    input_shape = property(lambda self: self.data.input_shape)
    num_classes = property(lambda self: self.data.num_classes)
    n_train = property(lambda self: self.data.n_train)
    n_val = property(lambda self: self.data.n_val)
    info = property(lambda self: self.data.info)

    def epoch_steps(self, batch_size: int) -> int:
        return self.data.epoch_steps(batch_size)

    def train_arrays(self):
        return self.data.train_arrays()

    def train_batches(self, batch_size: int, **options):
        return self.data.train_batches(batch_size, **options)

    def epoch_batches(self, batch_size: int, **options):
        return self.data.epoch_batches(batch_size, **options)

    def val_batches(self, batch_size: int, **options):
        return self.data.val_batches(batch_size, **options)


class ConditionalBatches(DataView):
    """A dataset whose batches are conditional-VAE inputs: {"x": images, "label": one-hot}, with
    one-hot labels num_classes wide."""

    def __init__(self, data: TrainingData, num_classes: int):
        super().__init__(data)
        self._num_classes = num_classes

    num_classes = property(lambda self: self._num_classes)

    def train_batches(self, batch_size: int, **options):
        return conditional_inputs(self.data.train_batches(batch_size, labels=True, **options),
                                  self.num_classes)

    def val_batches(self, batch_size: int, **options):
        return conditional_inputs(self.data.val_batches(batch_size, labels=True, **options),
                                  self.num_classes)

    def epoch_batches(self, batch_size: int, **options):
        batches, steps = self.data.epoch_batches(batch_size, labels=True, **options)
        return conditional_inputs(batches, self.num_classes), steps


class BinarizedValidation(DataView):
    """A dataset with its validation images binarised once, seeded: the validation counterpart
    of --binarize, whose training images are redrawn every step by the model's Binarize layer."""

    def __init__(self, data: TrainingData, seed: int):
        super().__init__(data)
        self.seed = seed
        self._x_val = binarize(data.x_val, np.random.default_rng(seed))

    x_val = property(lambda self: self._x_val)

    def val_batches(self, batch_size: int, **options):
        """The same batches, each binarised with a key fixed by its index: equal in every epoch."""
        tf = import_tensorflow()

        def draw(index, batch):
            images = batch[0] if isinstance(batch, tuple) else batch
            noise = tf.random.stateless_uniform(tf.shape(images), seed=tf.stack([tf.constant(self.seed, tf.int64),
                                                                                 index]), dtype=images.dtype)
            images = tf.cast(noise < images, images.dtype)
            return (images, *batch[1:]) if isinstance(batch, tuple) else images

        return self.data.val_batches(batch_size, **options).enumerate().map(draw)

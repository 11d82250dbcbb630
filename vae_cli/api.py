"""The Python API, for notebooks: `vae_cli.load(RUN)` and `vae_cli.train(...)`, arrays in and out.

A run loads through run.load_run, like every command: config.json is read as data and the
weights as arrays, so nothing in a run directory is executed. Bad input raises
errors.UsageError with a one-line message naming the problem and the fix, as the commands print
it. The arrays are numpy: images float32 (N, H, W, C) in [0, 1], latent points float32 (N, d),
labels class numbers (N,) or one class for all.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .config import FIELDS, Config, config_from_dict, resolve
from .data import one_hot
from .errors import UsageError, first_line
from .latent import decode as decode_batches
from .latent import encode_mean, generate
from .run import Run, load_run, read_history
from .samplers import make_sampler, parse_sampler

MAX_SEED = 2**31 - 1
MAX_TEMPERATURE = 100.0  # as vae-sample --temperature


class VAE:
    """A trained run: its config, history and Keras models, and numpy in, numpy out."""

    def __init__(self, run: Run):
        self._run = run

    def __repr__(self) -> str:
        kind = f", conditional on {self.num_classes} classes" if self.num_classes else ""
        return (f"VAE('{self.path}': {self.config.arch}, latent_dim {self.latent_dim}, "
                f"images {'x'.join(map(str, self.input_shape))}{kind})")

    path = property(lambda self: self._run.path, doc="the run directory")
    config = property(lambda self: self._run.config, doc="the frozen Config the run was trained with")
    input_shape = property(lambda self: self._run.input_shape, doc="(H, W, C) of the images")
    num_classes = property(lambda self: self._run.num_classes if self._run.conditional else None,
                           doc="classes of a conditional run, else None")
    latent_dim = property(lambda self: self._run.config.latent_dim)
    encoder = property(lambda self: self._run.encoder, doc="Keras model x [, label] -> z_mean, z_log_var, z")
    decoder = property(lambda self: self._run.decoder, doc="Keras model z [, label] -> x_hat [, x_log_var]")

    @property
    def history(self) -> dict[str, list[float]]:
        """history.csv as {column: one value per epoch}, e.g. history["val_loss"]."""
        return read_history(self.path)

    def encode(self, images, labels=None) -> np.ndarray:
        """z_mean of each image: float32 (N, latent_dim)."""
        x = self._images(images)
        return encode_mean(self.encoder, x, self._labels(labels, len(x)))

    def decode(self, z, labels=None) -> np.ndarray:
        """The image (the decoder's mean) of each latent point: float32 (N, H, W, C) in [0, 1]."""
        z = self._latents(z)
        return decode_batches(self.decoder, z, self._labels(labels, len(z)))

    def reconstruct(self, images, labels=None) -> np.ndarray:
        """decode(encode(images)): each image through z_mean and back, float32 (N, H, W, C)."""
        x = self._images(images)
        cond = self._labels(labels, len(x))
        return decode_batches(self.decoder, encode_mean(self.encoder, x, cond), cond)

    def sample(self, n: int, temperature: float = 1.0, label: int | None = None, seed: int = 0,
               sampler: str = "prior") -> np.ndarray:
        """n images decoded from z ~ N(0, temperature^2 I): float32 (n, H, W, C), the images
        `vae-sample RUN -n n --temperature T [--label L] --seed S [--sampler S]` writes to
        samples.npy. A conditional run draws `label`, or cycles through the classes when label
        is None. sampler: "prior" (the run's prior, learned for a --prior mog/vamp run) or
        "gmm[:K]" (a mixture fitted to the training codes, kept in the run directory)."""
        _check_int("n", n, 1, 10**9)
        _check_int("seed", seed, 0, MAX_SEED)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not math.isfinite(temperature) or not 0 <= temperature <= MAX_TEMPERATURE:
            raise UsageError(f"temperature: expected a number >= 0 and <= {MAX_TEMPERATURE:g}, got {temperature!r}")
        if label is not None:
            if not self.num_classes:
                raise UsageError("label: this run is not conditional, so it cannot draw a chosen class; "
                                 "train one with conditional=True")
            _check_int("label", label, 0, self.num_classes - 1)
        try:
            parse_sampler(sampler)
        except (ValueError, AttributeError, TypeError):
            raise UsageError(f"sampler: expected prior, gmm or gmm:K with K from 1 to 1000, got {sampler!r}") from None
        chosen = make_sampler(self._run, sampler)
        z = None if chosen.mixture is None else chosen(int(n), seed=int(seed), temperature=float(temperature))
        return generate(self.decoder, self.latent_dim, n=int(n), z=z, seed=int(seed), temperature=float(temperature),
                        num_classes=self.num_classes, label=label).images

    # ---------------------------------------------------------------------------------------
    # input checks: one UsageError line before any model runs

    def _images(self, images) -> np.ndarray:
        x = _numeric_array("images", images)
        shape = self.input_shape
        if x.ndim == 3 and shape[2] == 1 and x.shape[1:] == shape[:2]:
            x = x[..., None]  # grayscale images without their channel axis
        if x.ndim != 4 or x.shape[1:] != shape:
            raise UsageError(f"images: expected an array of shape (N, {', '.join(map(str, shape))}) (this run's "
                             f"image shape), got {x.shape}")
        if x.dtype == np.uint8:
            return (x / 255.0).astype(np.float32)
        x = x.astype(np.float32)
        if x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
            raise UsageError(f"images: pixel values must be finite and in [0, 1], got values from {np.nanmin(x):g} "
                             f"to {np.nanmax(x):g}; pass 8-bit images as uint8 or divide them by 255")
        return x

    def _latents(self, z) -> np.ndarray:
        z = _numeric_array("z", z)
        if z.ndim == 1:
            z = z[None]  # one point
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise UsageError(f"z: each point needs {self.latent_dim} values (this run's latent_dim): expected "
                             f"an array of shape (N, {self.latent_dim}), got {z.shape}")
        if not np.isfinite(z).all():
            raise UsageError("z: expected finite numbers, got NaN or infinity")
        return z.astype(np.float32)

    def _labels(self, labels, count: int) -> np.ndarray | None:
        """Class numbers (count,) or one class for all -> one-hot (count, K); None for a plain VAE."""
        if not self.num_classes:
            if labels is not None:
                raise UsageError("labels: this run is not conditional, so it takes no labels; leave labels out")
            return None
        k = self.num_classes
        if labels is None:
            raise UsageError(f"labels: this run is conditional: give each image's class (0 to {k - 1}), "
                             "one number per image or one for all")
        y = _numeric_array("labels", labels)
        if y.ndim == 0:
            y = np.full(count, y)
        if y.shape != (count,):
            raise UsageError(f"labels: expected {count} class numbers (one per image) or one for all, got an array "
                             f"of shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise UsageError(f"labels: expected integer class numbers, got {y.dtype} values")
        if count and not 0 <= y.min() <= y.max() < k:
            bad = y.min() if y.min() < 0 else y.max()
            raise UsageError(f"labels: expected class numbers from 0 to {k - 1}, got {bad}")
        return one_hot(y, k)


def _numeric_array(name: str, value) -> np.ndarray:
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise UsageError(f"{name}: expected a numeric array ({first_line(e)})") from None
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise UsageError(f"{name}: expected a numeric array, got {a.dtype} values")
    return a


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise UsageError(f"{name}: expected an integer from {low} to {high}, got {value!r}")


# --------------------------------------------------------------------------------------------
# load and train


def load(run: str | os.PathLike) -> VAE:
    """The run directory written by vae-train (or vae_cli.train), ready to encode, decode and sample."""
    return VAE(load_run(run))


def train(config: Config | dict[str, Any] | str | os.PathLike | None = None, /, **overrides) -> VAE:
    """Train a new run and return it loaded. `config` is a Config, a dict of settings, or a preset
    name or path (as vae-train --preset); keyword arguments override it, e.g.
    `vae_cli.train("mlp", epochs=3, dataset="mnist-5k")`. The run directory is created under
    `out` (default outputs/), exactly as vae-train would write it."""
    checked = training_config(config, overrides)
    from .train_run import train_new_run

    return load(train_new_run(checked).run_path)


def training_config(config, overrides: dict[str, Any]) -> Config:
    """Defaults < config (Config, dict or preset) < overrides, validated like a run's config.json."""
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, Config):
        base = config.to_dict()
    elif isinstance(config, dict):
        base = dict(config)
    elif isinstance(config, (str, os.PathLike)):
        base = resolve(os.fspath(config)).to_dict()
    else:
        raise UsageError(f"vae_cli.train: expected a Config, a dict of settings or a preset name or path, got "
                         f"{type(config).__name__}")
    values = {**base, **overrides}
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise UsageError(f"vae_cli.train: unknown setting(s) {', '.join(map(repr, unknown))}; valid settings: "
                         f"{', '.join(FIELDS)}")
    if values.get("strategy") == "multiworker":
        raise UsageError("vae_cli.train: strategy 'multiworker' runs one process per machine; start vae-train "
                         "on each machine instead")
    return config_from_dict(values, where="vae_cli.train")


"""Encoder, decoder and the VAE that joins them, built functionally from a Config.

Shapes are derived from the data, never hard-coded: any H x W x C works for both archs. The
conv encoder halves H and W per stage (max-pooling with "same" padding rounds up), the decoder
doubles them back and crops the excess, so a 30x30 input (30 -> 15 -> 8 -> 16 -> 32 -> 30)
is reproduced exactly.

A conditional VAE (`config.conditional`) also takes the one-hot class label, (batch, K), named
"label": the encoder joins it to the flattened image features, the decoder to z. Only Concatenate
is added, so the models stay Lambda-free and load in safe mode.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import keras
from keras import layers

from .config import Config
from .layers import NarrowConv2D, ReconstructionLoss, Sampling, UpsampleConv2D


class VAEModels(NamedTuple):
    encoder: keras.Model  # x (or [x, label]) -> [z_mean, z_log_var, z]
    decoder: keras.Model  # z (or [z, label]) -> x_hat
    vae: keras.Model  # x (or [x, label]) -> x_hat, with the KL and reconstruction terms added as losses


def _conv_grid(input_shape, n_stages: int) -> tuple[int, int]:
    h, w = input_shape[0], input_shape[1]
    for _ in range(n_stages):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


def _label_input(num_classes: int | None):
    """The one-hot label input of a conditional model, or None for a plain VAE."""
    return None if num_classes is None else keras.Input(shape=(num_classes,), name="label")


def _inputs(tensor, label):
    """A model's inputs: the tensor alone, or [tensor, label] when conditional."""
    return tensor if label is None else [tensor, label]


def _join_label(h, label):
    """(batch, F) features + (batch, K) one-hot label -> (batch, F + K); h itself without a label."""
    return h if label is None else layers.Concatenate(name="with_label")([h, label])


def build_encoder(config: Config, input_shape, num_classes: int | None = None) -> keras.Model:
    """(batch, H, W, C) [+ label (batch, K)] -> z_mean, z_log_var, z, each (batch, latent_dim)."""
    x_in = keras.Input(shape=input_shape, name="x")
    label = _label_input(num_classes)
    h = x_in
    if config.arch == "conv":
        for i, filters in enumerate(config.conv_filters, start=1):
            h = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(h)
            h = layers.MaxPooling2D(2, padding="same", name=f"pool{i}")(h)
    h = _join_label(layers.Flatten(name="flatten")(h), label)
    h = layers.Dense(config.hidden_dim, activation="relu", name="hidden")(h)
    z_mean = layers.Dense(config.latent_dim, name="z_mean")(h)
    z_log_var = layers.Dense(config.latent_dim, name="z_log_var")(h)
    z = Sampling(seed=config.seed, name="z")([z_mean, z_log_var])
    return keras.Model(_inputs(x_in, label), [z_mean, z_log_var, z], name="encoder")


def build_decoder(config: Config, input_shape, num_classes: int | None = None, *,
                  fused: bool = True) -> keras.Model:
    """(batch, latent_dim) [+ label (batch, K)] -> x_hat (batch, H, W, C) with values in (0, 1).

    fused=False builds the conv decoder from the stock layers that run format 1 stored
    (UpSampling2D + Conv2D, a plain output Conv2D): the same math and weight shapes, but the
    weight file names its layers by class, so such files load only into this form.
    """
    height, width, channels = input_shape
    z_in = keras.Input(shape=(config.latent_dim,), name="z")
    label = _label_input(num_classes)
    inputs = _inputs(z_in, label)
    h = layers.Dense(config.hidden_dim, activation="relu", name="hidden")(_join_label(z_in, label))
    if config.arch == "mlp":
        h = layers.Dense(height * width * channels, activation="sigmoid", name="pixels")(h)
        x_hat = layers.Reshape(tuple(input_shape), name="x_hat")(h)
        return keras.Model(inputs, x_hat, name="decoder")

    filters = config.conv_filters[::-1]
    gh, gw = _conv_grid(input_shape, len(filters))
    h = layers.Dense(gh * gw * filters[0], activation="relu", name="grid")(h)
    h = layers.Reshape((gh, gw, filters[0]), name="reshape")(h)  # (batch, gh, gw, f)
    for i, f in enumerate(filters, start=1):
        if fused:  # UpSampling2D(2) then Conv2D(f, 3, "same") as one cheaper op
            h = UpsampleConv2D(f, activation="relu", name=f"deconv{i}")(h)
        else:
            h = layers.UpSampling2D(2, name=f"upsample{i}")(h)
            h = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"deconv{i}")(h)
    extra_h, extra_w = gh * 2 ** len(filters) - height, gw * 2 ** len(filters) - width
    if extra_h or extra_w:
        crop = ((extra_h // 2, extra_h - extra_h // 2), (extra_w // 2, extra_w - extra_w // 2))
        h = layers.Cropping2D(crop, name="crop")(h)  # back to (batch, H, W, f)
    output_conv = NarrowConv2D if fused else functools.partial(layers.Conv2D, kernel_size=3, padding="same")
    x_hat = output_conv(channels, activation="sigmoid", name="x_hat")(h)  # Conv2D(channels, 3, "same")
    return keras.Model(inputs, x_hat, name="decoder")


def build_vae(config: Config, input_shape, num_classes: int | None = None, *,
              fused: bool = True) -> VAEModels:
    """The three models share weights: training `vae` trains `encoder` and `decoder`.

    num_classes is required by, and only used for, a conditional config; fused: see build_decoder.
    """
    if config.conditional and not num_classes:
        raise ValueError("a conditional VAE needs num_classes (the labels' range). Received: "
                         f"num_classes={num_classes}")
    num_classes = int(num_classes) if config.conditional else None
    input_shape = tuple(int(d) for d in input_shape)
    encoder = build_encoder(config, input_shape, num_classes)
    decoder = build_decoder(config, input_shape, num_classes, fused=fused)
    x_in = keras.Input(shape=input_shape, name="x")
    label = _label_input(num_classes)
    _, _, z = encoder(_inputs(x_in, label))
    x_hat = decoder(_inputs(z, label))
    x_hat = ReconstructionLoss(config.likelihood, config.recon_weight, name="reconstruction")(
        [x_in, x_hat])
    vae = keras.Model(_inputs(x_in, label), x_hat, name="vae")
    return VAEModels(encoder, decoder, vae)

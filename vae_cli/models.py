"""Encoder, decoder and the VAE that joins them, built functionally from a Config.

Shapes are derived from the data, never hard-coded: any H x W x C works for every arch. Each
conv stage halves H and W (max-pooling, or a stride-2 convolution in the strided arch; "same"
padding rounds up), the decoder doubles them back and crops the excess, so a 30x30 input
(30 -> 15 -> 8 -> 16 -> 32 -> 30) is reproduced exactly.

A conditional VAE (`config.conditional`) also takes the one-hot class label, (batch, K), named
"label": the encoder joins it to the flattened image features, the decoder to z. Only Concatenate
is added, so the models stay Lambda-free and load in safe mode.

The same code builds the models on either Keras engine (TensorFlow or JAX). Under a mixed dtype
policy (--precision mixed) the latent heads, the pixel heads and the loss layers stay float32.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import keras
from keras import layers

from .config import Config
from .layers import (Binarize, IWAELoss, IWSampling, KLDivergence, NarrowConv2D, ReconstructionLoss, Sampling,
                     TileRows, UpsampleConv2D)
from .priors import PriorKL, build_prior

# gaussian-learned: a pixel's standard deviation never goes below one grey level of 8-bit data;
# without a floor the density of the many exactly-0 background pixels grows without bound.
PIXEL_LOG_VAR_MIN = 2.0 * math.log(1.0 / 255.0)


# The layers whose outputs feed the ELBO: float32 under any dtype policy (see the docstring).
FLOAT32 = "float32"


@keras.saving.register_keras_serializable(package="vae_cli")
class VAE(keras.Model):
    """The functional VAE whose outputs are {"x_hat", "recon", "kl"}: the reconstruction and
    each example's two ELBO terms (nats, unweighted). The loss is what its layers add (the
    weighted terms); `recon` and `kl` are tracked here, in `compute_metrics`, where every Keras
    engine keeps metric updates (under JAX an update inside a layer's call is lost)."""

    def __init__(self, inputs, outputs, **kwargs):
        super().__init__(inputs, outputs, **kwargs)
        self.recon_tracker = keras.metrics.Mean(name="recon")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def update_terms(self, y_pred) -> None:
        """Add a batch's per-example terms to the `recon` and `kl` metrics."""
        self.recon_tracker.update_state(y_pred["recon"])
        self.kl_tracker.update_state(y_pred["kl"])

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.update_terms(y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight)


class VAEModels(NamedTuple):
    encoder: keras.Model  # x (or [x, label]) -> [z_mean, z_log_var, z]
    decoder: keras.Model  # z (or [z, label]) -> x_hat ([x_mean, x_log_var] for gaussian-learned)
    vae: VAE  # x (or [x, label]) -> {"x_hat", "recon", "kl"}, with the weighted terms as losses


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


def _dense_act(config: Config, h, units: int, name: str):
    """Dense + config.activation, with batch normalisation before the activation when config.batch_norm."""
    if not config.batch_norm:
        return layers.Dense(units, activation=config.activation, name=name)(h)
    h = layers.Dense(units, use_bias=False, name=name)(h)  # the normalisation's shift is the bias
    h = layers.BatchNormalization(name=f"{name}_bn")(h)
    if config.activation == "relu":  # the ReLU layer every run had before the activation knob
        return layers.ReLU(name=f"{name}_relu")(h)
    return layers.Activation(config.activation, name=f"{name}_{config.activation}")(h)


def _hidden_layers(config: Config, h):
    """config.hidden_layers x Dense(hidden_dim): (batch, n) -> (batch, hidden_dim)."""
    for i in range(1, config.hidden_layers + 1):
        h = _dense_act(config, h, config.hidden_dim, "hidden" if i == 1 else f"hidden{i}")
    return h


def _encoder_stages(config: Config, h):
    """(batch, H, W, C) -> (batch, ceil(H / 2^n), ceil(W / 2^n), filters[-1])."""
    for i, filters in enumerate(config.conv_filters, start=1):
        if config.arch == "conv":
            h = layers.Conv2D(filters, 3, padding="same", activation=config.activation, name=f"conv{i}")(h)
            h = layers.MaxPooling2D(2, padding="same", name=f"pool{i}")(h)
        else:  # strided: the convolution learns its own downsampling
            h = layers.Conv2D(filters, 4, strides=2, padding="same", activation=config.activation, name=f"down{i}")(h)
    return h


def _decoder_stages(config: Config, h, fused: bool):
    """(batch, gh, gw, filters[-1]) -> (batch, gh * 2^n, gw * 2^n, filters[0])."""
    for i, f in enumerate(config.conv_filters[::-1], start=1):
        if config.arch == "conv" and fused:  # UpSampling2D(2) then Conv2D(f, 3, "same") as one cheaper op
            h = UpsampleConv2D(f, activation=config.activation, name=f"deconv{i}")(h)
        elif config.arch == "conv":
            h = layers.UpSampling2D(2, name=f"upsample{i}")(h)
            h = layers.Conv2D(f, 3, padding="same", activation=config.activation, name=f"deconv{i}")(h)
        else:
            h = layers.Conv2DTranspose(f, 4, strides=2, padding="same", activation=config.activation, name=f"up{i}")(h)
    return h


def build_encoder(config: Config, input_shape, num_classes: int | None = None) -> keras.Model:
    """(batch, H, W, C) [+ label (batch, K)] -> z_mean, z_log_var, z, each (batch, latent_dim)."""
    x_in = keras.Input(shape=input_shape, name="x")
    label = _label_input(num_classes)
    h = x_in if config.arch == "mlp" else _encoder_stages(config, x_in)
    h = _hidden_layers(config, _join_label(layers.Flatten(name="flatten")(h), label))
    z_mean = layers.Dense(config.latent_dim, name="z_mean", dtype=FLOAT32)(h)
    z_log_var = layers.Dense(config.latent_dim, name="z_log_var", dtype=FLOAT32)(h)
    standard = config.prior == "standard"  # else priors.PriorKL adds the KL term
    z = Sampling(seed=config.seed, free_bits=config.free_bits, kl_loss=config.iw_train == 1 and standard,
                 track_kl=standard, name="z")([z_mean, z_log_var])
    return keras.Model(_inputs(x_in, label), [z_mean, z_log_var, z], name="encoder")


def _pixel_head(config: Config, h, input_shape, activation: str, names: tuple[str, str], fused: bool):
    """Per-pixel output (batch, H, W, C) from the last hidden features; names: (mlp dense, output)."""
    if config.arch == "mlp":
        h = layers.Dense(math.prod(input_shape), activation=activation, name=names[0], dtype=FLOAT32)(h)
        return layers.Reshape(tuple(input_shape), name=names[1], dtype=FLOAT32)(h)
    output_conv = NarrowConv2D if fused else functools.partial(layers.Conv2D, kernel_size=3, padding="same")
    return output_conv(input_shape[-1], activation=activation, name=names[1], dtype=FLOAT32)(h)  # Conv2D(C, 3)


def _log_var_head(config: Config, h, input_shape):
    """gaussian-learned: each pixel's log-variance, (batch, H, W, C), above PIXEL_LOG_VAR_MIN."""
    # softplus + offset keeps the log-variance above the floor with a gradient everywhere; the
    # bias starts the variance near 1
    start = keras.initializers.Constant(-PIXEL_LOG_VAR_MIN)
    if config.arch == "mlp":
        raw = layers.Dense(math.prod(input_shape), activation="softplus", bias_initializer=start,
                           name="log_var_pixels", dtype=FLOAT32)(h)
        raw = layers.Reshape(tuple(input_shape), name="log_var_raw", dtype=FLOAT32)(raw)
    else:
        raw = layers.Conv2D(input_shape[-1], 3, padding="same", activation="softplus", bias_initializer=start,
                            name="log_var_raw", dtype=FLOAT32)(h)
    return layers.Rescaling(1.0, offset=PIXEL_LOG_VAR_MIN, name="x_log_var", dtype=FLOAT32)(raw)


def build_decoder(config: Config, input_shape, num_classes: int | None = None, *,
                  fused: bool = True) -> keras.Model:
    """(batch, latent_dim) [+ label (batch, K)] -> x_hat (batch, H, W, C) with values in (0, 1).

    With likelihood "gaussian-learned" the decoder has a second output, x_log_var (batch, H, W,
    C), the log-variance of each pixel, bounded below by PIXEL_LOG_VAR_MIN and starting near 0.

    fused=False builds the conv decoder from the stock layers that run format 1 stored
    (UpSampling2D + Conv2D, a plain output Conv2D): the same math and weight shapes, but the
    weight file names its layers by class, so such files load only into this form.
    """
    height, width, _ = input_shape
    z_in = keras.Input(shape=(config.latent_dim,), name="z")
    label = _label_input(num_classes)
    h = _hidden_layers(config, _join_label(z_in, label))
    if config.arch != "mlp":
        filters = config.conv_filters[-1]
        gh, gw = _conv_grid(input_shape, len(config.conv_filters))
        h = _dense_act(config, h, gh * gw * filters, "grid")
        h = layers.Reshape((gh, gw, filters), name="reshape")(h)  # (batch, gh, gw, f)
        h = _decoder_stages(config, h, fused)
        extra_h, extra_w = h.shape[1] - height, h.shape[2] - width
        if extra_h or extra_w:
            crop = ((extra_h // 2, extra_h - extra_h // 2), (extra_w // 2, extra_w - extra_w // 2))
            h = layers.Cropping2D(crop, name="crop")(h)  # back to (batch, H, W, f)
    x_hat = _pixel_head(config, h, input_shape, "sigmoid", ("pixels", "x_hat"), fused)
    if config.likelihood != "gaussian-learned":
        return keras.Model(_inputs(z_in, label), x_hat, name="decoder")
    return keras.Model(_inputs(z_in, label), [x_hat, _log_var_head(config, h, input_shape)], name="decoder")


def build_vae(config: Config, input_shape, num_classes: int | None = None, *,
              fused: bool = True) -> VAEModels:
    """The three models share weights: training `vae` trains `encoder` and `decoder`.

    num_classes is required by, and only used for, a conditional config; fused: see build_decoder.

    With iw_train = K > 1 the loss is the importance-weighted bound over K draws per example
    (IWSampling -> decoder -> IWAELoss) instead of the ELBO's two terms; a conditional model's
    label is tiled the same way (TileRows) so each draw is decoded with its example's label.
    augment_shift puts a RandomTranslation (integer shifts: nearest-pixel interpolation) in front
    of the encoder. A learned prior (config.prior mog:K or vamp:K) adds its layers (priors.py)
    and replaces the closed-form KL with PriorKL's one-sample estimate.
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
    x = x_in
    if config.binarize:  # training steps only; validation data is binarised once (data.BinarizedValidation)
        x = Binarize(seed=config.seed + 2, name="binarize")(x)
    if config.augment_shift:  # active in training steps only; the shifted image is also the target
        fraction = min(1.0, config.augment_shift / input_shape[0]), min(1.0, config.augment_shift / input_shape[1])
        x = layers.RandomTranslation(*fraction, fill_mode="constant", interpolation="nearest",
                                     seed=config.seed, name="shift")(x)
    z_mean, z_log_var, z = encoder(_inputs(x, label))
    log_prior = build_prior(config, x_in, encoder)  # None: N(0, I), whose KL Sampling adds in closed form
    if log_prior is not None:  # the one-sample KL estimate under the learned prior (priors.py)
        z, kl = PriorKL(name="kl")([z_mean, z_log_var, z, log_prior(z)])
    else:
        kl = KLDivergence(name="kl")([z_mean, z_log_var])
    if config.iw_train > 1:
        z = IWSampling(config.iw_train, seed=config.seed + 1, name="iw_z")([z_mean, z_log_var])
        label_k = None if label is None else TileRows(config.iw_train, name="iw_label")(label)
        decoded = keras.tree.flatten(decoder(_inputs(z, label_k)))  # (K * batch, H, W, C) [, log-var]
        x_hat, recon = IWAELoss(config.iw_train, config.likelihood, config.recon_weight, name="iwae")(
            [x, z_mean, z_log_var, z, *decoded])
    else:
        decoded = keras.tree.flatten(decoder(_inputs(z, label)))
        x_hat, recon = ReconstructionLoss(config.likelihood, config.recon_weight, name="reconstruction")(
            [x, *decoded])
    vae = VAE(_inputs(x_in, label), {"x_hat": x_hat, "recon": recon, "kl": kl}, name="vae")
    return VAEModels(encoder, decoder, vae)

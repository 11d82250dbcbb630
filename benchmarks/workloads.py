"""What benchmarks/levers.py and benchmarks/speed.py share, all inside one process and one
framework: epoch timing, the project's architecture written the tutorial way (a decoder variant of
the lever study, and the check that FLOP counting does not depend on the layers), FLOP counting,
and the machine's matmul peak. Comparisons with other programs are benchmarks/fair.py's, each side
its own process (its baselines are benchmarks/baselines.py). TensorFlow loads here.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import keras  # noqa: E402
from keras import layers  # noqa: E402

from benchmarks import tutorial  # noqa: E402
from benchmarks.tutorial import TutorialVAE  # noqa: E402
from vae_cli.config import Config  # noqa: E402
from vae_cli.layers import NarrowConv2D, UpsampleConv2D  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each training epoch of `fit` (the lever variants run no validation)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.t0)


def steady_rate(n: int, seconds: list[float]) -> float:
    """Samples per second over the median epoch, leaving out the first (it pays for tracing)."""
    steady = seconds[1:] or seconds
    return n / statistics.median(steady)


# ---------------------------------------------------------------- tutorial-style Keras VAE


def tutorial_vae(config: Config, input_shape) -> TutorialVAE:
    """The project's architecture written the tutorial way (UpSampling2D then Conv2D), compiled."""
    encoder, decoder = tutorial.tutorial_models(config.arch, config.hidden_dim, config.latent_dim,
                                                config.conv_filters, tuple(input_shape))
    return tutorial.tutorial_vae(encoder, decoder)


# ---------------------------------------------------------------- counting work


def forward_flops(model) -> int:
    """Multiply-adds x 2 per example of Dense and convolution layers, from their shapes.

    UpsampleConv2D counts as the UpSampling2D + 3x3 Conv2D it replaces (at full resolution), so a
    workload's FLOP rate measures the architecture's work per second, the same for every
    implementation of it. Elementwise ops are left out (they are a few % of the multiply-adds).
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, layers.Dense):
            total += 2 * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
        elif isinstance(layer, (layers.Conv2D, NarrowConv2D, UpsampleConv2D)):
            kh, kw, c_in, c_out = (int(d) for d in layer.kernel.shape)
            h, w = layer.output.shape[1:3]
            total += 2 * int(h) * int(w) * kh * kw * c_in * c_out
    return total


def training_flops(model) -> int:
    """Forward + backward per example: the backward pass costs about twice the forward."""
    return 3 * forward_flops(model)


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, calls: int = 4) -> float:
    """Best observed fp32 GFLOP/s of an n x n matmul with TensorFlow's default threads."""
    import tensorflow as tf

    a = tf.random.normal((n, n), seed=1)
    b = tf.random.normal((n, n), seed=2)

    @tf.function
    def chain():
        c = a
        for _ in range(calls):
            c = tf.matmul(c, b) * (1.0 / n)  # rescaled so values stay finite
        return tf.reduce_sum(c)

    chain().numpy()
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        chain().numpy()
        best = max(best, calls * 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best

"""What benchmarks/speed.py compares the trainer against, and how it counts work.

The baselines are what a user has today: the keras.io-style VAE (benchmarks/tutorial.py's layers
and GradientTape `train_step`, numpy arrays into `fit`, default `compile`) and the
pytorch/examples-style MLP VAE trained in eager mode, each built from the same Config as the
project's model, so the architecture is identical; only the machinery differs. TensorFlow loads
here, torch only when asked for.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from benchmarks import tutorial  # noqa: E402
from benchmarks.tutorial import TutorialVAE  # noqa: E402
from vae_cli.config import Config  # noqa: E402
from vae_cli.layers import NarrowConv2D, UpsampleConv2D  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each training epoch (fit's own loop, no validation in the baselines)."""

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


# ---------------------------------------------------------------- PyTorch eager MLP VAE


def torch_mlp_epochs(config: Config, x: np.ndarray, epochs: int, seed: int = 0) -> list[float]:
    """pytorch/examples' MLP VAE (784-400-20 there) trained eagerly: the same loss as vae-cli
    (BCE summed over pixels + KL, averaged over the batch), Adam(lr), same batch size.
    Returns the wall time of each epoch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)
    d = int(np.prod(x.shape[1:]))
    fc1, fc21, fc22 = nn.Linear(d, config.hidden_dim), nn.Linear(config.hidden_dim, config.latent_dim), \
        nn.Linear(config.hidden_dim, config.latent_dim)
    fc3, fc4 = nn.Linear(config.latent_dim, config.hidden_dim), nn.Linear(config.hidden_dim, d)
    params = [p for m in (fc1, fc21, fc22, fc3, fc4) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=config.learning_rate)
    data = torch.from_numpy(np.ascontiguousarray(x.reshape(len(x), d)))
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for idx in torch.randperm(len(data)).split(config.batch_size):
            xb = data[idx]
            h = F.relu(fc1(xb))
            mu, logvar = fc21(h), fc22(h)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            x_hat = torch.sigmoid(fc4(F.relu(fc3(z))))
            bce = F.binary_cross_entropy(x_hat, xb, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (bce + kld) / len(xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
    return seconds


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


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

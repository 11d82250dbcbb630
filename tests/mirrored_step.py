"""One training step on a fixed batch, on one device and on two replicas; prints JSON results.

Runs in its own process because the CPU must be split into logical devices before TensorFlow
starts. tests/test_distribute.py compares the results:
  single       the default strategy with Keras fit (the reference)
  mirrored     MirroredStrategy over 2 logical CPUs with Keras fit (what --strategy mirrored runs)
  custom_loop  the same 2 replicas with distribute.fit_custom_loop (what --strategy multiworker runs)
Each entry holds the step's loss and the values of the updated weights. The step uses plain
SGD: Adam and RMSprop divide the gradient by its own magnitude, so their first step would hide a
wrongly scaled loss.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import numpy as np

from vae_cli import distribute
from vae_cli.config import Config
from vae_cli.data import Dataset
from vae_cli.models import build_vae

CONFIG = Config(arch="conv", conv_filters=(4,), hidden_dim=16, latent_dim=2, batch_size=8, seed=0)
X = np.random.default_rng(0).random((8, 12, 10, 1), dtype=np.float32)  # one global batch
DATA = Dataset(X, None, X, None, "fixed batch", "test")


def quiet_sampling(models) -> None:
    """Make the sampling noise negligible (std e^-10), so the halves of a batch on two replicas,
    which draw their own eps, see the same loss as the whole batch on one device."""
    z_log_var = models.encoder.get_layer("z_log_var")
    kernel, bias = z_log_var.get_weights()
    z_log_var.set_weights([np.zeros_like(kernel), np.full_like(bias, -20.0)])


def one_step(strategy, custom_loop: bool) -> dict:
    keras.utils.set_random_seed(CONFIG.seed)
    with strategy.scope():
        models = build_vae(CONFIG, X.shape[1:])
        quiet_sampling(models)
        models.vae.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01))
    before = models.vae.get_weights()
    if custom_loop:
        history = distribute.fit_custom_loop(models.vae, strategy, DATA, batch_size=CONFIG.batch_size,
                                             seed=CONFIG.seed, epochs=1, callbacks=[], verbose=0)
    else:
        history = models.vae.fit(DATA.train_batches(CONFIG.batch_size, seed=CONFIG.seed), epochs=1, verbose=0)
    weights = models.vae.get_weights()
    return {"loss": history.history["loss"][0], "replicas": strategy.num_replicas_in_sync,
            "largest_update": max(float(np.max(np.abs(a - b))) for a, b in zip(weights, before) if a.size),
            "weights": [w.ravel().tolist() for w in weights]}


def main() -> None:
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {"single": one_step(tf.distribute.get_strategy(), False),
               "mirrored": one_step(mirrored, False),
               "custom_loop": one_step(mirrored, True)}
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()

"""One training step on a fixed batch on the JAX engine, on one device and data-parallel over two
(what `vae-train --backend jax --strategy mirrored` runs); prints JSON results.

Runs in a JAX process (tests/test_engines.py imports it there): the engine is chosen before Keras
is imported, and XLA splits the CPU into two devices only when XLA_FLAGS asks for it before JAX
starts. tests/test_engines.py compares the results. The step uses plain SGD: Adam and RMSprop
divide the gradient by its own magnitude, so their first step would hide a wrongly scaled loss.
"""

import json
import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from vae_cli import distribute  # noqa: E402
from vae_cli.config import Config  # noqa: E402
from vae_cli.feed import array_feed  # noqa: E402
from vae_cli.models import build_vae  # noqa: E402

CONFIG = Config(arch="conv", conv_filters=(4,), hidden_dim=16, latent_dim=2, batch_size=8, seed=0)
X = np.random.default_rng(0).random((8, 12, 10, 1), dtype=np.float32)  # one global batch


def one_step(strategy) -> dict:
    keras.utils.set_random_seed(CONFIG.seed)
    with distribute.scope(strategy):
        models = build_vae(CONFIG, X.shape[1:])
        models.vae.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), jit_compile=True)
        before = models.vae.get_weights()
        feed = array_feed(X, None, X, None, batch_size=8, seed=0, first_epoch=0, epochs=1,
                          replicas=distribute.replicas(strategy))
        history = models.vae.fit(feed.train, steps_per_epoch=feed.steps, epochs=1, verbose=0)
    weights = models.vae.get_weights()
    return {"loss": history.history["loss"][0], "replicas": distribute.replicas(strategy),
            "name": distribute.strategy_name(strategy),
            "largest_update": max(float(np.max(np.abs(a - b))) for a, b in zip(weights, before) if a.size),
            "weights": [w.ravel().tolist() for w in weights]}


def results() -> dict:
    return {"single": one_step(distribute.make_strategy("default", log=lambda _: None)),
            "mirrored": one_step(distribute.make_strategy("mirrored", log=lambda _: None))}


def main() -> None:
    print("RESULTS " + json.dumps(results()))


if __name__ == "__main__":
    main()

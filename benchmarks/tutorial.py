"""The tutorial script that the benchmarks race end to end: what users run before vae-cli.

It is the keras.io convolutional VAE recipe at the architecture of vae-cli's `conv` preset
(Conv32-MaxPool-Conv32-MaxPool-Dense512, latent 2, UpSampling2D+Conv2D decoder), trained the
tutorial way (numpy arrays into fit, custom train_step), followed by the tutorial's two figures:
the latent scatter and the 30x30 manifold decoded one point per `predict` call. It deliberately
uses nothing from vae-cli. Its layers, written as `tutorial_models` for any MLP or conv size, and its
VAE class are also the baselines of benchmarks/fair.py (each in its own process) and the
tutorial decoder variant of the lever study (benchmarks/levers.py).

    python benchmarks/tutorial.py DATA.npz OUT_DIR EPOCHS [GRID]

GRID (default 30, the tutorial's) is the manifold's side: fair.py --quick draws a smaller one.
"""

import os
import sys

import keras
import numpy as np
from keras import layers, ops


class TutorialSampling(layers.Layer):
    """keras.io's Sampling layer: z = mean + exp(log_var / 2) * eps."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * eps


class TutorialVAE(keras.Model):
    """keras.io's VAE class: the loss written out in a GradientTape train_step."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.trackers = [keras.metrics.Mean(name=n) for n in ("total_loss", "reconstruction_loss", "kl_loss")]

    @property
    def metrics(self):
        return self.trackers

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(ops.sum(
                keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        for tracker, value in zip(self.trackers, (total_loss, reconstruction_loss, kl_loss)):
            tracker.update_state(value)
        return {t.name: t.result() for t in self.trackers}


class PortableTutorialVAE(keras.Model):
    """The same VAE and loss for Keras engines other than TensorFlow: a GradientTape train_step is
    TensorFlow-only, so the loss goes in compute_loss, Keras 3's documented hook on every engine."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder

    def call(self, data):
        z_mean, z_log_var, z = self.encoder(data)
        return self.decoder(z), z_mean, z_log_var

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction, z_mean, z_log_var = y_pred
        reconstruction_loss = ops.mean(ops.sum(keras.losses.binary_crossentropy(x, reconstruction), axis=(1, 2)))
        kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
        return reconstruction_loss + ops.mean(ops.sum(kl_loss, axis=1))


def tutorial_models(arch: str, hidden_dim: int, latent_dim: int, conv_filters=(32, 32), input_shape=(28, 28, 1)):
    """(encoder, decoder) written the tutorial way: Dense layers for "mlp" (the Keras 2 examples'
    784-512-2 MLP VAE at other sizes too); for "conv" Conv2D + MaxPooling2D stages down and
    UpSampling2D then Conv2D up. Sizes must halve without remainder (28x28 with two stages)."""
    height, width, channels = input_shape
    x_in = keras.Input(shape=input_shape)
    h = x_in
    if arch == "conv":
        for filters in conv_filters:
            h = layers.Conv2D(filters, 3, activation="relu", padding="same")(h)
            h = layers.MaxPooling2D(2, padding="same")(h)
    h = layers.Dense(hidden_dim, activation="relu")(layers.Flatten()(h))
    z_mean = layers.Dense(latent_dim, name="z_mean")(h)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(h)
    encoder = keras.Model(x_in, [z_mean, z_log_var, TutorialSampling()([z_mean, z_log_var])], name="encoder")

    z_in = keras.Input(shape=(latent_dim,))
    h = layers.Dense(hidden_dim, activation="relu")(z_in)
    if arch == "mlp":
        out = layers.Reshape(input_shape)(layers.Dense(height * width * channels, activation="sigmoid")(h))
    else:
        scale = 2 ** len(conv_filters)
        if height % scale or width % scale:
            raise ValueError(f"the tutorial layers need sizes divisible by {scale}, like 28x28")
        filters = conv_filters[::-1]
        h = layers.Dense(height // scale * width // scale * filters[0], activation="relu")(h)
        h = layers.Reshape((height // scale, width // scale, filters[0]))(h)
        for f in filters:
            h = layers.Conv2D(f, 3, activation="relu", padding="same")(layers.UpSampling2D(2)(h))
        out = layers.Conv2D(channels, 3, activation="sigmoid", padding="same")(h)
    return encoder, keras.Model(z_in, out, name="decoder")


def tutorial_vae(encoder, decoder) -> keras.Model:
    """The tutorial's VAE around (encoder, decoder), compiled with defaults: its own GradientTape
    train_step on TensorFlow, the same loss in compute_loss on the other Keras engines."""
    cls = TutorialVAE if keras.backend.backend() == "tensorflow" else PortableTutorialVAE
    vae = cls(encoder, decoder)
    vae.compile(optimizer=keras.optimizers.Adam())
    return vae


def main(argv=None) -> int:
    args = argv or sys.argv[1:]
    if len(args) not in (3, 4) or not all(a.isdigit() for a in args[2:]):
        print("usage: python benchmarks/tutorial.py DATA.npz OUT_DIR EPOCHS [GRID] (EPOCHS and GRID whole numbers)",
              file=sys.stderr)
        return 2
    npz_path, out_dir, epochs = args[:3]
    n = int(args[3]) if len(args) > 3 else 30
    os.makedirs(out_dir, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(npz_path, allow_pickle=False) as data:
        x_train = np.expand_dims(data["x_train"], -1).astype("float32") / 255
        x_test = np.expand_dims(data["x_test"], -1).astype("float32") / 255
        y_test = data["y_test"]

    encoder, decoder = tutorial_models("conv", hidden_dim=512, latent_dim=2)
    vae = tutorial_vae(encoder, decoder)
    vae.fit(x_train, epochs=int(epochs), batch_size=128, verbose=2)
    print(f"parameters: {encoder.count_params() + decoder.count_params()}")

    # plot_label_clusters
    z_mean, _, _ = vae.encoder.predict(x_test, verbose=0)
    plt.figure(figsize=(12, 10))
    plt.scatter(z_mean[:, 0], z_mean[:, 1], c=y_test)
    plt.colorbar()
    plt.xlabel("z[0]")
    plt.ylabel("z[1]")
    plt.savefig(os.path.join(out_dir, "latent.png"))
    plt.close()

    # plot_latent_space: one decoder.predict call per grid point
    digit_size, scale = 28, 4.0
    figure = np.zeros((digit_size * n, digit_size * n))
    grid_x = np.linspace(-scale, scale, n)
    grid_y = np.linspace(-scale, scale, n)[::-1]
    for i, yi in enumerate(grid_y):
        for j, xi in enumerate(grid_x):
            z_sample = np.array([[xi, yi]])
            x_decoded = vae.decoder.predict(z_sample, verbose=0)
            digit = x_decoded[0].reshape(digit_size, digit_size)
            figure[i * digit_size: (i + 1) * digit_size, j * digit_size: (j + 1) * digit_size] = digit
    plt.figure(figsize=(15, 15))
    plt.imshow(figure, cmap="Greys_r")
    plt.savefig(os.path.join(out_dir, "manifold.png"))
    plt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The tutorial script that the benchmarks race end to end: what users run before vae-cli.

It is the keras.io convolutional VAE recipe at the architecture of vae-cli's `conv` preset
(Conv32-MaxPool-Conv32-MaxPool-Dense512, latent 2, UpSampling2D+Conv2D decoder), trained the
tutorial way (numpy arrays into fit, custom train_step), followed by the tutorial's two figures:
the latent scatter and the 30x30 manifold decoded one point per `predict` call. It deliberately
uses nothing from vae-cli. Its Sampling layer and VAE class are also the in-process baselines of
benchmarks/workloads.py.

    python benchmarks/tutorial.py DATA.npz OUT_DIR EPOCHS
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


def main(argv=None) -> int:
    npz_path, out_dir, epochs = (argv or sys.argv[1:])[:3]
    os.makedirs(out_dir, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(npz_path, allow_pickle=False) as data:
        x_train = np.expand_dims(data["x_train"], -1).astype("float32") / 255
        x_test = np.expand_dims(data["x_test"], -1).astype("float32") / 255
        y_test = data["y_test"]

    latent_dim = 2
    encoder_inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(encoder_inputs)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = TutorialSampling()([z_mean, z_log_var])
    encoder = keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")

    latent_inputs = keras.Input(shape=(latent_dim,))
    x = layers.Dense(512, activation="relu")(latent_inputs)
    x = layers.Dense(7 * 7 * 32, activation="relu")(x)
    x = layers.Reshape((7, 7, 32))(x)
    x = layers.UpSampling2D(2)(x)
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = layers.UpSampling2D(2)(x)
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    decoder_outputs = layers.Conv2D(1, 3, activation="sigmoid", padding="same")(x)
    decoder = keras.Model(latent_inputs, decoder_outputs, name="decoder")

    vae = TutorialVAE(encoder, decoder)
    vae.compile(optimizer=keras.optimizers.Adam())
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
    n, digit_size, scale = 30, 28, 4.0
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

"""train(config, data, run): compile, fit with the run's callbacks, and persist every artifact.

The trainer decides nothing about file names (run.py) or figure looks (figures.py/plots.py);
it only orders the work: models -> fit -> weights -> figures -> metrics.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import __version__, run as rundir
from .config import Config
from .data import Dataset, make_tf_dataset
from .errors import TrainingFailed
from .evaluate import evaluate
from .figures import draw_figures
from .speed import SpeedSettings, choose as choose_speed, has_gpu


# Held-out ELBO and IW bound written into metrics.json: small enough to add seconds, not minutes.
# vae-eval computes the full numbers.
EVAL_EXAMPLES = 2000
EVAL_IW_SAMPLES = 50


def kl_weight(epoch: int, beta: float, warmup_epochs: int) -> float:
    """KL weight used during 0-based `epoch`: 0 at the first epoch, rising linearly to beta
    at epoch `warmup_epochs` and constant after; just beta without warm-up."""
    if warmup_epochs <= 0:
        return float(beta)
    return float(beta) * min(1.0, epoch / warmup_epochs)


@dataclass
class TrainResult:
    history: dict
    metrics: dict


def _callbacks(config: Config, run: rundir.RunDir, models, fixed_z: np.ndarray):
    import keras

    from . import plots

    sampler = models.encoder.get_layer("z")

    class KLWarmup(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            sampler.beta.assign(kl_weight(epoch, config.beta, config.kl_warmup_epochs))

    class StopOnNaN(keras.callbacks.Callback):
        """Like keras TerminateOnNaN, but remembers where it happened for the error message."""
        where = None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.where = (self.epoch + 1, batch + 1)
                self.model.stop_training = True

    class RunWriter(keras.callbacks.Callback):
        """Per epoch: history.csv, best.weights.h5 and a sample grid from a fixed z, all atomic."""
        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []
            self.best = math.inf
            self.epoch_seconds: list[float] = []  # whole epochs, validation and callbacks included
            self.train_seconds: list[float] = []  # the training batches only

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            self.t_val = None

        def on_test_begin(self, logs=None):  # fit's validation: the training part of the epoch is over
            self.t_val = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.train_seconds.append((self.t_val or now) - self.t0)
            self.epoch_seconds.append(now - self.t0)
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if not all(math.isfinite(v) for v in logs.values()):
                return  # StopOnNaN reports it; keep the last good files
            self.rows.append({"epoch": epoch + 1, **logs})
            keys = list(self.rows[0])
            lines = [",".join(keys)] + [",".join(repr(r.get(k, "")) for k in keys) for r in self.rows]
            rundir.write_text(run / rundir.HISTORY_FILE, "\n".join(lines) + "\n")
            if logs.get("val_loss", math.inf) < self.best:
                self.best = logs["val_loss"]
                with rundir.atomic_path(run / rundir.BEST_WEIGHTS_FILE) as tmp:
                    self.model.save_weights(tmp)
            # A plain PNG mosaic (enlarged 3x) costs ~5 ms; a matplotlib figure cost ~0.2 s per epoch.
            mosaic = plots.tile_images(np.asarray(models.decoder(fixed_z, training=False)))
            plots.save_image(mosaic.repeat(3, axis=0).repeat(3, axis=1),
                             run / rundir.SAMPLES_DIR / f"epoch-{epoch + 1:03d}.png")

    nan_guard, writer = StopOnNaN(), RunWriter()
    tensorboard = keras.callbacks.TensorBoard(str(run / rundir.TENSORBOARD_DIR), write_graph=False,
                                              profile_batch=0)
    return [KLWarmup(), nan_guard, writer, tensorboard], nan_guard, writer


def _make_optimizer(config: Config):
    import keras

    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(config.learning_rate)
    return keras.optimizers.Adam(config.learning_rate)


def describe_devices() -> list[str]:
    import tensorflow as tf

    return [f"{d.device_type}:{d.name}" for d in tf.config.list_logical_devices()]


def train(config: Config, data: Dataset, run: rundir.RunDir, *, log=print) -> TrainResult:
    import keras

    from . import plots
    from .models import build_vae

    keras.utils.set_random_seed(config.seed)
    devices = describe_devices()
    log(f"devices: {', '.join(devices)}")
    settings = choose_speed(config, gpu=has_gpu())
    log(f"speed: {', '.join(f'{k} {v}' for k, v in settings.to_dict().items())}")
    models = build_vae(config, data.input_shape)
    models.vae.compile(optimizer=_make_optimizer(config), steps_per_execution=settings.steps_per_execution,
                       jit_compile=settings.jit_compile)
    rundir.save_config(run, config, data.input_shape, data.num_classes,
                       {"requested": config.dataset, "used": data.source, "validation": data.val_split,
                        "n_train": int(len(data.x_train)), "n_val": int(len(data.x_val))})

    train_ds = make_tf_dataset(data.x_train, batch_size=config.batch_size, shuffle=True, seed=config.seed)
    val_ds = make_tf_dataset(data.x_val, batch_size=settings.validation_batch_size, shuffle=False,
                             seed=config.seed)
    fixed_z = np.random.default_rng(config.seed).standard_normal((64, config.latent_dim)).astype("float32")
    callbacks, nan_guard, writer = _callbacks(config, run, models, fixed_z)

    start = time.perf_counter()
    fit = models.vae.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                         verbose=1 if sys.stdout.isatty() else 2, callbacks=callbacks,
                         shuffle=False)  # the tf.data pipeline shuffles, seeded
    wall = time.perf_counter() - start
    del train_ds, val_ds  # frees their copy of the data (~0.2 GB for MNIST) for the figures and evaluation
    if nan_guard.where is not None:
        epoch, step = nan_guard.where
        raise TrainingFailed(
            f"training stopped: the loss became NaN/Inf at epoch {epoch}, step {step}; the "
            f"learning rate ({config.learning_rate:g}) is probably too high, try a smaller "
            f"--learning-rate; weights of the best finished epoch are in {run / rundir.BEST_WEIGHTS_FILE}")

    with rundir.atomic_path(run / rundir.WEIGHTS_FILE) as tmp:
        models.vae.save_weights(tmp)
    for model, name in ((models.encoder, rundir.ENCODER_FILE), (models.decoder, rundir.DECODER_FILE)):
        with rundir.atomic_path(run / name) as tmp:
            model.save(tmp)
    notes = [plots.plot_architecture(m, run / f"{m.name}.png") for m in models]
    for note in {n for n in notes if n}:
        log(note)
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    draw_figures(models.encoder, models.decoder, latent_dim=config.latent_dim, x=data.x_val,
                 y=data.y_val, out_dir=run.path, history=history, seed=config.seed)

    metrics = _metrics(config, data, history, wall, writer, devices, settings)
    metrics["eval"] = evaluate(models.encoder, models.decoder, data.x_val[:EVAL_EXAMPLES],
                               likelihood=config.likelihood, iw_samples=EVAL_IW_SAMPLES,
                               seed=config.seed)
    metrics["eval"]["split"] = data.val_split
    rundir.write_json(run / rundir.METRICS_FILE, metrics)
    return TrainResult(history, metrics)


def _samples_per_second(n: int, seconds: list[float]) -> float:
    steady = seconds[1:] or seconds  # epoch 1 pays for tracing
    return round(n / float(np.median(steady)), 1)


def _metrics(config, data, history, wall, writer, devices, settings: SpeedSettings) -> dict:
    import keras
    import tensorflow as tf

    final = {k: v[-1] for k, v in history.items()}
    n = len(data.x_train)
    return {
        "status": "completed",
        "epochs": len(history.get("loss", [])),
        "final": final,
        "best_val_loss": min(history["val_loss"]) if history.get("val_loss") else None,
        "wall_seconds": round(wall, 3),
        "train_samples_per_second": _samples_per_second(n, writer.train_seconds),
        "epoch_samples_per_second": _samples_per_second(n, writer.epoch_seconds),
        "epoch_seconds": [round(t, 4) for t in writer.epoch_seconds],
        "train_seconds": [round(t, 4) for t in writer.train_seconds],
        "speed": settings.to_dict(),
        "devices": devices,
        "dataset": {"requested": config.dataset, "used": data.source, "validation": data.val_split,
                    "n_train": int(len(data.x_train)), "n_val": int(len(data.x_val))},
        "versions": {"vae_cli": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }

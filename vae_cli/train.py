"""train(config, data, run): compile, fit with the run's callbacks, and persist every artifact.

The trainer decides nothing about file names (run.py) or figure looks (figures.py/plots.py);
it only orders the work: models -> fit -> weights -> figures -> metrics.
"""

from __future__ import annotations

import math
import platform
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

from . import __version__, distribute, run as rundir
from .config import Config
from .data import ConditionalBatches, Dataset, one_hot
from .errors import TrainingFailed, UsageError
from .evaluate import evaluate
from .figures import CONDITIONAL_TRAINING_FIGURES, TRAINING_FIGURES, draw_figures
from .sampling import class_grid

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


def check_data(config: Config, data: Dataset) -> None:
    """Refuse data the config cannot train on, before a run directory is created."""
    if config.conditional and data.num_classes is None:
        raise UsageError(f"--conditional needs a class label for every image, but dataset "
                         f"'{config.dataset}' has none; drop --conditional or use a labelled dataset "
                         "(a folder: one subfolder per class)")


def _fixed_inputs(config: Config, num_classes: int | None):
    """Decoder inputs of the per-epoch sample grid and its column count: 64 fixed z, or for a
    conditional run one row per class with the same 10 z in every row."""
    if num_classes is None:
        return np.random.default_rng(config.seed).standard_normal((64, config.latent_dim)).astype("float32"), 8
    return list(class_grid(num_classes, 10, config.latent_dim, seed=config.seed)), 10


def _callbacks(config: Config, run: rundir.RunDir, models, fixed_inputs):
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
            self.epoch_seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_seconds.append(time.perf_counter() - self.t0)
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
            images = np.asarray(models.decoder(fixed_inputs[0], training=False))
            plots.save_image_grid(images, run / rundir.SAMPLES_DIR / f"epoch-{epoch + 1:03d}.png",
                                  ncols=fixed_inputs[1], title=f"epoch {epoch + 1}")

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


def _fit(vae, config: Config, data, strategy, callbacks):
    """Keras fit, or where fit cannot run (multiworker) the strategy's own loop; -> History."""
    verbose = 1 if sys.stdout.isatty() else 2
    if distribute.needs_custom_loop(strategy):
        return distribute.fit_custom_loop(vae, strategy, data, batch_size=config.batch_size, seed=config.seed,
                                          epochs=config.epochs, callbacks=callbacks, verbose=verbose)
    with warnings.catch_warnings():
        # Streamed folders drop undecodable files, so their length is unknown until the first
        # epoch ends; Keras warns about that end as if data were missing.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        return vae.fit(data.train_batches(config.batch_size, seed=config.seed),
                       validation_data=data.val_batches(config.batch_size), epochs=config.epochs,
                       verbose=verbose, callbacks=callbacks,
                       shuffle=False)  # the tf.data pipeline shuffles, seeded


def train(config: Config, data: Dataset, run: rundir.RunDir, *, log=print, strategy=None) -> TrainResult:
    """`data` is a data.Dataset or folders.FolderDataset; `strategy` a tf.distribute strategy
    from distribute.make_strategy (None: one device)."""
    import keras
    import tensorflow as tf

    from . import plots
    from .models import build_vae

    check_data(config, data)
    num_classes = data.num_classes if config.conditional else None
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.seed)
    devices = describe_devices()
    log(f"devices: {', '.join(devices)}")
    with strategy.scope():  # variables, optimizer slots and metrics become distributed
        models = build_vae(config, data.input_shape, num_classes)
        models.vae.compile(optimizer=_make_optimizer(config))
    rundir.save_config(run, config, data.input_shape, data.num_classes,
                       {"requested": config.dataset, **data.info})

    callbacks, nan_guard, writer = _callbacks(config, run, models, _fixed_inputs(config, num_classes))

    start = time.perf_counter()
    feed = ConditionalBatches(data, num_classes) if num_classes else data  # labels as a second input
    fit = _fit(models.vae, config, feed, strategy, callbacks)
    wall = time.perf_counter() - start
    if nan_guard.where is not None:
        epoch, step = nan_guard.where
        raise TrainingFailed(
            f"training stopped: the loss became NaN/Inf at epoch {epoch}, step {step}; the "
            f"learning rate ({config.learning_rate:g}) is probably too high, try a smaller "
            f"--learning-rate; weights of the best finished epoch are in {run / rundir.BEST_WEIGHTS_FILE}")

    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    if not distribute.is_default(strategy):
        models = distribute.single_device_copy(
            models, lambda: build_vae(config, data.input_shape, num_classes), strategy, log=log)
        if not strategy.extended.should_checkpoint:  # not the chief: it saves, draws and evaluates
            return TrainResult(history, {})
    with rundir.atomic_path(run / rundir.WEIGHTS_FILE) as tmp:
        models.vae.save_weights(tmp)
    for model, name in ((models.encoder, rundir.ENCODER_FILE), (models.decoder, rundir.DECODER_FILE)):
        with rundir.atomic_path(run / name) as tmp:
            model.save(tmp)
    notes = [plots.plot_architecture(m, run / f"{m.name}.png") for m in models]
    for note in {n for n in notes if n}:
        log(note)
    draw_figures(models.encoder, models.decoder, latent_dim=config.latent_dim, x=data.x_val,
                 y=data.y_val, out_dir=run.path, history=history, seed=config.seed, num_classes=num_classes,
                 what=CONDITIONAL_TRAINING_FIGURES if num_classes else TRAINING_FIGURES)

    metrics = _metrics(config, data, history, wall, writer.epoch_seconds, devices)
    metrics["strategy"] = {"name": distribute.strategy_name(strategy), "replicas": strategy.num_replicas_in_sync}
    eval_labels = one_hot(data.y_val[:EVAL_EXAMPLES], num_classes) if num_classes else None
    metrics["eval"] = evaluate(models.encoder, models.decoder, data.x_val[:EVAL_EXAMPLES],
                               likelihood=config.likelihood, iw_samples=EVAL_IW_SAMPLES,
                               seed=config.seed, labels=eval_labels)
    metrics["eval"]["split"] = data.val_split
    rundir.write_json(run / rundir.METRICS_FILE, metrics)
    return TrainResult(history, metrics)


def _metrics(config, data, history, wall, epoch_seconds, devices) -> dict:
    import keras
    import tensorflow as tf

    final = {k: v[-1] for k, v in history.items()}
    steady = epoch_seconds[1:] or epoch_seconds  # epoch 1 pays for tracing
    return {
        "status": "completed",
        "epochs": len(history.get("loss", [])),
        "final": final,
        "best_val_loss": min(history["val_loss"]) if history.get("val_loss") else None,
        "wall_seconds": round(wall, 3),
        "train_samples_per_second": round(data.n_train / float(np.median(steady)), 1),
        "devices": devices,
        "dataset": {"requested": config.dataset, **data.info},
        "versions": {"vae_cli": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }

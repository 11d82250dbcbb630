"""train(config, data, run): compile, fit with the run's callbacks, and persist every artifact.

The trainer decides nothing about file names (run.py), checkpoints (checkpoint.py), per-epoch
writing (callbacks.py) or figure looks (figures.py/plots.py); it only orders the work:
models -> fit -> weights -> figures -> metrics. train_run.py wraps it into a whole vae-train run
(data, checks, run directory, lock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__, backend, distribute, run as rundir
from .callbacks import KLWarmup, NonFiniteLoss, RunWriter, StopAtSafePoint, StopOnNaN, TensorBoardLog
from .checkpoint import Progress, finish_weights, load_checkpoint, saved_epochs_text, saved_progress
from .config import Config
from .data import ConditionalBatches, Dataset, one_hot, steps_per_epoch
from .errors import Interrupted, TrainingFailed, UsageError, describe_os_error
from .evaluate import evaluate
from .feed import Feed, array_feed, array_steps, pipeline_feed
from .figures import CONDITIONAL_TRAINING_FIGURES, TRAINING_FIGURES, draw_figures
from .priors import prior_components
from .samplers import learned_prior, prior_sampler
from .signals import SIGNAL_NAMES, StopSignals
from .speed import choose as choose_speed, speed_line, speed_metrics
from .weights import load_weights


# Held-out ELBO and IW bound written into metrics.json: small enough to add seconds, not minutes.
# The full numbers come from evaluate() over a whole split.
EVAL_EXAMPLES = 2000
EVAL_IW_SAMPLES = 50


@dataclass
class TrainResult:
    history: dict  # {"loss": [...], "val_loss": [...], ...}, one value per epoch
    metrics: dict  # what metrics.json holds; empty on a worker other than the chief
    run_path: Path | None = None  # the run directory; None on a worker other than the chief


def check_data(config: Config, data: Dataset) -> None:
    """Refuse data the config cannot train on, before a run directory is created."""
    if config.conditional and data.num_classes is None:
        raise UsageError(f"--conditional needs a class label for every image, but dataset "
                         f"'{config.dataset}' has none; drop --conditional or use a labelled dataset "
                         "(a folder: one subfolder per class)")


def _grid_inputs(config: Config, models, num_classes: int | None):
    """The per-epoch sample grid: a function giving its decoder inputs for the models as they are
    at an epoch's end, and its column count. 64 z from the run's prior, or for a conditional run
    one row per class with the same 10 z in every row.

    The z come from prior_sampler with the run's seed at every epoch, so from the same noise: for
    N(0, I) the same z as ever; for a learned prior, which moves as it trains, the same seeded
    eps and the same seeded uniforms, which pick each point's component by the prior's current
    weights (z = mean_k + std_k * eps), so successive grids stay comparable."""
    count = 64 if num_classes is None else 10

    def inputs() -> tuple:
        z = prior_sampler(config, models.vae, models.encoder)(count, seed=config.seed)
        if num_classes is None:
            return (z,)
        return np.tile(z, (num_classes, 1)), one_hot(np.repeat(np.arange(num_classes), count), num_classes)

    return inputs, 8 if num_classes is None else 10


def _make_optimizer(config: Config, steps_per_epoch: int):
    import keras

    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch)
    # Keras applies weight_decay decoupled from the gradient (AdamW's rule) in every optimizer
    decay = config.weight_decay or None
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, weight_decay=decay)
    return keras.optimizers.Adam(learning_rate, weight_decay=decay)


def train(config: Config, data: Dataset, run: rundir.RunDir, *, log=print, strategy=None,
          resume_run: bool = False, callbacks=(), engine: backend.Engine | None = None) -> TrainResult:
    """Train into `run`; with resume_run, continue from its checkpoint (weights, optimizer, RNG,
    history). SIGINT/SIGTERM raise Interrupted after saving; a NaN loss raises TrainingFailed
    after writing the artifacts of the last good epoch.

    `data` is a data.Dataset or folders.FolderDataset; `strategy` one from
    distribute.make_strategy (None: one device); `callbacks` extra Keras callbacks, run after the
    run's own (callbacks.py), so at an epoch's end they see it recorded and checkpointed.
    `engine`: the Keras engine chosen before Keras was imported (train_run does), with why;
    None: config.backend, which must be the engine Keras runs on."""
    from .data import BinarizedValidation

    engine = engine or backend.choose(config.backend, config.arch, gpu=False)
    backend.activate(engine)  # refuses a config whose engine is not the imported one
    config = dataclasses.replace(config, backend=engine.name)  # what config.json records
    if strategy is None:
        strategy = distribute.default_strategy()
    if config.binarize:  # training images are binarised in the model, every step (layers.Binarize)
        data = BinarizedValidation(data, config.seed)
    with StopSignals() as stops:
        try:
            return _train(config, data, run, log, resume_run, stops, strategy, list(callbacks), engine)
        except Exception as e:
            if isinstance(e, (Interrupted, OSError)) or backend.is_out_of_memory(e):
                raise _stopped_early(e, config, run) from None
            raise


def _stopped_early(e: BaseException, config: Config, run: rundir.RunDir) -> Exception:
    """The one-line error for a run that stopped before finishing; metrics.json says why."""
    saved = saved_progress(run / rundir.CHECKPOINT_FILE)  # what a resume will find
    kept = saved_epochs_text(saved.epochs_done)
    if isinstance(e, Interrupted):
        error = Interrupted(e.signum, f"interrupted by {SIGNAL_NAMES.get(e.signum, e.signum)} with "
                            f"{saved.epochs_done} of {config.epochs} epochs finished; {kept}. "
                            f"Resume with: vae-train --resume {run.path}")
    elif isinstance(e, OSError):  # disk full, folder removed, ...: the last checkpoint is intact
        error = TrainingFailed(f"error: writing into {run.path} failed: {describe_os_error(e)}; {kept}. "
                               f"Then continue with: vae-train --resume {run.path}")
    else:
        error = TrainingFailed(f"out of memory while training ({type(e).__name__}); try a smaller "
                               f"--batch-size, --hidden-dim or --conv-filters; {kept}")
    _write_status(run, "interrupted" if isinstance(e, Interrupted) else "error", saved, config, str(error))
    return error


def _train(config, data, run, log, resume_run, stops, strategy, callbacks, engine) -> TrainResult:
    import keras

    from .models import build_vae

    check_data(config, data)
    num_classes = data.num_classes if config.conditional else None
    # numpy batches on JAX, else the dataset's tf.data pipelines (feed.py)
    arrays = data.train_arrays() if engine.name == "jax" else None
    # nothing in a JAX run on arrays needs TensorFlow; Keras keeps the answer for saving models too
    with backend.tensorflow_hidden(arrays is not None):
        keras.utils.set_random_seed(config.seed)
    devices = backend.devices()
    log(f"devices: {', '.join(devices)}")
    replicas = distribute.replicas(strategy)
    gpu = backend.has_gpu()
    epoch_steps = _epoch_steps(config, data, arrays)
    settings = choose_speed(config, engine, gpu=gpu, distributed=not distribute.is_default(strategy),
                            epoch_steps=epoch_steps)
    log(f"speed: {speed_line(settings)}")
    policy = backend.dtype_policy(config.precision, gpu)
    keras.config.set_dtype_policy(policy)  # the models built next compute in it
    with distribute.scope(strategy):  # variables, optimizer slots and metrics become distributed
        models = build_vae(config, data.input_shape, num_classes)
        models.vae.compile(optimizer=_make_optimizer(config, steps_per_epoch(data.n_train, config.batch_size)),
                           steps_per_execution=settings.steps_per_execution, jit_compile=settings.jit_compile)
        progress = _start(config, data, run, models, resume_run, log)
    # extra callbacks see each epoch's files written (train's promise); alone, they are written while the next trains
    writer = RunWriter(run, progress, models.decoder, *_grid_inputs(config, models, num_classes),
                       patience=config.patience, background=not callbacks)
    own = [KLWarmup(models.vae, config.beta, config.kl_warmup_epochs), StopOnNaN(), writer,
           TensorBoardLog(run / rundir.TENSORBOARD_DIR), StopAtSafePoint(stops)]
    feed = ConditionalBatches(data, num_classes) if num_classes else data  # labels as a second input
    cpu_start = time.process_time()
    try:
        failure = _fit(config, feed, arrays, run, models, progress, stops, strategy, writer, [*own, *callbacks])
    except BaseException:
        writer.finish(quiet=True)  # the last epoch's files are on disk before anything reads them
        raise
    writer.finish()
    cpu_seconds = time.process_time() - cpu_start
    keras.config.set_dtype_policy("float32")
    if not distribute.is_default(strategy) or policy != "float32":
        # plain float32 one-device copies save, draw and evaluate: what every reader rebuilds
        models = distribute.single_device_copy(
            models, lambda: build_vae(config, data.input_shape, num_classes), strategy, log=log)
        if not distribute.is_chief(strategy):  # not the chief: it saves, draws and evaluates
            return TrainResult(progress.history_columns(), {}, None)
    metrics = _finish(config, data, run, models, progress, devices, log, num_classes)
    trained = data.n_train if arrays is None else array_steps(data.n_train, config.batch_size) * config.batch_size
    metrics.update(speed_metrics(min(trained, data.n_train), progress.epoch_seconds, writer.train_seconds, settings))
    # this process's training on all threads: unlike wall time, not inflated by other jobs
    metrics["cpu_seconds"] = round(cpu_seconds, 3)
    metrics["steps_per_epoch"] = epoch_steps  # optimizer steps; None: a folder's pass, uncounted
    metrics["strategy"] = {"name": distribute.strategy_name(strategy), "replicas": replicas}
    metrics["backend"] = {"name": engine.name, "reason": engine.reason}
    metrics["precision"] = {"name": config.precision, "dtype_policy": policy}
    metrics["status"] = "failed" if failure else "completed"
    if failure:
        metrics["failure"] = failure
    rundir.write_json(run / rundir.METRICS_FILE, metrics)
    if failure:
        raise TrainingFailed(f"{failure}; {run.path} holds the weights and figures of epoch "
                             f"{progress.epochs_done}, the last good one")
    return TrainResult(progress.history_columns(), metrics, run.path)


def _start(config, data, run, models, resume_run, log) -> Progress:
    """Restore a resumed run's checkpoint (before anything is written), then write config.json."""
    progress = Progress()
    checkpoint = run / rundir.CHECKPOINT_FILE
    if resume_run and checkpoint.exists():
        progress = load_checkpoint(checkpoint, models.vae)
    rundir.save_config(run, config, data.input_shape, data.num_classes,
                       {"requested": config.dataset, **data.info})
    if resume_run:
        _remove_temporaries(run)
        progress.resumed_at.append(progress.epochs_done)
        # rows of an epoch whose checkpoint was never written are dropped
        rundir.write_text(run / rundir.HISTORY_FILE, progress.history_csv())
        log(f"resuming at epoch {progress.epochs_done + 1} of {config.epochs}")
    return progress


def _epoch_steps(config, data, arrays) -> int | None:
    """Batches per epoch when all epochs are one pipeline cut by step count (arrays in memory);
    None when each epoch is its own pass (folders)."""
    if arrays is not None:
        return array_steps(len(arrays[0]), min(config.batch_size, len(arrays[0])))
    return data.epoch_steps(config.batch_size)


def _feed(config, data, arrays, strategy, first_epoch: int) -> Feed:
    """numpy batches of `arrays` (the JAX engine), else the dataset's pipelines (feed.py)."""
    options = {"batch_size": config.batch_size, "seed": config.seed, "first_epoch": first_epoch,
               "epochs": config.epochs}
    if arrays is None:
        return pipeline_feed(data, **options)
    return array_feed(*arrays, data.x_val, data.y_val, **options, replicas=distribute.replicas(strategy),
                      num_classes=data.num_classes if config.conditional else None)


# atomic.atomic_path's temporary names: "." + the file's stem + "-" + 8 random characters + suffixes
_TEMPORARY = re.compile(r"^\.[A-Za-z0-9_.-]+-[a-z0-9_]{8}(\.[A-Za-z0-9]+)+$")


def _remove_temporaries(run) -> None:
    """Delete the temporary files a killed run left while it wrote (kill -9 lets nothing clean
    up); the run is locked, so no other process is writing them."""
    for folder in (run.path, run / rundir.SAMPLES_DIR):
        for path in folder.glob(".*") if folder.is_dir() else ():
            if path.is_file() and _TEMPORARY.match(path.name):
                path.unlink(missing_ok=True)


def _fit(config, data, arrays, run, models, progress, stops, strategy, writer, callbacks) -> str | None:
    """Train the remaining epochs; on a NaN/Inf loss, return why after restoring the last good
    epoch (or raise TrainingFailed when there is none)."""
    if progress.epochs_done >= config.epochs:
        return None
    # Under multiworker every worker must reach every collective step, so a signal cannot wait
    # for a batch boundary on one of them: there it stops at once (and --resume is refused).
    custom_loop = distribute.needs_custom_loop(strategy)
    try:
        with contextlib.nullcontext() if custom_loop else stops.deferred():
            _run_epochs(models.vae, config, data, arrays, strategy, callbacks, progress.epochs_done)
        stops.check()  # a stop requested during the last epoch's validation
        if config.patience and (run / rundir.BEST_WEIGHTS_FILE).exists():
            with distribute.scope(strategy):  # keep the best epoch, not the last
                load_weights(models.vae, run / rundir.BEST_WEIGHTS_FILE)  # weights only: optimizer kept
    except NonFiniteLoss as e:
        writer.finish(quiet=True)  # the last good epoch's checkpoint, written in the background
        failure = (f"training stopped: {e.where}; the learning rate ({config.learning_rate:g}) is "
                   f"probably too high for this model, try --learning-rate {config.learning_rate / 10:g}")
        if not progress.epochs_done:
            _write_status(run, "failed", progress, config, failure)
            raise TrainingFailed(f"{failure}; no epoch had finished, so no weights were kept") from None
        with distribute.scope(strategy):
            load_checkpoint(run / rundir.CHECKPOINT_FILE, models.vae)  # the last good epoch
        return failure
    return None


def _run_epochs(vae, config: Config, data, arrays, strategy, callbacks, first_epoch: int) -> None:
    """Keras fit from `first_epoch`, or where fit cannot run (multiworker) the strategy's loop."""
    verbose = 1 if sys.stdout.isatty() else 2
    if distribute.needs_custom_loop(strategy):
        distribute.fit_custom_loop(vae, strategy, data, batch_size=config.batch_size, seed=config.seed,
                                   epochs=config.epochs, callbacks=callbacks, verbose=verbose)
        return
    feed = _feed(config, data, arrays, strategy, first_epoch)
    with warnings.catch_warnings(), distribute.scope(strategy):
        # Streamed folders drop undecodable files, so their length is unknown until the first
        # epoch ends; Keras warns about that end as if data were missing.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        vae.fit(feed.train, validation_data=feed.validation, validation_batch_size=feed.validation_batch_size,
                epochs=config.epochs, initial_epoch=first_epoch, steps_per_epoch=feed.steps, verbose=verbose,
                callbacks=callbacks, shuffle=False)  # the batches are shuffled, seeded


def _finish(config, data, run, models, progress, devices, log, num_classes) -> dict:
    """Final weights, standalone models, diagrams, figures and held-out numbers."""
    from . import diagram

    finish_weights(run, models.vae)  # vae.weights.h5; best and checkpoint then share its arrays
    for model, name in ((models.encoder, rundir.ENCODER_FILE), (models.decoder, rundir.DECODER_FILE)):
        with rundir.atomic_path(run / name) as tmp:
            model.save(tmp)
    notes = [diagram.plot_architecture(m, run / f"{m.name}.png") for m in models]
    for note in {n for n in notes if n}:
        log(note)
    history = progress.history_columns()
    prior = learned_prior(config, models.vae, models.encoder)  # None: N(0, I)
    draw_figures(models.encoder, models.decoder, latent_dim=config.latent_dim, x=data.x_val,
                 y=data.y_val, out_dir=run.path, history=history, seed=config.seed, num_classes=num_classes,
                 class_names=data.info.get("class_names"),
                 what=CONDITIONAL_TRAINING_FIGURES if num_classes else TRAINING_FIGURES,
                 prior=prior, sampler=None if prior is None else prior_sampler(config, models.vae, models.encoder))
    metrics = _metrics(config, data, history, progress.fit_seconds, devices)
    if progress.resumed_at:
        metrics["resumed_at_epochs"] = progress.resumed_at
    eval_labels = one_hot(data.y_val[:EVAL_EXAMPLES], num_classes) if num_classes else None
    metrics["eval"] = evaluate(models.encoder, models.decoder, data.x_val[:EVAL_EXAMPLES],
                               likelihood=config.likelihood, iw_samples=EVAL_IW_SAMPLES,
                               seed=config.seed, labels=eval_labels,
                               prior=None if prior is None else prior_components(config, models.vae, models.encoder))
    metrics["eval"]["split"] = data.val_split
    return metrics


def _write_status(run, status: str, progress, config, message: str) -> None:
    """metrics.json for a run that stopped early; best effort, the disk may be what failed."""
    with contextlib.suppress(OSError):
        rundir.write_json(run / rundir.METRICS_FILE, {
            "status": status, "message": message, "epochs_completed": progress.epochs_done,
            "epochs": config.epochs, "history": progress.history_columns(),
            **({"resume": f"vae-train --resume {run.path}"} if status != "failed" else {})})


def _metrics(config, data, history, wall, devices) -> dict:
    final = {k: v[-1] for k, v in history.items()}
    return {
        "epochs": len(history.get("loss", [])),
        "final": final,
        "best_val_loss": min(history["val_loss"]) if history.get("val_loss") else None,
        "wall_seconds": round(wall, 3),
        "devices": devices,
        "dataset": {"requested": config.dataset, **data.info},
        "versions": {"vae_cli": __version__, **backend.versions(), "numpy": np.__version__,
                     "python": platform.python_version()},
    }

"""The Keras callbacks every training run uses; trainer.py puts them in this order:

KLWarmup         the KL weight of each epoch (kl_weight), logged while it rises
StopOnNaN        ends training at once on a NaN/Inf loss, saying where (NonFiniteLoss)
RunWriter        per epoch: history.csv, best.weights.h5, a sample grid and, last, the checkpoint
TensorBoardLog   per epoch: the logged numbers as TensorBoard scalars (events.py)
StopAtSafePoint  acts on a SIGINT/SIGTERM that signals.StopSignals recorded during fit

Each takes what it needs in its constructor; extra callbacks (trainer.train's `callbacks`) run
after these. Importing this module imports Keras: only the trainer does, after the fast checks.
"""

from __future__ import annotations

import concurrent.futures
import copy
import math
import time

import keras

from . import latent, plots, run as rundir
from .atomic import write_bytes
from .checkpoint import Progress, progress_attributes, rng_states
from .events import EventFile
from .layers import IWAELoss, Sampling
from .priors import PriorKL
from .signals import StopSignals
from .weights import EpochWeights, with_attributes


class NonFiniteLoss(Exception):
    """The loss became NaN/Inf; `where` says when, for the one-line message."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


def kl_weight(epoch: int, beta: float, warmup_epochs: int) -> float:
    """KL weight used during 0-based `epoch`: 0 at the first epoch, rising linearly to beta
    at epoch `warmup_epochs` and constant after; just beta without warm-up."""
    if warmup_epochs <= 0:
        return float(beta)
    return float(beta) * min(1.0, epoch / warmup_epochs)


class KLWarmup(keras.callbacks.Callback):
    """Sets the KL weight of `vae` for each epoch; during warm-up also logs it (a history.csv
    column)."""

    def __init__(self, vae, beta: float, warmup_epochs: int):
        super().__init__()
        # the KL weight lives in the Sampling layer, and in IWAELoss or PriorKL when they carry the KL terms
        self.kl_weights = [layer.beta for layer in vae._flatten_layers()
                           if isinstance(layer, (Sampling, IWAELoss, PriorKL))]
        self.beta, self.warmup_epochs = beta, warmup_epochs

    def on_epoch_begin(self, epoch, logs=None):
        for weight in self.kl_weights:
            weight.assign(kl_weight(epoch, self.beta, self.warmup_epochs))

    def on_epoch_end(self, epoch, logs=None):
        if self.warmup_epochs and logs is not None:
            logs["kl_weight"] = kl_weight(epoch, self.beta, self.warmup_epochs)


class StopOnNaN(keras.callbacks.Callback):
    """Like keras TerminateOnNaN, but stops at once and says where it happened."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.first = batch  # one call runs steps_per_execution batches: first..batch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            steps = f"step {batch + 1}" if batch == self.first else f"steps {self.first + 1}-{batch + 1}"
            raise NonFiniteLoss(f"the loss became {float(loss)} at epoch {self.epoch + 1}, {steps}")


class RunWriter(keras.callbacks.Callback):
    """Per epoch, all atomic: history.csv, best.weights.h5, a sample grid (`ncols` images a row)
    and, last, the resume checkpoint, so a checkpoint never runs ahead of the other files. The
    grid decodes `sample_inputs`: the decoder's inputs, or a function giving them for the models
    as they are at the epoch's end (a learned prior moves as it trains). Records each epoch in
    `progress`, and in `train_seconds` the training part of each epoch of this process (without
    validation). With `patience`, stops training that many epochs after the best one (the trainer
    then restores the best).

    At an epoch's end the model's state is captured (weights.EpochWeights) and the grid decoded; with
    `background` the files are then written by a thread while the next epoch trains, at most one
    epoch behind: the next epoch's end, the end of fit and `finish()` wait for them (the trainer
    calls `finish()` before it reads anything back, also when fit stopped with an error).
    Without, they are written before the callbacks after this one see the epoch's end.

    An epoch's seconds run from its start to the next epoch's start (or to the end of fit, its
    files written), so they include validation and all end-of-epoch work. That full time is
    known only after the epoch's checkpoint is written, so the checkpoint holds its own epoch's
    time up to its end, and the later checkpoints hold the full time."""

    def __init__(self, run: rundir.RunDir, progress: Progress, decoder, sample_inputs, ncols: int,
                 patience: int = 0, background: bool = True):
        super().__init__()
        self.run, self.progress, self.decoder = run, progress, decoder
        self.sample_inputs, self.ncols, self.patience = sample_inputs, ncols, patience
        self.background = background
        self.train_seconds: list[float] = []
        self.t0 = None  # start of the epoch whose full time is still open
        self.weights = None
        self._thread = self._pending = None

    def on_train_begin(self, logs=None):
        self.fit_start, self.fit_before = time.perf_counter(), self.progress.fit_seconds
        self.weights = EpochWeights(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._close_epoch()
        self.t0 = time.perf_counter()
        self.t_val = None

    def on_test_begin(self, logs=None):  # fit's validation: the training part of the epoch is over
        self.t_val = time.perf_counter()

    def on_train_end(self, logs=None):
        self.finish()
        self._close_epoch()

    def finish(self, quiet: bool = False) -> None:
        """Wait until the last epoch's files are written and end the writing thread; raise what
        failed unless quiet (when training is already stopping with another error)."""
        try:
            self._wait(quiet)
        finally:
            if self._thread is not None:
                self._thread.shutdown()
                self._thread = None

    def _wait(self, quiet: bool = False) -> None:
        pending, self._pending = self._pending, None
        error = pending.exception() if pending is not None else None
        if error is not None and not quiet:
            raise error

    def _close_epoch(self) -> None:
        """Give the last recorded epoch its full time, now that its end-of-epoch work is done."""
        if self.t0 is not None and self.progress.epoch_seconds:
            now = time.perf_counter()
            self.progress.epoch_seconds[-1] = now - self.t0
            self.progress.fit_seconds = self.fit_before + now - self.fit_start
        self.t0 = None

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.train_seconds.append((self.t_val or now) - self.t0)
        logs = {k: float(v) for k, v in (logs or {}).items()}
        bad = sorted(k for k, v in logs.items() if not math.isfinite(v))
        if bad:
            raise NonFiniteLoss(f"{bad[0]} became {logs[bad[0]]} at the end of epoch {epoch + 1}")
        progress = self.progress
        improved = progress.record(epoch + 1, logs, now - self.t0, self.fit_before + now - self.fit_start)
        captured, rng = self.weights.capture(), rng_states(self.model)
        inputs = self.sample_inputs() if callable(self.sample_inputs) else self.sample_inputs
        images = latent.decode(self.decoder, *inputs)
        self._wait()  # the previous epoch's files first: never two epochs in flight
        if not self.background:
            self._write(epoch + 1, progress, improved, captured, rng, images)
        else:
            if self._thread is None:
                self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vae-cli-writer")
            self._pending = self._thread.submit(self._write, epoch + 1, copy.deepcopy(progress), improved,
                                                captured, rng, images)
        if self.patience and progress.epochs_since_best() >= self.patience:
            self.model.stop_training = True  # early stopping

    def _write(self, epoch: int, progress: Progress, improved: bool, captured, rng: list, images) -> None:
        """One epoch's files, in the order that keeps the checkpoint last (background thread)."""
        run = self.run
        rundir.write_text(run / rundir.HISTORY_FILE, progress.history_csv())
        if improved:  # model weights only (weights.py)
            write_bytes(run / rundir.BEST_WEIGHTS_FILE, self.weights.file_bytes(captured, optimizer=False))
        # A plain PNG mosaic (enlarged 3x) costs ~10 ms; a matplotlib figure cost ~0.15 s per epoch.
        mosaic = plots.tile_images(images, ncols=self.ncols)
        plots.save_image(mosaic.repeat(3, axis=0).repeat(3, axis=1),
                         run / rundir.SAMPLES_DIR / f"epoch-{epoch:03d}.png")
        checkpoint = self.weights.file_bytes(captured, optimizer=True)
        write_bytes(run / rundir.CHECKPOINT_FILE, with_attributes(checkpoint, progress_attributes(progress, rng)))


class TensorBoardLog(keras.callbacks.Callback):
    """The numbers of each epoch as TensorBoard scalars in `folder`/train and `folder`/validation,
    tagged as Keras's TensorBoard callback tags them, on every engine (events.py)."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder
        self.files = {}

    def on_train_begin(self, logs=None):
        self.files = {part: EventFile(self.folder / part) for part in ("train", "validation")}

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        train = {f"epoch_{k}": v for k, v in logs.items() if not k.startswith("val_")}
        optimizer = self.model.optimizer
        train["epoch_learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        self.files["train"].scalars(epoch, train)
        validation = {k[len("val_"):]: v for k, v in logs.items() if k.startswith("val_")}
        if validation:
            iterations = int(keras.ops.convert_to_numpy(optimizer.iterations))
            self.files["validation"].scalars(
                iterations, {f"evaluation_{k}_vs_iterations": v for k, v in validation.items()})
            self.files["validation"].scalars(epoch, {f"epoch_{k}": v for k, v in validation.items()})

    def on_train_end(self, logs=None):
        for file in self.files.values():
            file.close()


class StopAtSafePoint(keras.callbacks.Callback):
    """Ends fit at a batch boundary once `stops` recorded a stop request. A request that arrives
    during validation is acted on when the next epoch begins, after every epoch-end callback (the
    checkpoint included) has seen the finished epoch."""

    def __init__(self, stops: StopSignals):
        super().__init__()
        self.stops = stops

    def on_train_batch_end(self, batch, logs=None):
        self.stops.check()

    def on_epoch_begin(self, epoch, logs=None):
        self.stops.check()

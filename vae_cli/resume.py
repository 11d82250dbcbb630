"""Interrupt and resume: the per-epoch checkpoint, the signal handling that reaches it, and the
checks that decide whether a run directory can be continued.

What survives what:
- After every finished epoch RUN/checkpoint.weights.h5 is replaced atomically. It is ONE file:
  weights and optimizer state (Keras's save_weights writes both) plus an attribute holding the
  sampler's RNG state, the history rows and the bookkeeping, so any kill, even SIGKILL, leaves the
  previous checkpoint or the new one, never a mix of two epochs.
- SIGINT/SIGTERM during training stop after the current compiled call of steps_per_execution
  batches; the unfinished epoch is dropped, metrics.json says "interrupted" and the command exits
  130/143. A second signal stops at once.
- `vae-train --resume RUN` restores all of it. The batches of epoch e depend only on (seed, e)
  (data.make_train_dataset), so on CPU a resumed run is bit-for-bit the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import run as rundir
from .config import Config, find_preset, read_preset, resolve
from .errors import Interrupted, UsageError

PROGRESS_ATTR = "vae_cli_progress"
PROGRESS_VERSION = 1
SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
RESUMABLE_FLAGS = ("epochs", "strategy")  # what a resumed run may change: not the model or its math


@dataclass
class Progress:
    """Where training stands after `epochs_done` finished epochs; rows mirror history.csv."""

    epochs_done: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_loss: float | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0
    resumed_at: list[int] = field(default_factory=list)

    def record(self, epoch: int, logs: dict[str, float], seconds: float, fit_seconds: float) -> bool:
        """Add finished epoch `epoch` (1-based); True when its validation -ELBO is the best so far.

        (`best_val_loss` keeps its checkpoint name but holds validation_neg_elbo.)
        """
        self.history.append({"epoch": epoch, **logs})
        self.epochs_done = epoch
        self.epoch_seconds.append(seconds)
        self.fit_seconds = fit_seconds
        val = validation_neg_elbo(logs)
        improved = val is not None and (self.best_val_loss is None or val < self.best_val_loss)
        if improved:
            self.best_val_loss = val
        return improved

    def epochs_since_best(self) -> int:
        """Finished epochs after the one with the best validation -ELBO (all of them if none)."""
        values = [validation_neg_elbo(row) for row in self.history]
        scored = [(v, i) for i, v in enumerate(values) if v is not None]
        return len(values) - 1 - min(scored)[1] if scored else len(values)

    def history_columns(self) -> dict[str, list[float]]:
        """{"loss": [...], "val_loss": [...], ...} as keras's History has it."""
        keys = [k for k in (self.history[0] if self.history else {}) if k != "epoch"]
        return {k: [row[k] for row in self.history] for k in keys}

    def history_csv(self) -> str:
        keys = list(self.history[0]) if self.history else ["epoch"]
        lines = [",".join(keys)] + [",".join(repr(row.get(k, "")) for k in keys) for row in self.history]
        return "\n".join(lines) + "\n"


def validation_neg_elbo(logs: dict) -> float | None:
    """The number best.weights.h5 and early stopping follow: val_recon + val_kl, the held-out
    -ELBO whatever the objective (KL warm-up, free bits and IWAE all change val_loss); val_loss
    where those are not logged."""
    if "val_recon" in logs and "val_kl" in logs:
        value = float(logs["val_recon"]) + float(logs["val_kl"])
    elif "val_loss" in logs:
        value = float(logs["val_loss"])
    else:
        return None
    return value if math.isfinite(value) else None


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _is_count(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int) and v >= 0


def _check_progress(d: Any, where: str) -> Progress:
    """Progress from checkpoint JSON, refusing anything that is not exactly what we write."""
    def bad(what: str) -> UsageError:
        return UsageError(f"{where}: {what}; the checkpoint is damaged, resume is not possible "
                          "(start a new run, or delete the file to restart this one from epoch 1)")

    if not isinstance(d, dict) or d.get("version") != PROGRESS_VERSION:
        raise bad(f"unknown checkpoint format (expected version {PROGRESS_VERSION})")
    try:
        p = Progress(**{f.name: d[f.name] for f in dataclasses.fields(Progress)})
    except (KeyError, TypeError):
        raise bad("incomplete progress record")
    n, rows = p.epochs_done, p.history
    if (not _is_count(n) or not isinstance(rows, list) or len(rows) != n
            or any(not isinstance(r, dict) or not all(map(_is_number, r.values())) for r in rows)
            or [r.get("epoch") for r in rows] != list(range(1, n + 1))):
        raise bad("history does not match the number of finished epochs")
    if (not isinstance(p.epoch_seconds, list) or not all(map(_is_number, p.epoch_seconds))
            or not _is_number(p.fit_seconds) or not (p.best_val_loss is None or _is_number(p.best_val_loss))
            or not isinstance(p.resumed_at, list) or not all(map(_is_count, p.resumed_at))):
        raise bad("malformed progress record")
    if not isinstance(d.get("rng"), list):
        raise bad("no RNG state")
    return p


def read_progress(path: Path) -> tuple[Progress, list]:
    """(progress, rng states) from a checkpoint, without TensorFlow: h5py reads the attribute."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(PROGRESS_ATTR)
    except Exception as e:  # h5py raises OSError, KeyError or RuntimeError for damaged files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UsageError(f"{path}: unreadable ({first}); the checkpoint is damaged, resume is not "
                         "possible (start a new run)") from None
    if raw is None:
        raise UsageError(f"{path}: not a vae-cli checkpoint (no progress record)")
    try:
        d = json.loads(raw)
    except (TypeError, ValueError):
        d = None
    return _check_progress(d, str(path)), d["rng"]


def saved_progress(path: Path) -> Progress:
    """The progress a resume would start from: the checkpoint's, or none when it is absent."""
    try:
        return read_progress(path)[0] if path.exists() else Progress()
    except UsageError:
        return Progress()


def _rng_variables(model) -> list:
    """The seed-generator states of the model's random layers (not part of save_weights)."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def save_checkpoint(path: Path, model, progress: Progress) -> None:
    """Weights + optimizer + RNG + progress in one atomically replaced file."""
    import numpy as np

    record = {**dataclasses.asdict(progress), "version": PROGRESS_VERSION,
              "rng": [np.asarray(v.numpy()).tolist() for v in _rng_variables(model)]}
    rundir.write_weights(path, model, {PROGRESS_ATTR: json.dumps(record, allow_nan=False)})


def load_checkpoint(path: Path, model) -> Progress:
    """Restore weights, optimizer state and RNG of a compiled model; return its progress."""
    import h5py
    import numpy as np

    progress, rng = read_progress(path)
    model.optimizer.build(model.trainable_variables)
    with h5py.File(path, "r") as f:
        saved_opt = len(f["optimizer/vars"]) if "optimizer/vars" in f else 0
    rundir.check_weights_match(path, model)  # Keras would load some mismatches silently
    rng_vars = _rng_variables(model)
    if saved_opt != len(model.optimizer.variables) or len(rng) != len(rng_vars):
        raise UsageError(f"{path}: the checkpoint's optimizer/RNG state does not match config.json; "
                         "was it copied from another run? Resume is not possible")
    try:
        with warnings.catch_warnings():
            # Keras only warns when part of a file does not fit ("layers will retain their
            # freshly-initialized weights"); a resume must not go on half-restored
            warnings.simplefilter("error")
            model.load_weights(path)
        for var, state in zip(rng_vars, rng):
            var.assign(np.asarray(state, dtype=var.dtype).reshape(var.shape))
    except Exception as e:  # keras/h5py raise many types for mismatched or damaged files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UsageError(f"{path}: cannot restore the checkpoint ({first}); it is damaged or does "
                         "not match config.json") from None
    return progress


# --------------------------------------------------------------------------------------------
# signals


class StopSignals:
    """SIGINT/SIGTERM handling for one training run (a no-op outside the main thread).

    Inside `deferred()` (model.fit) the first signal only records a stop request that the
    StopAtSafePoint callback acts on at the end of the batch; elsewhere, or on a second signal,
    Interrupted is raised at once. Previous handlers are restored on exit.
    """

    def __init__(self):
        self.requested: int | None = None
        self._deferring = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNAL_NAMES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self._deferring and self.requested is None:
            self.requested = signum
            # os.write, not print: a handler may interrupt a print to the same stream
            os.write(2, f"\n{SIGNAL_NAMES[signum]} received: stopping after this batch "
                        "(send it again to stop at once)\n".encode())
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def check(self) -> None:
        if self.requested is not None:
            raise Interrupted(self.requested)


def stop_callback(stops: StopSignals):
    """Keras callback that ends fit at a batch boundary once a stop was requested. A request
    that arrives during validation is acted on when the next epoch begins, after every
    epoch-end callback (the checkpoint included) has seen the finished epoch."""
    import keras

    class StopAtSafePoint(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stops.check()

        def on_epoch_begin(self, epoch, logs=None):
            stops.check()

    return StopAtSafePoint()


def saved_epochs_text(done: int) -> str:
    return (f"epochs 1-{done} are saved" if done > 1 else "epoch 1 is saved" if done
            else "no epoch had finished, so a resume starts again from epoch 1")


def interrupted_message(signum: int, progress: Progress, config: Config, run_path: Path) -> str:
    return (f"interrupted by {SIGNAL_NAMES.get(signum, signum)} with {progress.epochs_done} of "
            f"{config.epochs} epochs finished; {saved_epochs_text(progress.epochs_done)}. "
            f"Resume with: vae-train --resume {run_path}")


# --------------------------------------------------------------------------------------------
# run locking and the --resume checks (no TensorFlow: errors come before the slow import)


@contextlib.contextmanager
def run_lock(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive lock on a run directory while a process trains into it (released on exit,
    even by SIGKILL), so two processes never write the same run."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory; give a run directory made by vae-train")
    try:
        import fcntl
    except ImportError:  # no flock on this platform: nothing to lock with
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"{path} is being trained by another vae-train process; wait for it "
                             "to finish or stop it first") from None
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ResumePlan:
    run: rundir.RunDir
    config: Config  # the saved config, with --epochs applied
    input_shape: tuple[int, int, int]
    data: dict  # config.json's record of the data the run started on
    epochs_done: int


def _given_settings(preset: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The settings the user typed (preset keys and flags), validated, without defaults."""
    keys = set(flags)
    if preset is not None:
        keys |= set(read_preset(find_preset(preset)))
    resolved = resolve(preset, flags)
    return {k: getattr(resolved, k) for k in keys}


def _read_status(path: Path) -> str | None:
    try:
        metrics = json.loads((path / rundir.METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # never written (killed) or damaged: the checkpoint decides
    return metrics.get("status") if isinstance(metrics, dict) else None


def plan_resume(run_path: str, preset: str | None, flags: dict[str, Any]) -> ResumePlan:
    """Check that RUN can be continued with these flags; everything but --epochs must match."""
    path = Path(run_path).expanduser()
    saved, input_shape, _, data = rundir.read_run_config(path)
    given = _given_settings(preset, flags)
    changed = {k: v for k, v in given.items()
               if k not in RESUMABLE_FLAGS and v != getattr(saved, k)}
    if changed:
        shown = "; ".join(f"--{k.replace('_', '-')} {v!r} (the run has {getattr(saved, k)!r})"
                          for k, v in sorted(changed.items()))
        raise UsageError(f"--resume: {shown}: a resumed run keeps the settings it started with "
                         "(only --epochs and --strategy may change); start a new run to change them")
    if rundir.stores_stock_decoder(path):
        raise UsageError(f"{path} was written by an older vae-cli (run format 1), whose conv decoder "
                         "stores its weights under other layer names, so it cannot be resumed; "
                         "vae-plot, vae-sample and vae-eval still read it. Start a new run to train further")
    if given.get("strategy", saved.strategy) == "multiworker":
        raise UsageError("--resume is not supported with --strategy multiworker (every worker would "
                         "have to restore the same state); resume with --strategy default or mirrored")
    checkpoint = path / rundir.CHECKPOINT_FILE
    done = read_progress(checkpoint)[0].epochs_done if checkpoint.exists() else 0
    status = _read_status(path)
    if not checkpoint.exists() and status == "completed":
        raise UsageError(f"{path} has no {rundir.CHECKPOINT_FILE}; it was not written by a resumable "
                         "vae-train, so it cannot be continued (start a new run)")
    epochs = given.get("epochs", saved.epochs)
    if status == "failed":
        raise UsageError(f"{path} stopped on a NaN/Inf loss; resuming would repeat the same steps. "
                         "Start a new run with a smaller --learning-rate")
    if epochs < done:
        raise UsageError(f"--epochs {epochs}: the run has already finished {done} epochs; "
                         f"give --epochs {done} or more")
    if status == "completed" and epochs <= done:
        raise UsageError(f"{path} already finished all {done} epochs; give --epochs N with N > {done} "
                         "to train it further")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--resume: {path} is not writable; resume needs to write into the run")
    config = dataclasses.replace(saved, epochs=epochs, strategy=given.get("strategy", saved.strategy))
    return ResumePlan(rundir.RunDir(path), config, input_shape, data, done)


def check_same_data(plan: ResumePlan, source: str, input_shape) -> None:
    """Refuse to continue on data other than what the run started on."""
    used = plan.data.get("used")
    if tuple(input_shape) != tuple(plan.input_shape):
        raise UsageError(f"--resume: the data now has images {tuple(input_shape)} but the run was "
                         f"trained on {tuple(plan.input_shape)}")
    if used is not None and used != source:
        raise UsageError(f"--resume: the data changed since the run started (it used {used!r}, now "
                         f"{source!r}); resume where the same data is available, or start a new run")

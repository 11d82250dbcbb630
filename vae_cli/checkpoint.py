"""The per-epoch progress of a training run and the checkpoint file that carries it.

Every run keeps a Progress (history rows, best validation -ELBO, timings); after every finished
epoch RUN/checkpoint.weights.h5 is replaced atomically. It is ONE file: weights and optimizer
state (Keras's save_weights writes both) plus an attribute holding the sampler's RNG state and
the Progress record, so any kill, even SIGKILL, leaves the previous checkpoint or the new one,
never a mix of two epochs. `vae-train --resume` (resume.py) continues from it.

When the run finishes (finish_weights), vae.weights.h5 is written and the checkpoint, whose
model weights are then the same arrays, is replaced by one holding only the optimizer state,
RNG and progress, with an attribute naming vae.weights.h5 and the SHA-256 of its bytes; the
loader takes the model weights from there and refuses a file that has changed since.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import run as rundir
from .atomic import write_bytes
from .errors import UsageError
from .weights import keep_only_optimizer, link, load_weights, same_model_weights, write_weights

PROGRESS_ATTR = "vae_cli_progress"
PROGRESS_VERSION = 1
WEIGHTS_AT_ATTR = "vae_cli_model_weights"  # {"file": name in the run, "sha256": of its bytes}

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


def rng_states(model) -> list:
    """The seed-generator states as JSON lists, to be restored by load_checkpoint."""
    import numpy as np

    return [np.asarray(v.numpy()).tolist() for v in _rng_variables(model)]


def progress_attributes(progress: Progress, rng: list) -> dict[str, str]:
    """The HDF5 root attribute that makes a weights file a checkpoint."""
    record = {**dataclasses.asdict(progress), "version": PROGRESS_VERSION, "rng": rng}
    return {PROGRESS_ATTR: json.dumps(record, allow_nan=False)}


def save_checkpoint(path: Path, model, progress: Progress) -> None:
    """Weights + optimizer + RNG + progress in one atomically replaced file (callbacks.RunWriter
    writes the same file from a capture, while the next epoch trains)."""
    write_weights(path, model, progress_attributes(progress, rng_states(model)), optimizer=True)


def finish_weights(run: rundir.RunDir, model) -> None:
    """Write the final weights into vae.weights.h5, storing no array twice: best.weights.h5
    becomes a hard link to it when it holds the same weights (best == final: the last epoch was
    the best, or --patience restored it), and the checkpoint, when its model weights are these,
    keeps only its optimizer state, RNG and progress and points at vae.weights.h5.

    Each step replaces one file atomically and leaves a loadable run: a kill between them leaves
    a complete checkpoint or best file that merely repeats the weights.
    """
    final = run / rundir.WEIGHTS_FILE
    data = write_weights(final, model, compress=True)
    best = run / rundir.BEST_WEIGHTS_FILE
    if best.is_file() and same_model_weights(best, data):
        link(final, best)
    checkpoint = run / rundir.CHECKPOINT_FILE
    if checkpoint.is_file() and _weights_at(checkpoint) is None and same_model_weights(checkpoint, data):
        pointer = json.dumps({"file": rundir.WEIGHTS_FILE, "sha256": hashlib.sha256(data).hexdigest()})
        write_bytes(checkpoint, keep_only_optimizer(checkpoint, compress=True, attrs={WEIGHTS_AT_ATTR: pointer}))


def _weights_at(path: Path) -> str | None:
    """The pointer attribute of a finished checkpoint (see finish_weights), else None."""
    import h5py

    with h5py.File(path, "r") as f:
        value = f.attrs.get(WEIGHTS_AT_ATTR)
    return None if value is None else str(value)


def _model_weights_file(path: Path) -> Path:
    """The file holding the checkpoint's model weights: itself, or the one its pointer names,
    checked to be byte for byte the file the pointer was written for."""
    pointer = _weights_at(path)
    if pointer is None:
        return path
    try:
        target = json.loads(pointer)
        name, digest = target["file"], target["sha256"]
    except (ValueError, TypeError, KeyError):
        name = digest = None
    if name != rundir.WEIGHTS_FILE or not isinstance(digest, str):
        raise UsageError(f"{path}: its pointer to the model weights is damaged; resume is not possible "
                         "(start a new run)")
    weights = path.parent / name
    try:
        found = hashlib.sha256(weights.read_bytes()).hexdigest()
    except OSError:
        found = None
    if found != digest:
        what = "is missing" if found is None else "has changed since the run finished"
        raise UsageError(f"{path}: the checkpoint keeps its model weights in {weights}, which {what}; "
                         "resume is not possible (restore that file, or start a new run)")
    return weights


def load_checkpoint(path: Path, model) -> Progress:
    """Restore weights, optimizer state and RNG of a compiled model; return its progress."""
    import h5py
    import numpy as np

    progress, rng = read_progress(path)
    model.optimizer.build(model.trainable_variables)
    with h5py.File(path, "r") as f:
        saved_opt = len(f["optimizer/vars"]) if "optimizer/vars" in f else 0
    weights = _model_weights_file(path)
    rundir.check_weights_match(weights, model)  # Keras would load some mismatches silently
    rng_vars = _rng_variables(model)
    if saved_opt != len(model.optimizer.variables) or len(rng) != len(rng_vars):
        raise UsageError(f"{path}: the checkpoint's optimizer/RNG state does not match config.json; "
                         "was it copied from another run? Resume is not possible")
    try:
        with warnings.catch_warnings():
            # Keras only warns when part of a file does not fit ("layers will retain their
            # freshly-initialized weights"); a resume must not go on half-restored
            warnings.simplefilter("error")
            load_weights(model, weights, optimizer_from=None if weights == path else path)
        for var, state in zip(rng_vars, rng):
            var.assign(np.asarray(state, dtype=var.dtype).reshape(var.shape))
    except Exception as e:  # keras/h5py raise many types for mismatched or damaged files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UsageError(f"{path}: cannot restore the checkpoint ({first}); it is damaged or does "
                         "not match config.json") from None
    return progress


def saved_epochs_text(done: int) -> str:
    return (f"epochs 1-{done} are saved" if done > 1 else "epoch 1 is saved" if done
            else "no epoch had finished, so a resume starts again from epoch 1")

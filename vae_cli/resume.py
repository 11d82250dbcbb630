"""`vae-train --resume RUN`: whether a run directory can be continued, and with what.

The checkpoint (checkpoint.py) restores weights, optimizer state, RNG and history; the batches
of epoch e depend only on (seed, e) (data.pipeline.epoch_keyed_batches), so on CPU a resumed run is bit
for bit the uninterrupted one. These checks need no TensorFlow, so a run that cannot be resumed
is refused before the slow import; train_run.resume_run holds the run's lock while they run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import run as rundir
from .checkpoint import read_progress
from .config import Config, find_preset, read_preset, resolve
from .data.spec import check_recorded_location, location_of, parse_spec, recorded_location
from .errors import UsageError

RESUMABLE_FLAGS = ("epochs", "strategy")  # what a resumed run may change: not the model or its math


@dataclass(frozen=True)
class ResumePlan:
    run: rundir.RunDir
    config: Config  # the saved config, with --epochs applied
    input_shape: tuple[int, int, int]
    data: dict  # config.json's record of the data the run started on
    epochs_done: int
    data_spec: str  # where the data is read from: its recorded location, or --dataset if it moved


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
    moved_to = given.pop("dataset", saved.dataset)
    if moved_to != saved.dataset and not _same_kind_of_path(moved_to, saved.dataset):
        given["dataset"] = moved_to  # other data: refused below
    if given.get("backend") == "auto":  # auto continues on the run's own engine
        del given["backend"]
    changed = {k: v for k, v in given.items()
               if k not in RESUMABLE_FLAGS and v != getattr(saved, k)}
    if changed:
        shown = "; ".join(f"--{k.replace('_', '-')} {v!r} (the run has {getattr(saved, k)!r})"
                          for k, v in sorted(changed.items()))
        raise UsageError(f"--resume: {shown}: a resumed run keeps the settings it started with "
                         "(only --epochs and --strategy may change); start a new run to change them")
    if data.get("validation") == "test":
        raise UsageError(f"{path} validated on its data's test split, which vae-cli no longer does (test "
                         "images never choose weights), so it cannot be continued the same way; vae-plot, "
                         "vae-sample and vae-eval still read it. Start a new run to train further")
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
    data_spec = moved_to if moved_to != saved.dataset else check_recorded_location(saved.dataset, data)
    return ResumePlan(rundir.RunDir(path), config, input_shape, data, done, data_spec)


def _same_kind_of_path(spec: str, other: str) -> bool:
    """Both name a file or folder of the same kind: --dataset then says where the run's data
    moved to (check_same_data compares what is there with what the run used)."""
    return location_of(other) is not None and parse_spec(spec)[0] == parse_spec(other)[0]


def _without_path(used: str, spec: str) -> str:
    """A record of data used without the path it starts with (as typed, or absolute as recorded
    since runs store their data's location), so the same data read from elsewhere compares equal."""
    path = location_of(spec)
    if path is None:
        return used
    kind = parse_spec(spec)[0]
    for shown in (path, path.resolve()):
        if used.startswith(f"{kind}:{shown}: "):
            return kind + used[len(f"{kind}:{shown}"):]
    return used


def check_same_data(plan: ResumePlan, data) -> None:
    """Refuse to continue on data (a data.TrainingData) other than what the run started on."""
    used, source = plan.data.get("used"), data.source
    if tuple(data.input_shape) != tuple(plan.input_shape):
        raise UsageError(f"--resume: the data now has images {tuple(data.input_shape)} but the run was "
                         f"trained on {tuple(plan.input_shape)}")
    if not isinstance(used, str):
        return
    # runs record `used` with their path as typed (older runs) or absolute
    recorded = _without_path(_without_path(used, plan.config.dataset),
                             recorded_location(plan.config.dataset, plan.data))
    if recorded != _without_path(source, plan.data_spec):
        raise UsageError(f"--resume: the data changed since the run started (it used {used!r}, now "
                         f"{source!r}); resume where the same data is available, or start a new run")

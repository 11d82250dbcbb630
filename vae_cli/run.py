"""The run directory: its layout, atomic writes into it, and the one loader that reads it back.

Layout of `<out>/<YYYYmmdd-HHMMSS>-<name>/` (every file is written to a temporary name in the
same folder and renamed, so a kill leaves the old file or the new one, never half of one):

1. config.json           the resolved Config + input shape + the data actually used; alone it
                         rebuilds the models (format_version guards against future layouts)
2. vae.weights.h5        final weights of the whole VAE (encoder + decoder)
   best.weights.h5       weights of the epoch with the lowest validation loss
3. encoder.keras, decoder.keras   standalone models; they load with keras safe_mode=True
4. history.csv           one row per epoch (loss, recon, kl, val_*)
5. metrics.json          final numbers, wall time, speed, devices, data used, versions
6. *.png                 figures; samples/epoch-NNN.png from a fixed z; plots/ for vae-plot
7. tensorboard/          TensorBoard logs (appended by TensorFlow, the one non-atomic writer)
8. checkpoint.weights.h5 weights + optimizer + RNG state + history after the last finished
                         epoch, in one file: what `vae-train --resume` continues from
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_path, write_json, write_text, write_weights  # noqa: F401  (re-exported for callers)
from .config import FORMAT_VERSION, Config, config_from_dict
from .errors import UsageError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "vae.weights.h5"
BEST_WEIGHTS_FILE = "best.weights.h5"
ENCODER_FILE = "encoder.keras"
DECODER_FILE = "decoder.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.weights.h5"
MAX_RUN_DEPTH = 3  # the deepest files of a run: tensorboard/train/<events>, generated/<stamp>/...
SAMPLES_DIR = "samples"
TENSORBOARD_DIR = "tensorboard"
PLOTS_DIR = "plots"


def check_output_root(out: str) -> Path:
    """Make sure runs can be created under `out` before any work is done."""
    root = Path(out).expanduser()
    if root.exists() and not root.is_dir():
        raise UsageError(f"--out: {root} exists and is not a directory; pick a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out: cannot create {root} ({e.strerror}); pick a writable folder") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UsageError(f"--out: {root} is not writable; pick a writable folder with --out")
    return root


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def create(cls, out: str, name: str) -> "RunDir":
        """A new, empty run directory; never reuses one (two runs in the same second get -2)."""
        root = check_output_root(out)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for attempt in range(1, 1000):
            suffix = "" if attempt == 1 else f"-{attempt}"
            path = root / f"{stamp}-{name}{suffix}"
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
            except OSError as e:
                raise UsageError(f"--out: cannot create {path} ({e.strerror})") from None
        raise UsageError(f"--out: too many runs named {stamp}-{name} in {root}")

    def __truediv__(self, name: str) -> Path:
        return self.path / name


def save_config(run: RunDir, config: Config, input_shape, num_classes, data_info: dict) -> None:
    from . import __version__

    write_json(run / CONFIG_FILE, {
        "format_version": FORMAT_VERSION,
        "vae_cli_version": __version__,
        "config": config.to_dict(),
        "input_shape": [int(d) for d in input_shape],
        "num_classes": num_classes,
        "data": data_info,
    })


# --------------------------------------------------------------------------------------------
# reading a run back


@dataclass(frozen=True)
class Run:
    path: Path
    config: Config
    input_shape: tuple[int, int, int]
    num_classes: int | None
    data: dict
    encoder: Any
    decoder: Any
    vae: Any


def check_contained(path: Path) -> None:
    """Refuse a run directory holding a symlink that leads outside it: reading or writing
    through it would touch files the run does not own."""
    root = path.resolve()
    for folder, dirs, files in os.walk(path):  # symlinked folders are listed, not entered
        if len(Path(folder).relative_to(path).parts) >= MAX_RUN_DEPTH:
            dirs[:] = []  # deeper than any file vae-cli reads or writes
        for name in dirs + files:
            entry = Path(folder) / name
            if not entry.is_symlink():
                continue
            try:
                inside = entry.resolve().is_relative_to(root)
            except OSError:  # a link we may not even follow is certainly not ours
                inside = False
            if not inside:
                raise UsageError(f"{entry} is a symlink to {os.readlink(entry)}, outside the run directory; "
                                 "remove the link (vae-cli never reads or writes through it)")


def read_run_config(path: Path) -> tuple[Config, tuple[int, int, int], int | None, dict]:
    """Parse and check RUN/config.json (data only: nothing in it is executed)."""
    cfg_path = path / CONFIG_FILE
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory; give a run directory made by vae-train")
    if not cfg_path.is_file():
        raise UsageError(f"{path} is not a vae-cli run: {CONFIG_FILE} is missing")
    check_contained(path)  # only once it looks like a run: never walk a whole disk
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{cfg_path}: unreadable or corrupt JSON ({e}); the run cannot be loaded") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{cfg_path}: expected a JSON object; is this a vae-cli run?")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UsageError(f"{cfg_path}: no format_version; this is not a config.json written by vae-train")
    if version > FORMAT_VERSION:
        raise UsageError(
            f"{cfg_path}: format_version {version} is newer than this vae-cli understands "
            f"({FORMAT_VERSION}); upgrade vae-cli to read it")
    if version < 1:
        raise UsageError(f"{cfg_path}: format_version {version} is not supported")
    config = config_from_dict(meta.get("config"), where=str(cfg_path))
    shape = meta.get("input_shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 4096 for d in shape)):
        raise UsageError(f"{cfg_path}: input_shape must be [H, W, C] of positive integers, got {shape!r}")
    num_classes = meta.get("num_classes")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise UsageError(f"{cfg_path}: num_classes must be a positive integer or null")
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return config, tuple(shape), num_classes, data


def load_run(path: str | os.PathLike) -> Run:
    """Rebuild the models of a run from config.json and load vae.weights.h5 into them."""
    path = Path(path).expanduser()
    config, input_shape, num_classes, data = read_run_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise UsageError(f"{path}: {WEIGHTS_FILE} is missing; the run did not finish saving its weights")
    from .models import build_vae

    models = build_vae(config, input_shape)
    try:
        models.vae.load_weights(weights)
    except Exception as e:  # h5py/keras raise many types for truncated or mismatched files
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise UsageError(
            f"{weights}: cannot load the weights ({first[:200]}); the file is corrupt or does "
            "not match config.json") from None
    return Run(path, config, input_shape, num_classes, data, *models)

"""The run directory: its layout, atomic writes into it, the lock held while it is trained, and
the one loader that reads it back.

Layout of `<out>/<YYYYmmdd-HHMMSS>-<name>/` (every file is written to a temporary name in the
same folder and renamed, so a kill leaves the old file or the new one, never half of one):

1. config.json           the resolved Config + input shape + the data actually used (data: its
                         absolute location, the train/validation/test counts); alone it
                         rebuilds the models (format_version guards against future layouts)
2. vae.weights.h5        final weights of the whole VAE (encoder + decoder), model weights only
   best.weights.h5       weights of the epoch with the lowest validation -ELBO; a hard link to
                         vae.weights.h5 when they are the same (weights.py)
3. encoder.keras, decoder.keras   standalone models; they load with keras safe_mode=True
4. history.csv           one row per epoch (loss, recon, kl, val_*)
5. metrics.json          final numbers, wall time, speed, devices, data used, versions
6. *.png                 figures; samples/epoch-NNN.png from a fixed z
7. tensorboard/          TensorBoard logs (appended by TensorFlow, the one non-atomic writer)
8. checkpoint.weights.h5 weights + optimizer + RNG state + history after the last finished
                         epoch, in one file: what `vae-train --resume` continues from
                         (checkpoint.py); in a finished run its model weights are vae.weights.h5's,
                         named by a pointer instead of stored twice
Written later by the commands that read a run (never over a file training wrote):
9. plots/                vae-plot's figures
10. generated/<stamp>/   vae-sample's images and arrays (when no --out is given)
11. eval.json            vae-eval's numbers and protocol (the latest evaluation)
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .atomic import atomic_path, write_json, write_text  # noqa: F401  (re-exported for callers)
from .config import FORMAT_VERSION, FUSED_DECODER_FORMAT, Config, config_from_dict
from .data import HeldOut, load_eval_split, same_source
from .data.spec import check_recorded_location, location_of, parse_spec, recorded_location
from .errors import UsageError
from .weights import write_weights  # noqa: F401  (re-exported: model weights only)

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
GENERATED_DIR = "generated"
EVAL_FILE = "eval.json"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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


def check_can_create(folder: Path, flag: str = "--out") -> None:
    """Refuse, before any work, a folder that is a file or that could not be created or written."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag}: {folder} exists and is not a folder; pick a folder with {flag}")
    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise UsageError(f"{flag}: {existing} is a file, so no folder can be made under it; pick another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write under {existing} (not writable); pick a writable folder "
                         f"with {flag}")


def plot_folder(run_path: Path, out: str | None = None) -> Path:
    """Where vae-plot writes: RUN/plots/ unless --out says otherwise, and never the run directory
    itself, whose figures are the ones training wrote."""
    folder = Path(out).expanduser() if out else Path(run_path) / PLOTS_DIR
    if folder.resolve() == Path(run_path).resolve():
        raise UsageError(f"--out: {folder} is the run directory itself; vae-plot never overwrites the "
                         f"figures training wrote; leave --out out (figures go to RUN/{PLOTS_DIR}/) or "
                         "pick another folder")
    check_can_create(folder)
    return folder


def make_unique_dir(root: Path, stem: str) -> Path:
    """Create and return root/stem, or root/stem-2, -3, ... : never an existing folder."""
    for attempt in range(1, 1000):
        path = root / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise UsageError(f"--out: cannot create {path} ({e.strerror})") from None
    raise UsageError(f"--out: too many folders named {stem} in {root}")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def create(cls, out: str, name: str) -> "RunDir":
        """A new, empty run directory; never reuses one (two runs in the same second get -2)."""
        root = check_output_root(out)
        return cls(make_unique_dir(root, f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"))

    def __truediv__(self, name: str) -> Path:
        return self.path / name


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

    @property
    def conditional(self) -> bool:
        return self.config.conditional


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
    return _read_run_config(path)[:4]


def stores_stock_decoder(path: Path) -> bool:
    """Whether RUN's weight files name the conv decoder's layers as format 1 did (see
    models.build_decoder's `fused`)."""
    config, *_, version = _read_run_config(path)
    return config.arch == "conv" and version < FUSED_DECODER_FORMAT


def _read_run_config(path: Path) -> tuple[Config, tuple[int, int, int], int | None, dict, int]:
    path = run_location(path)
    cfg_path = path / CONFIG_FILE
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory; give a run directory made by vae-train")
    if cfg_path.is_dir():
        raise UsageError(f"{cfg_path} is a folder, not a file; this run directory is damaged (re-run vae-train)")
    if not cfg_path.is_file():
        raise UsageError(f"{path} is not a vae-cli run: {CONFIG_FILE} is missing")
    check_contained(path)  # only once it looks like a run: never walk a whole disk
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"{cfg_path}: unreadable or corrupt JSON ({first}); the run cannot be loaded") from None
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
    # a run written before engines were chosen has no "backend": it trained on TensorFlow
    config = config_from_dict(meta.get("config"), where=str(cfg_path), missing={"backend": "tensorflow"})
    shape = meta.get("input_shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 4096 for d in shape)):
        raise UsageError(f"{cfg_path}: input_shape must be [H, W, C] of positive integers, got {shape!r}")
    num_classes = meta.get("num_classes")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or not 1 <= num_classes <= 100_000):
        raise UsageError(f"{cfg_path}: num_classes must be a positive integer or null, got {num_classes!r}")
    if config.conditional and num_classes is None:
        raise UsageError(f"{cfg_path}: a conditional run needs num_classes, but it is missing; "
                         "the file is damaged, re-run vae-train")
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return config, tuple(shape), num_classes, data, version


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def _weight_shapes(weights: Path) -> list[tuple[int, ...]]:
    """Shapes of the model arrays in a .weights.h5 file, read as plain data (h5py, no keras)."""
    import h5py

    shapes: list[tuple[int, ...]] = []
    try:
        with open(weights, "rb") as f:
            signature = f.read(len(_HDF5_SIGNATURE))
    except OSError as e:
        raise UsageError(f"{weights}: cannot read the weights ({_first_line(e)}); check its permissions") from None
    if signature != _HDF5_SIGNATURE:
        raise UsageError(f"{weights}: not an HDF5 weights file (the file is corrupt or was replaced); "
                         "restore it from a backup or re-run vae-train")
    try:
        with h5py.File(weights, "r") as f:
            layers = f.get("layers")  # the model's variables; "optimizer" holds the training state
            if isinstance(layers, h5py.Group):
                layers.visititems(lambda name, obj: shapes.append(tuple(int(d) for d in obj.shape))
                                  if isinstance(obj, h5py.Dataset) else None)
    except Exception as e:  # h5py raises OSError, KeyError, RuntimeError... for damaged files
        raise UsageError(f"{weights}: cannot read the weights ({_first_line(e)}); the file is truncated "
                         "or corrupt, restore it or re-run vae-train") from None
    return shapes


def check_weights_match(weights: Path, model) -> None:
    """Refuse a weights file whose arrays differ from the model's: Keras loads some mismatches
    silently (an mlp model accepts a conv run's file and keeps whatever it cannot place)."""
    found = Counter(_weight_shapes(weights))
    expected = Counter(tuple(int(d) for d in w.shape) for w in model.weights)
    if found == expected:
        return
    missing, extra = expected - found, found - expected
    example = (f"the model needs an array of shape {next(iter(missing))} that the file lacks" if missing
               else f"the file has an array of shape {next(iter(extra))} that the model lacks")
    raise UsageError(
        f"{weights} does not match {CONFIG_FILE}: the file holds {sum(found.values())} arrays, the model "
        f"{CONFIG_FILE} describes has {sum(expected.values())} ({example}); was {CONFIG_FILE} edited or "
        "the weights copied from another run?")


def load_run(path: str | os.PathLike) -> Run:
    """Rebuild the models of a run from config.json and load vae.weights.h5 into them.

    Only data is read: config.json is JSON and the weights are arrays in HDF5. The encoder.keras
    and decoder.keras files are never deserialised here, so a tampered run cannot run code.
    """
    path = run_location(path)
    config, input_shape, num_classes, data = read_run_config(path)
    weights = path / WEIGHTS_FILE
    if weights.is_dir():
        raise UsageError(f"{weights} is a folder, not a weights file; restore the file or re-run vae-train")
    if not weights.is_file():
        raise UsageError(f"{path}: {WEIGHTS_FILE} is missing; the run did not finish saving its weights")
    from .models import build_vae

    stock = stores_stock_decoder(path)
    models = build_vae(config, input_shape, num_classes, fused=not stock)
    check_weights_match(weights, models.vae)
    try:
        models.vae.load_weights(weights)
    except Exception as e:  # h5py/keras raise many types for truncated or mismatched files
        raise UsageError(
            f"{weights}: cannot load the weights ({_first_line(e)}); the file is corrupt or does "
            f"not match {CONFIG_FILE}") from None
    if stock:  # same math, faster layers: hand over the arrays layer by layer (the names agree)
        stock_models, models = models, build_vae(config, input_shape, num_classes)
        for old, new in zip(stock_models[:2], models[:2]):
            for layer in old.layers:
                if layer.weights:
                    new.get_layer(layer.name).set_weights(layer.get_weights())
    return Run(path, config, input_shape, num_classes, data, *models)


def load_held_out(run: Run, dataset: str | None = None) -> HeldOut:
    """Images the run never trained on: a test split when the data has one; else, for the run's
    own data, the validation split training used (same seed and fraction); else, for other data
    (with the same image shape), all of it.

    Without `dataset`, the run's data is read from its recorded location. A `dataset` of the
    same path kind as the run's, given after the run's data left its recorded place, is taken
    as that data moved: its validation split is held out, never all of it.
    """
    own = recorded_location(run.config.dataset, run.data)
    if dataset is None:
        spec, same = check_recorded_location(run.config.dataset, run.data), True
    else:
        moved = location_of(own) is not None and not location_of(own).exists()
        spec = dataset
        same = same_source(spec, own) or (moved and parse_spec(spec)[0] == parse_spec(own)[0])
    held = load_eval_split(spec, validation_split=run.config.validation_split, seed=run.config.seed,
                           image_size=run.config.image_hw, channels=run.config.channels,  # as in training
                           all_if_no_test=not same)
    shape = tuple(int(d) for d in held.x.shape[1:])
    if shape != run.input_shape:
        raise UsageError(
            f"dataset '{spec}' has {'x'.join(map(str, shape))} images but this run was trained on "
            f"{'x'.join(map(str, run.input_shape))}; pick a dataset with the same image shape")
    if run.conditional:
        if held.y is None:
            raise UsageError(f"dataset '{spec}' has no labels, but this conditional run needs one per "
                             "image; pick a labelled dataset")
        if len(held.y) and held.y.max() >= run.num_classes:
            raise UsageError(f"dataset '{spec}' has label {held.y.max()}, but this run knows labels "
                             f"0..{run.num_classes - 1} only")
    return held


def read_history(path: Path) -> dict[str, list[float]]:
    """RUN/history.csv as {column: values per epoch} (the epoch column dropped)."""
    file = Path(path) / HISTORY_FILE
    if not file.is_file():
        raise UsageError(f"{path}: {HISTORY_FILE} is missing, so there is no loss curve to draw")
    try:
        with open(file, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        history = {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {}) if k != "epoch"}
    except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as e:
        raise UsageError(f"{file}: unreadable ({_first_line(e)}); the loss curve cannot be drawn") from None
    if not history or not all(math.isfinite(v) for vals in history.values() for v in vals):
        raise UsageError(f"{file}: holds no finite per-epoch numbers; the loss curve cannot be drawn")
    return history


def run_location(run: str | os.PathLike) -> Path:
    """RUN as given to a command: a run directory, or `pretrained:NAME`, a run shipped with
    vae-cli (vae_cli.pretrained; a copy in the user's cache, where outputs can be written)."""
    text = os.fspath(run)
    if not text.startswith("pretrained:"):
        return Path(text).expanduser()
    from .pretrained import cached_run

    return cached_run(text.removeprefix("pretrained:"))

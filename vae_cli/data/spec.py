"""Dataset specs (`--dataset`): the names and path kinds a user may give, checked without numpy.

config.py builds its --dataset help from DATASET_HELP, so this module imports nothing heavy:
`vae-train --help` and a typo in --dataset answer before numpy or TensorFlow load.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError

NAMES = ("mnist", "mnist-5k", "fashion_mnist", "cifar10")  # the built-in sources
PATH_KINDS = {"npz": "npz:PATH", "idx": "idx:DIR", "folder": "folder:DIR"}  # kind -> how it is written
DATASET_HELP = ", ".join((*NAMES, *PATH_KINDS.values()))


def parse_spec(spec: str) -> tuple[str, str]:
    """Split 'npz:PATH' / 'idx:DIR' / 'folder:DIR' / 'name' into (kind, argument)."""
    for kind, usage in PATH_KINDS.items():
        if spec.startswith(kind + ":"):
            arg = spec[len(kind) + 1:]
            if not arg:
                raise UsageError(f"dataset '{spec}': missing path after '{kind}:'; use {usage}")
            return kind, arg
    if spec in NAMES:
        return spec, ""
    raise UsageError(f"unknown dataset '{spec}'; expected one of: {DATASET_HELP}")


def check_dataset_spec(spec: str) -> None:
    """Cheap check with no TensorFlow import, so a typo fails before the slow part starts."""
    kind, arg = parse_spec(spec)
    path = Path(arg).expanduser()
    if kind == "npz" and not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise UsageError(f"dataset '{spec}': {path} {what}; give the path of an .npz file")
    if kind in ("idx", "folder") and not path.is_dir():
        what = f"{path} is a file, not a folder" if path.exists() else f"folder {path} does not exist"
        holding = ("MNIST-format IDX files" if kind == "idx"
                   else "PNG/JPEG/BMP/GIF images (class subfolders become labels)")
        raise UsageError(f"dataset '{spec}': {what}; give a folder holding {holding}")


def absolute_spec(spec: str) -> str:
    """The spec with its path made absolute and resolved ('folder:data/x' -> 'folder:/home/u/data/x'):
    what a run directory records as its data's location, so readers find the data from any
    working folder. Named sources are returned as they are."""
    kind, arg = parse_spec(spec)
    return f"{kind}:{Path(arg).expanduser().resolve()}" if kind in PATH_KINDS else spec


def location_of(spec: str) -> Path | None:
    """The file or folder a path spec names (None for a named source)."""
    kind, arg = parse_spec(spec)
    return Path(arg).expanduser() if kind in PATH_KINDS else None


def same_source(spec: str, other: str) -> bool:
    """Whether two dataset specs name the same data: paths compared resolved, and mnist-5k equal
    to mnist, whose offline fallback it is (online, mnist has a test split, which is used anyway)."""
    def key(s: str) -> tuple[str, str]:
        kind = parse_spec(s)[0]
        return ("mnist-5k" if kind == "mnist" else kind), (absolute_spec(s) if kind in PATH_KINDS else "")
    return key(spec) == key(other)


def recorded_location(requested: str, record: dict) -> str:
    """The dataset spec a run's data is read from: its "location" as config.json's data record
    holds it, with an absolute path, so every reader finds the data from any working folder;
    for runs from before that record, `requested` (the spec as typed, relative to the working
    folder)."""
    location = record.get("location")
    try:
        if isinstance(location, str) and parse_spec(location)[0] == parse_spec(requested)[0]:
            return location
    except UsageError:
        pass  # a damaged record: the spec as typed
    return requested


def check_recorded_location(requested: str, record: dict) -> str:
    """recorded_location, refused in one line naming --dataset when its file or folder is gone."""
    spec = recorded_location(requested, record)
    path = location_of(spec)
    if path is None or path.exists():
        return spec
    kind = parse_spec(spec)[0]
    if path.is_absolute():
        raise UsageError(f"this run's data '{requested}' is no longer at {path} (moved or deleted); "
                         f"give its new place with --dataset {kind}:NEW_PATH")
    raise UsageError(f"this run's data '{requested}' is not found from {Path.cwd()}: the run records the "
                     f"path as typed, relative to the folder it was trained in; run from there, or give "
                     f"the data's place with --dataset {kind}:PATH")

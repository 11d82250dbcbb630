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


def same_source(spec: str, other: str) -> bool:
    """Whether two dataset specs name the same data: paths compared resolved, and mnist-5k equal
    to mnist, whose offline fallback it is (online, mnist has a test split, which is used anyway)."""
    def key(s: str) -> tuple[str, str]:
        kind, arg = parse_spec(s)
        if kind in PATH_KINDS:
            return kind, str(Path(arg).expanduser().resolve())
        return ("mnist-5k" if kind == "mnist" else kind), ""
    return key(spec) == key(other)

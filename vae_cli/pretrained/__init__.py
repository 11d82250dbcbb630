"""Runs shipped inside vae-cli, named `pretrained:NAME` wherever a command takes a run directory.

`pretrained:mnist` is a conv VAE with a 2-D latent trained by vae-train on the 5,000 bundled
MNIST digits (benchmarks/make_pretrained.py re-creates it; docs/explore.md gives its settings
and numbers). Only what readers need ships: config.json, vae.weights.h5 (model arrays, no
optimizer state), history.csv, metrics.json.

The commands write beside a run (vae-plot's plots/, vae-sample's generated/, vae-eval's
eval.json), and an installed package is no place for that, so the name resolves to a copy in
the user's cache folder ($XDG_CACHE_HOME or ~/.cache, then vae-cli/), refreshed whenever a
shipped file differs from it.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..atomic import atomic_path
from ..errors import UsageError

PREFIX = "pretrained:"
NAMES = ("mnist",)
FILES = ("config.json", "vae.weights.h5", "history.csv", "metrics.json")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "vae-cli"


def cached_run(name: str) -> Path:
    """The folder of pretrained run `name`: the shipped files, copied into the cache when missing
    or different there (other files in that folder, the commands' outputs, are left alone)."""
    if name not in NAMES:
        raise UsageError(f"{PREFIX}{name}: no such pretrained run; vae-cli ships "
                         f"{', '.join(PREFIX + n for n in NAMES)}")
    shipped = resources.files(__package__) / name
    folder = cache_root() / f"pretrained-{name}"
    try:
        for file in FILES:
            data = (shipped / file).read_bytes()
            target = folder / file
            if not target.is_file() or target.stat().st_size != len(data) or target.read_bytes() != data:
                with atomic_path(target) as tmp:
                    tmp.write_bytes(data)
    except OSError as e:
        raise UsageError(f"{PREFIX}{name}: cannot copy the shipped run into {folder} ({e.strerror or e}); "
                         "set XDG_CACHE_HOME to a writable folder") from None
    return folder

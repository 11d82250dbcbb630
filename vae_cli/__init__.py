"""vae-cli: train, inspect, sample and export Variational Autoencoders on Keras 3.

This module must stay free of heavy imports (keras, tensorflow, matplotlib) so that
`vae-train --help` and argument errors answer instantly: the Python API (`vae_cli.load`,
`vae_cli.train`, `vae_cli.VAE`, see api.py) is imported on first use, through `__getattr__`.
"""

import sys
import types

__version__ = "0.1.0"

_LAZY = {"load": "api", "train": "api", "VAE": "api", "UsageError": "errors"}
__all__ = ["__version__", "load", "train", "VAE", "UsageError"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The trainer module vae_cli/train.py shares its name with the function vae_cli.train, and Python
# sets `vae_cli.train` to that module once anything imports it (training does). So the module is
# made callable as the function, and both keep working: vae_cli.train(...) trains, and
# vae_cli.train.<name> is the trainer's. Renaming the trainer module makes this unnecessary.
class _CallableTrainer(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from .api import train

        return train(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name == "train" and type(value) is types.ModuleType:
            value.__class__ = _CallableTrainer
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

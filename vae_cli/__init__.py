"""vae-cli: train, inspect, sample and export Variational Autoencoders on Keras 3.

This module must stay free of heavy imports (keras, tensorflow, matplotlib) so that
`vae-train --help` and argument errors answer instantly: the Python API (`vae_cli.load`,
`vae_cli.train`, `vae_cli.VAE`, see api.py) is imported on first use, through `__getattr__`.
"""

__version__ = "0.1.0"

_LAZY = {"load": "api", "train": "api", "VAE": "api", "UsageError": "errors"}
__all__ = ["__version__", "load", "train", "VAE", "UsageError"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

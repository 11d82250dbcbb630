"""Shared fixtures: the one real-MNIST folder (skips when absent) and a tiny keras-style npz."""

import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def mnist_t10k_dir() -> Path:
    """Real MNIST test set as IDX files; $VAE_CLI_MNIST_T10K overrides <repo>/../shared/data/mnist-t10k."""
    env = os.environ.get("VAE_CLI_MNIST_T10K")
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data/mnist-t10k"
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file() and not (folder / "t10k-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST t10k IDX files not found in {folder}")
    return folder


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    """64 train / 16 test random uint8 28x28 images with labels 0..9, keras-style keys."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path,
             x_train=rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
             y_train=np.arange(64) % 10,
             x_test=rng.integers(0, 256, (16, 28, 28), dtype=np.uint8),
             y_test=np.arange(16) % 10)
    return path

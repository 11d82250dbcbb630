"""Shared fixtures: the one real-MNIST folder (skips when absent) and a tiny keras-style npz."""

import os
from pathlib import Path

import numpy as np
import pytest

# What the commands set before importing keras (see cli.common.quiet_tensorflow); the in-process
# tests import keras first, so they set it here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# In-process tests run on TensorFlow whatever their order (vae-train --backend auto would pick
# JAX for an mlp in a process that has not imported Keras yet); tests/test_engines.py runs JAX
# in subprocesses.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


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


def _train_tiny_run(out: Path, *flags: str) -> Path:
    """Train a tiny run on the bundled digits with vae-train itself; returns its directory."""
    from vae_cli.cli.train import main

    assert main(["--dataset", "mnist-5k", "--out", str(out), "--seed", "0", *flags]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory) -> Path:
    """A 2-D MLP VAE trained for 3 epochs (a few seconds): trained enough for the IW bound to be
    clearly tighter than the ELBO. Tests must not modify it (copy it first)."""
    return _train_tiny_run(tmp_path_factory.mktemp("mlp-run"), "--arch", "mlp", "--hidden-dim", "64",
                           "--latent-dim", "2", "--epochs", "3", "--name", "mlp")


@pytest.fixture(scope="session")
def cond_run(tmp_path_factory) -> Path:
    """A conditional MLP VAE with a 3-D latent, 3 epochs: enough to draw recognisable classes.
    Tests must not modify it."""
    return _train_tiny_run(tmp_path_factory.mktemp("cond-run"), "--arch", "mlp", "--hidden-dim", "128",
                           "--latent-dim", "3", "--epochs", "3", "--conditional", "--name", "cond")


@pytest.fixture(scope="session")
def gaussian_extreme_run(tmp_path_factory) -> Path:
    """A finished 2-epoch MLP run (latent 2, hidden 16) with the Gaussian likelihood at the
    highest accepted learning rate (10), on 240 random 12x12 images with 3 labels. Shared, so
    tests must copy it before changing it."""
    from vae_cli.cli.train import main

    folder = tmp_path_factory.mktemp("gaussian-run")
    rng = np.random.default_rng(0)
    np.savez(folder / "data.npz", x_train=rng.integers(0, 256, (240, 12, 12), dtype=np.uint8),
             y_train=np.arange(240) % 3, x_test=rng.integers(0, 256, (60, 12, 12), dtype=np.uint8),
             y_test=np.arange(60) % 3)
    assert main(["--arch", "mlp", "--hidden-dim", "16", "--dataset", f"npz:{folder / 'data.npz'}",
                 "--likelihood", "gaussian", "--learning-rate", "10", "--epochs", "2", "--batch-size", "60",
                 "--out", str(folder / "runs")]) == 0
    (run,) = (folder / "runs").iterdir()
    return run

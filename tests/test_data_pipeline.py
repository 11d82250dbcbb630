"""The tf.data pipeline every source batches through."""

import numpy as np

from vae_cli.data import make_tf_dataset


def _batches(ds):
    return [b.numpy() for b in ds]


def test_make_tf_dataset_shapes_and_determinism():
    x = np.arange(10 * 2 * 2, dtype=np.float32).reshape(10, 2, 2, 1)
    plain = _batches(make_tf_dataset(x, batch_size=4, shuffle=False, seed=0))
    assert [b.shape for b in plain] == [(4, 2, 2, 1), (4, 2, 2, 1), (2, 2, 2, 1)]
    np.testing.assert_array_equal(np.concatenate(plain), x)
    a = np.concatenate(_batches(make_tf_dataset(x, batch_size=4, shuffle=True, seed=7)))
    b = np.concatenate(_batches(make_tf_dataset(x, batch_size=4, shuffle=True, seed=7)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, x)
    np.testing.assert_array_equal(np.sort(a.ravel()), x.ravel())


def test_make_tf_dataset_with_labels():
    x = np.zeros((5, 3, 3, 1), np.float32)
    y = np.arange(5, dtype=np.int64)
    xb, yb = next(iter(make_tf_dataset(x, batch_size=5, shuffle=True, seed=0, y=y)))
    assert xb.shape == (5, 3, 3, 1) and sorted(yb.numpy()) == list(range(5))

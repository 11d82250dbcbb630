"""Views of a dataset (conditional labels, binarised validation): everything training asks of a
dataset (data.TrainingData) answers as the wrapped dataset does, except what the view changes;
and the one numpy binarisation."""

import json

import numpy as np
import pytest
from PIL import Image

from vae_cli.cli.train import main
from vae_cli.data import (BinarizedValidation, ConditionalBatches, Dataset, TrainingData, binarize, load_dataset,
                          one_hot)

MEMBERS = sorted(name for name in (*TrainingData.__annotations__, *vars(TrainingData)) if not name.startswith("_"))


def _recorded_speed(out, tiny_npz, *flags):
    assert main(["--arch", "mlp", "--hidden-dim", "8", "--latent-dim", "2", "--epochs", "1",
                 "--batch-size", "12", "--dataset", f"npz:{tiny_npz}", "--out", str(out), *flags]) == 0
    (run,) = out.iterdir()
    return json.loads((run / "metrics.json").read_text())["speed"]

def test_a_binarised_run_ends_each_compiled_call_at_an_epoch_end_like_a_grey_run(tmp_path, tiny_npz):
    """58 training images (64 less 6 held out for validation) in batches of 12 are 5 batches an
    epoch: a compiled call of more than 5 (or of 2 to 4) steps would train on the next epoch's
    batches, and resume would no longer be exact."""
    grey = _recorded_speed(tmp_path / "grey", tiny_npz)
    binarised = _recorded_speed(tmp_path / "binarised", tiny_npz, "--binarize")
    assert 5 % binarised["steps_per_execution"] == 0
    assert binarised == grey

@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The two kinds of source, labelled: arrays in memory (10 train, 4 validation images, so
    3 batches of 4 an epoch) and a folder of 2 classes x 4 PNG files, streamed."""
    x = np.random.default_rng(0).random((14, 4, 4, 1)).astype(np.float32)
    y = np.arange(14) % 2
    root = tmp_path_factory.mktemp("folder")
    for label, name in enumerate(("a", "b")):
        (root / name).mkdir()
        for i in range(4):
            Image.fromarray(np.full((4, 4), 60 + 120 * label + i, np.uint8)).save(root / name / f"{i}.png")
    folder = load_dataset(f"folder:{root}", validation_split=0.25, seed=0, warn=print)
    return {"arrays": Dataset(x[:10], y[:10], x[10:], y[10:], "arrays", "test"), "folder": folder}


def test_every_source_answers_the_epoch_length_training_asks_for(sources):
    assert sources["arrays"].epoch_steps(4) == 3  # one pipeline over all epochs, cut every 3 batches
    assert sources["folder"].epoch_steps(4) == 2  # 6 training files: the progress bar's real count
    for data in sources.values():
        assert data.epoch_batches(4, seed=0, first_epoch=0, epochs=1)[1] == data.epoch_steps(4)


def test_a_folder_epoch_of_epoch_steps_batches_is_one_pass_over_its_files(sources):
    """fit cuts a folder's pipeline every epoch_steps batches: each cut is one whole pass, each
    pass in a new order, and there is always a next epoch (no 'ran out of data')."""
    folder = sources["folder"]
    batches, steps = folder.epoch_batches(4, seed=0, first_epoch=0, epochs=3)
    taken = list(batches.take(3 * steps).as_numpy_iterator())
    epochs = [np.concatenate(taken[i * steps:(i + 1) * steps]) for i in range(3)]
    assert [len(e) for e in epochs] == [folder.n_train] * 3
    pixels = [sorted(np.round(e[:, 0, 0, 0] * 255).tolist()) for e in epochs]
    assert pixels[0] == pixels[1] == pixels[2]  # the same 6 files every epoch
    assert len({tuple(np.round(e[:, 0, 0, 0] * 255)) for e in epochs}) > 1  # reshuffled


@pytest.mark.parametrize("kind", ["arrays", "folder"])
@pytest.mark.parametrize("view", ["binarised", "conditional", "both"])
def test_views_answer_everything_training_asks_as_the_wrapped_data_does(sources, kind, view):
    data = sources[kind]
    wrapped = {"binarised": lambda: BinarizedValidation(data, seed=4),
               "conditional": lambda: ConditionalBatches(data, 2),
               "both": lambda: ConditionalBatches(BinarizedValidation(data, seed=4), 2)}[view]()
    for name in MEMBERS:
        assert hasattr(wrapped, name), name
    for name in ("source", "val_split", "input_shape", "num_classes", "n_train", "n_val", "info"):
        assert getattr(wrapped, name) == getattr(data, name), name
    np.testing.assert_array_equal(wrapped.y_val, data.y_val)
    assert wrapped.epoch_steps(4) == data.epoch_steps(4) and wrapped.epoch_steps(3) == data.epoch_steps(3)
    assert wrapped.epoch_batches(4, seed=0, first_epoch=0, epochs=1)[1] == data.epoch_steps(4)
    binarised = view != "conditional"
    assert wrapped.x_val.shape == data.x_val.shape
    assert (set(np.unique(wrapped.x_val)) <= {0.0, 1.0}) == binarised
    (val,) = [b for b in wrapped.val_batches(8).take(1).as_numpy_iterator()]
    images = val["x"] if view != "binarised" else val
    assert (set(np.unique(images)) <= {0.0, 1.0}) == binarised
    if view != "binarised":
        assert val["label"].shape == (len(images), 2)


def test_conditional_batches_feed_the_label_as_a_one_hot_input():
    x = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1) * np.ones((1, 3, 3, 1), np.float32)
    y = np.arange(5, dtype=np.int64) % 3
    ds = Dataset(x, y, x[:2], y[:2], "s", "test")
    batch = next(iter(ConditionalBatches(ds, 3).train_batches(5, seed=0)))
    xb, onehot = batch["x"].numpy(), batch["label"].numpy()
    assert xb.shape == (5, 3, 3, 1) and onehot.shape == (5, 3) and onehot.dtype == np.float32
    # shuffled together: each image (its value is its index) keeps its own label
    np.testing.assert_array_equal(onehot.argmax(1), xb[:, 0, 0, 0].astype(int) % 3)
    assert sorted(xb[:, 0, 0, 0]) == [0, 1, 2, 3, 4] and np.all(onehot.sum(1) == 1)
    assert ConditionalBatches(ds, 3).n_train == 5  # the rest of the interface passes through


def test_one_hot_checks_the_label_range():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        one_hot(np.array([3]), 3)


def test_validation_is_binarised_once_and_identically_every_epoch(tiny_npz):
    data = load_dataset(f"npz:{tiny_npz}", seed=0)
    binarized = BinarizedValidation(data, seed=4)
    assert binarized.n_train == data.n_train and binarized.input_shape == data.input_shape
    assert set(np.unique(binarized.x_val)) == {0.0, 1.0}
    first, second = (np.concatenate([b.numpy() for b in binarized.val_batches(5)]) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    assert set(np.unique(first)) == {0.0, 1.0} and abs(first.mean() - data.x_val.mean()) < 0.03
    images, labels = next(iter(binarized.val_batches(5, labels=True)))
    assert set(np.unique(images.numpy())) <= {0.0, 1.0} and labels.shape == (5,)


def test_binarize_draws_each_pixel_from_its_grey_level_with_the_callers_generator():
    x = np.random.default_rng(0).random((400, 5, 5, 1)).astype(np.float32)
    first = binarize(x, np.random.default_rng(1))
    assert first.dtype == np.float32 and set(np.unique(first)) == {0.0, 1.0}
    assert abs(first.mean() - x.mean()) < 0.02  # P(pixel = 1) is its grey level
    np.testing.assert_array_equal(binarize(x, np.random.default_rng(1)), first)  # the generator decides
    assert (binarize(x, np.random.default_rng(2)) != first).mean() > 0.2
    rng = np.random.default_rng(1)  # in pieces, the same draws as at once (vae-sample's batches)
    np.testing.assert_array_equal(np.concatenate([binarize(x[:7], rng), binarize(x[7:], rng)]), first)
    np.testing.assert_array_equal(binarize(np.ones_like(x), rng), np.ones_like(x))
    np.testing.assert_array_equal(binarize(np.zeros_like(x), rng), np.zeros_like(x))

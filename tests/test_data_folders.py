"""Folder datasets (folder:DIR): layout rules, labels, channels, sizes, unreadable files and the
streamed tf.data batches; plus --image-size/--channels on in-memory arrays."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from vae_cli.cli.train import main
from vae_cli.data import Dataset, load_dataset, load_eval_split
from vae_cli.errors import UsageError

CLASS_VALUE = {"ant": 30, "bee": 130, "cat": 230}  # each class is one grey level, so labels can be checked


def _save(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path, fmt)


def _load(folder, warnings=None, **kwargs):
    kwargs.setdefault("validation_split", 0.25)
    return load_dataset(f"folder:{folder}", seed=0, warn=(warnings if warnings is not None else []).append,
                        **kwargs)


def _stream(batches, labels=False):
    """All images (and labels) of a finite tf.data dataset, as numpy."""
    parts = list(batches.as_numpy_iterator())
    if not labels:
        return np.concatenate(parts)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """3 class folders of 12x10 images in PNG, JPEG (in a sub-subfolder), GIF and BMP, plus noise."""
    root = tmp_path_factory.mktemp("labelled")
    for name, value in CLASS_VALUE.items():
        for i in range(5):
            _save(root / name / f"{i}.png", np.full((12, 10, 3), value))
        _save(root / name / "deeper" / "x.jpg", np.full((12, 10), value))
        _save(root / name / "y.gif", np.full((12, 10), value))
        _save(root / name / "z.bmp", np.full((12, 10, 3), value))
    (root / "ant" / "notes.txt").write_text("not an image, ignored by extension")
    (root / ".hidden").mkdir()
    _save(root / ".hidden" / "h.png", np.zeros((12, 10)))
    return root


def test_class_subfolders_become_sorted_labels_that_follow_their_images(labelled):
    ds = _load(labelled, image_size=(6, 5))
    assert ds.class_names == ("ant", "bee", "cat") and ds.num_classes == 3
    assert ds.n_train + ds.n_val == 24 and ds.n_val == 6 and ds.skipped == 0
    assert ds.input_shape == (6, 5, 3)  # not every image is grey, so RGB
    values = np.array(list(CLASS_VALUE.values())) / 255
    for batches in (ds.train_batches(5, seed=1, labels=True), ds.val_batches(4, labels=True)):
        x, y = _stream(batches, labels=True)
        assert x.dtype == np.float32 and x.shape[1:] == (6, 5, 3)
        np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), values[y], atol=3 / 255)  # JPEG rounding
    np.testing.assert_allclose(ds.x_val.mean(axis=(1, 2, 3)), values[ds.y_val], atol=3 / 255)
    assert "3 classes (ant, bee, cat)" in ds.source and ds.info["class_names"] == ["ant", "bee", "cat"]


def test_training_batches_are_shuffled_reproducibly_and_shards_split_the_files(labelled):
    ds = _load(labelled, image_size=(4, 4), channels=1)

    def order(**kw):
        return _stream(ds.train_batches(4, labels=True, **kw), labels=True)[1]

    np.testing.assert_array_equal(order(seed=3), order(seed=3))
    halves = [order(seed=3, shard=(2, i)) for i in (0, 1)]
    assert len(halves[0]) + len(halves[1]) == ds.n_train
    assert sorted(np.concatenate(halves)) == sorted(order(seed=3))
    endless = ds.train_batches(4, seed=0, repeat=True).take(3 * ds.n_train)
    assert {b.shape[0] for b in endless.as_numpy_iterator()} == {4}  # full batches forever


def test_eval_split_of_a_folder_is_its_validation_sample(labelled):
    ds = _load(labelled, image_size=(6, 5))
    x, y, desc, source = load_eval_split(f"folder:{labelled}", validation_split=0.25, seed=0, image_size=(6, 5))
    np.testing.assert_array_equal(x, ds.x_val)
    np.testing.assert_array_equal(y, ds.y_val)
    assert desc == ds.val_split == "validation: 25% of train held out (6 of 24, seed 0)"
    assert source == ds.source


def test_in_memory_sources_offer_the_same_batches():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    ds = Dataset(x[:7], np.arange(7), x[7:], None, "arrays", "test")
    assert ds.n_train == 7 and ds.n_val == 3 and ds.info["n_train"] == 7
    shards = [_stream(ds.train_batches(2, seed=0, shard=(2, i))).ravel() for i in (0, 1)]
    assert sorted(np.concatenate(shards)) == list(range(7))
    images, labels = _stream(ds.train_batches(3, seed=0, labels=True), labels=True)
    np.testing.assert_array_equal(images.ravel(), labels)  # pairs stay together through the shuffle
    assert [len(b) for b in ds.train_batches(3, seed=0, repeat=True).take(5).as_numpy_iterator()] == [3] * 5
    np.testing.assert_array_equal(_stream(ds.val_batches(2)).ravel(), [7, 8, 9])
    with pytest.raises(UsageError, match="has no labels"):
        ds.val_batches(2, labels=True)


def test_images_directly_in_the_folder_have_no_labels(tmp_path):
    for i in range(4):
        _save(tmp_path / f"{i}.png", np.full((8, 8, 3), 40 * i))
    _save(tmp_path / "more" / "5.png", np.full((8, 8, 3), 200))
    ds = _load(tmp_path)
    assert ds.class_names is None and ds.num_classes is None and ds.y_val is None
    assert ds.n_train + ds.n_val == 5 and ds.input_shape == (8, 8, 3)
    with pytest.raises(UsageError, match="has no labels: put the images in one subfolder per class"):
        ds.train_batches(2, seed=0, labels=True)


def test_a_single_subfolder_is_not_a_class(tmp_path):
    for i in range(4):
        _save(tmp_path / "img_align" / f"{i}.png", np.zeros((8, 8)))
    ds = _load(tmp_path)
    assert ds.class_names is None and ds.n_train + ds.n_val == 4


def test_grayscale_is_detected_and_converted_either_way(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    for i in range(4):
        _save(tmp_path / f"{i}.png", gray)
    auto = _load(tmp_path)
    assert auto.input_shape == (6, 8, 1)
    np.testing.assert_allclose(_stream(auto.train_batches(4, seed=0))[0, ..., 0], gray / 255, atol=1e-6)
    rgb = _load(tmp_path, channels=3)
    x = _stream(rgb.train_batches(4, seed=0))
    assert x.shape[1:] == (6, 8, 3)
    np.testing.assert_allclose(x[..., 0], x[..., 2])
    np.testing.assert_allclose(x[0, ..., 1], gray / 255, atol=1e-6)


def test_rgb_to_one_channel_uses_luma(tmp_path):
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        _save(tmp_path / f"{i}.png", np.tile(np.array(colour, np.uint8), (4, 4, 1)))
    ds = _load(tmp_path, channels=1, validation_split=0.2)
    assert ds.input_shape == (4, 4, 1)
    x = np.concatenate([_stream(ds.train_batches(4, seed=0)), ds.x_val])
    np.testing.assert_allclose(sorted(x[:, 0, 0, 0]), [0.114, 0.299, 0.587, 1.0], atol=1e-6)


def test_mixed_sizes_need_image_size_and_are_resized(tmp_path, capsys):
    for i, (h, w) in enumerate([(20, 20), (20, 20), (10, 30), (7, 7)]):
        _save(tmp_path / f"{i}.png", np.full((h, w, 3), 255))
    with pytest.raises(UsageError, match=r"3 different sizes \(most common: 20x20 \(2 files\).*--image-size"):
        _load(tmp_path)
    ds = _load(tmp_path, image_size=(9, 12))
    x = _stream(ds.train_batches(8, seed=0))
    assert x.shape == (ds.n_train, 9, 12, 3)
    np.testing.assert_allclose(x, 1.0, atol=1e-6)  # resizing a flat image keeps it flat, within [0, 1]


def test_unreadable_files_are_skipped_with_one_warning_and_never_end_an_epoch(tmp_path):
    for i in range(6):
        _save(tmp_path / f"good{i}.png", np.full((16, 16, 3), 100))
    (tmp_path / "text.png").write_bytes(b"this is not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    png = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(png, "PNG")
    (tmp_path / "cut.png").write_bytes(png.getvalue()[:40])
    Image.fromarray(np.zeros((16, 16), np.uint8)).convert("1").save(tmp_path / "onebit.bmp")
    jpeg = io.BytesIO()  # cut past its header: only decoding finds it, and the pipeline drops it
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    (tmp_path / "late.jpg").write_bytes(jpeg.getvalue()[: int(len(jpeg.getvalue()) * 0.9)])
    warnings = []
    ds = _load(tmp_path, warnings, image_size=(16, 16), validation_split=0.1)
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "skipped 4 of 11 files" in warnings[0] and "cut.png" in warnings[0]
    assert ds.skipped == 4 and ds.n_train + ds.n_val == 7
    seen = sum(len(b) for b in ds.train_batches(2, seed=0).as_numpy_iterator())
    seen += sum(len(b) for b in ds.val_batches(2).as_numpy_iterator())
    assert seen == 6  # every good image, and the late failure dropped instead of raising


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no .png, .jpg, .jpeg, .bmp, .gif files"),
    (lambda p: (p / "a.png").write_bytes(b"junk"), "none of the 1 image files could be read"),
    (lambda p: _save(p / "big.png", np.zeros((600, 8))), "600x8 pixels, too large.*--image-size"),
])
def test_unusable_folders_are_usage_errors(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(UsageError, match=message):
        _load(tmp_path, warnings=[])


@pytest.mark.parametrize("args, message", [
    (["--dataset", "folder:/no/such/folder"], "folder /no/such/folder does not exist"),
    (["--dataset", "folder:"], "missing path after 'folder:'"),
    (["--image-size", "64x"], "--image-size: expected SIZE or HxW"),
    (["--image-size", "0"], "--image-size: expected sides from 1 to 4096"),
    (["--channels", "2"], "--channels: expected 1 (grayscale) or 3 (RGB), got 2"),
])
def test_bad_folder_flags_exit_2_with_one_line(tmp_path, capsys, args, message):
    assert main([*args, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_image_size_and_channels_convert_in_memory_arrays(tiny_npz):
    ds = load_dataset(f"npz:{tiny_npz}", image_size=(14, 7), channels=3)
    assert ds.x_train.shape == (58, 14, 7, 3) and ds.x_val.shape == (6, 14, 7, 3)
    assert ds.input_shape == (14, 7, 3) and "converted to 14x7x3" in ds.source
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    np.testing.assert_array_equal(ds.x_train[..., 0], ds.x_train[..., 2])
    same = load_dataset(f"npz:{tiny_npz}", image_size=(28, 28), channels=1)
    assert "converted" not in same.source and same.x_train.shape == (58, 28, 28, 1)


def test_vae_train_on_a_folder_of_class_subfolders(labelled, tmp_path):
    out = tmp_path / "runs"
    assert main(["--dataset", f"folder:{labelled}", "--image-size", "8", "--channels", "1", "--arch", "mlp",
                 "--hidden-dim", "8", "--epochs", "1", "--batch-size", "8", "--out", str(out)]) == 0
    (run,) = out.iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["image_size"] == "8" and config["config"]["channels"] == 1
    assert config["input_shape"] == [8, 8, 1] and config["num_classes"] == 3
    assert config["data"]["class_names"] == ["ant", "bee", "cat"] and config["data"]["n_train"] == 22
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval"]["n_examples"] == 2 and metrics["strategy"]["replicas"] == 1
    assert (run / "latent.png").stat().st_size > 0 and (run / "vae.weights.h5").is_file()


def test_conditional_run_on_class_subfolders_samples_and_evaluates(labelled, tmp_path):
    from vae_cli.cli import eval as eval_cli
    from vae_cli.cli import sample as sample_cli

    out = tmp_path / "runs"
    assert main(["--dataset", f"folder:{labelled}", "--image-size", "8", "--channels", "1", "--arch", "mlp",
                 "--hidden-dim", "8", "--epochs", "1", "--batch-size", "8", "--conditional",
                 "--out", str(out)]) == 0
    (run,) = out.iterdir()
    assert sample_cli.main([str(run), "--label", "2", "-n", "3", "--out", str(tmp_path / "s")]) == 0
    assert np.load(tmp_path / "s" / "samples.npy").shape == (3, 8, 8, 1)
    assert np.all(np.load(tmp_path / "s" / "labels.npy").argmax(1) == 2)
    # the held-out images get the run's --image-size and --channels before the shape check
    assert eval_cli.main([str(run), "--iw-samples", "2"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["protocol"]["quantity"] == "-log p(x | y), labels given" and report["n_examples"] == 2

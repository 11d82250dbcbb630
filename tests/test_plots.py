"""plots.py: every figure writes a decodable PNG of a plausible size, atomically."""

import numpy as np
import pytest
from PIL import Image

from vae_cli import plots

RNG = np.random.default_rng(0)


def gray(n, size=28):
    return RNG.uniform(size=(n, size, size, 1)).astype(np.float32)


def rgb(n, size=32):
    return RNG.uniform(size=(n, size, size, 3)).astype(np.float32)


def png_size(path):
    """(width, height) of a PNG that must decode completely."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def no_leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or ".tmp" in p.name)


class TestTiling:
    def test_tiles_are_one_grey_pixel_apart_and_blank_cells_are_zero(self):
        images = np.stack([np.full((2, 3, 1), v, np.float32) for v in (0.25, 0.75, 1.0)])
        mosaic = plots.tile_images(images)  # ncols = ceil(sqrt(3)) = 2, 2x3 images: gap 1
        assert mosaic.shape == (2 + 1 + 2, 3 + 1 + 3, 1)
        assert np.all(mosaic[:2, :3] == 0.25) and np.all(mosaic[:2, 4:] == 0.75)
        assert np.all(mosaic[3:, :3] == 1.0) and np.all(mosaic[3:, 4:] == 0.0)  # the blank cell
        assert np.all(mosaic[2, :] == plots.GAP_VALUE) and np.all(mosaic[:, 3] == plots.GAP_VALUE)

    def test_explicit_columns_and_gap(self):
        images = rgb(7, size=8)
        mosaic = plots.tile_images(images, ncols=7)
        assert mosaic.shape == (8, 7 * 8 + 6, 3)  # one row: gaps between columns only
        np.testing.assert_array_equal(mosaic[:, 9:17], images[1])
        assert plots.tile_images(images, ncols=3).shape == (3 * 8 + 2, 3 * 8 + 2, 3)
        assert plots.tile_images(images, ncols=3, gap=0).shape == (24, 24, 3)
        assert plots.tile_images(images, ncols=1, gap=2).shape == (7 * 8 + 12, 8, 3)

    def test_large_images_get_two_pixels_and_integer_images_a_mid_grey(self):
        assert plots.tile_gap(28, 28) == 1 and plots.tile_gap(64, 64) == 2
        big = plots.tile_images(np.zeros((2, 64, 64, 1), np.uint8), ncols=2)
        assert big.shape == (64, 130, 1) and np.all(big[:, 64:66] == 127)


class TestImages:
    def test_save_image_round_trips_gray_pixels(self, tmp_path):
        image = RNG.uniform(size=(8, 8, 1)).astype(np.float32)
        path = tmp_path / "sample-0001.png"
        plots.save_image(image, str(path))
        with Image.open(path) as back:
            assert back.size == (8, 8)
            pixels = np.asarray(back.convert("L"), dtype=np.float32) / 255
        np.testing.assert_allclose(pixels, image[..., 0], atol=1 / 255)
        assert no_leftovers(tmp_path) == []

    def test_save_image_rgb(self, tmp_path):
        plots.save_image(rgb(1, size=16)[0], tmp_path / "x.png")
        with Image.open(tmp_path / "x.png") as back:
            assert back.size == (16, 16) and back.mode == "RGB"

    @pytest.mark.parametrize("images", [gray(100), rgb(16)], ids=["gray", "rgb"])
    def test_grid_is_big_enough_to_read(self, tmp_path, images):
        path = tmp_path / "nested" / "samples.png"  # the parent is created
        plots.save_image_grid(images, path, title="Samples")
        width, height = png_size(path)
        assert width >= 280 and height >= 280
        assert no_leftovers(path.parent) == []

    def test_manifold_of_30x30_digits(self, tmp_path):
        grid = np.linspace(-4, 4, 30)
        path = tmp_path / "manifold.png"
        plots.plot_manifold(gray(900), grid, grid[::-1], path, title="Decoded latent grid")
        width, height = png_size(path)
        assert width >= 600 and height >= 600
        assert no_leftovers(tmp_path) == []

    def test_manifold_rgb_small_images(self, tmp_path):
        plots.plot_manifold(rgb(25, size=8), np.arange(5), np.arange(5)[::-1], tmp_path / "m.png",
                            xlabel="PC1", ylabel="PC2")
        assert min(png_size(tmp_path / "m.png")) >= 100

    @pytest.mark.parametrize("n", [3, 10, 20])
    def test_reconstructions(self, tmp_path, n):
        plots.plot_reconstructions(gray(n), gray(n), tmp_path / "recon.png", n=n)
        width, height = png_size(tmp_path / "recon.png")
        assert width > height >= 2 * 28

    def test_interpolation_and_traversal(self, tmp_path):
        plots.plot_interpolation(rgb(8), tmp_path / "walk.png", title="walk")
        width, height = png_size(tmp_path / "walk.png")
        assert width > 3 * height
        plots.plot_traversal(gray(4 * 7), 4, 7, np.linspace(-3, 3, 7), tmp_path / "trav.png")
        width, height = png_size(tmp_path / "trav.png")
        assert width >= 7 * 28 and height >= 4 * 28
        assert no_leftovers(tmp_path) == []

    def test_labelled_rows_and_traversal_of_chosen_dimensions(self, tmp_path):
        plots.plot_labelled_rows(gray(3 * 10), 10, ["label 0", "label 1", "label 2"], tmp_path / "rows.png",
                                 title="Samples per class")
        width, height = png_size(tmp_path / "rows.png")
        assert width > 2.5 * height and height >= 3 * 28
        plots.plot_traversal(gray(2 * 5), 2, 5, np.linspace(-3, 3, 5), tmp_path / "t.png", dims=[3, 17])
        assert min(png_size(tmp_path / "t.png")) >= 2 * 28


class TestCharts:
    def test_loss_with_validation(self, tmp_path):
        history = {k: list(np.linspace(200, 100, 5) / (i + 1)) for i, k in
                   enumerate(["loss", "recon", "kl", "val_loss", "val_recon", "val_kl"])}
        plots.plot_loss(history, tmp_path / "loss.png")
        width, height = png_size(tmp_path / "loss.png")
        assert width > 2 * height  # three panels side by side

    def test_loss_single_epoch_without_validation(self, tmp_path):
        plots.plot_loss({"loss": [3.0], "kl": [1.0]}, str(tmp_path / "loss.png"))
        png_size(tmp_path / "loss.png")
        assert no_leftovers(tmp_path) == []

    @pytest.mark.parametrize("n_classes", [None, 10, 40])
    def test_latent_scatter(self, tmp_path, n_classes):
        points = RNG.normal(size=(500, 2))
        labels = None if n_classes is None else RNG.integers(0, n_classes, 500)
        plots.plot_latent(points, labels, tmp_path / "latent.png")
        width, height = png_size(tmp_path / "latent.png")
        assert width >= 400 and height >= 400

    def test_latent_key_names_the_classes(self, tmp_path):
        points, labels = RNG.normal(size=(300, 2)), np.arange(300) % 3
        plots.plot_latent(points, labels, tmp_path / "numbers.png")
        plots.plot_latent(points, labels, tmp_path / "numbers-again.png", class_names=[])
        plots.plot_latent(points, labels, tmp_path / "names.png", class_names=["circle", "square", "$\\frac"])
        read = lambda name: np.asarray(Image.open(tmp_path / name).convert("L"), np.int16)  # noqa: E731
        assert np.array_equal(read("numbers.png"), read("numbers-again.png"))  # drawing is repeatable
        names = read("names.png")  # the key's text changed, and mathtext-looking names still draw
        assert names.shape != read("numbers.png").shape or np.abs(names - read("numbers.png")).sum() > 0

    def test_class_labels_are_short_printable_text(self):
        assert plots.class_label("circle") == "circle"
        assert plots.class_label("$x$") == r"\$x\$"  # never mathtext
        assert plots.class_label("a\nb") == "a?b"
        long = plots.class_label("x" * 100)
        assert len(long) == plots.MAX_CLASS_NAME and long.endswith("\u2026")

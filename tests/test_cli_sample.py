"""vae-sample: its files and their formats, determinism for a seed, given points, interpolation,
conditional labels, and refusals that leave every existing file as it was."""

import io
import sys
import time

import numpy as np
import pytest
from PIL import Image

import vae_cli.latent
from tests.faults import exit_code
from vae_cli.cli.sample import main

H, W = 28, 28


def sample(run, out, *args):
    assert main([str(run), "--out", str(out), *args]) == 0
    return np.load(out / "samples.npy", allow_pickle=False)


def test_files_and_formats(mlp_run, tmp_path):
    out = tmp_path / "digits"
    images = sample(mlp_run, out, "-n", "12", "--seed", "1")
    assert images.dtype == np.float32 and images.shape == (12, H, W, 1)
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.01
    names = sorted(p.name for p in out.iterdir())
    assert names == ["grid.png", *(f"sample-{i:04d}.png" for i in range(1, 13)), "samples.npy", "z.npy"]
    with Image.open(out / "sample-0003.png") as png:
        assert png.size == (W, H) and png.mode == "L"
        np.testing.assert_allclose(np.asarray(png, np.float32) / 255, images[2, ..., 0], atol=1 / 255)
    with Image.open(out / "grid.png") as grid:
        grid.load()
        assert min(grid.size) >= 100
    z = np.load(out / "z.npy")
    assert z.shape == (12, 2) and z.dtype == np.float32


def test_same_seed_same_images_other_seed_other_images(mlp_run, tmp_path):
    a = sample(mlp_run, tmp_path / "a", "-n", "8", "--seed", "5")
    b = sample(mlp_run, tmp_path / "b", "-n", "8", "--seed", "5")
    c = sample(mlp_run, tmp_path / "c", "-n", "8", "--seed", "6")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3


def test_temperature_zero_decodes_the_prior_mean_and_binarize_gives_zeros_and_ones(mlp_run, tmp_path):
    cold = sample(mlp_run, tmp_path / "cold", "-n", "3", "--temperature", "0")
    np.testing.assert_array_equal(cold[0], cold[2])
    binary = sample(mlp_run, tmp_path / "bin", "-n", "50", "--binarize")
    assert set(np.unique(binary)) == {0.0, 1.0}
    grey = sample(mlp_run, tmp_path / "grey", "-n", "50")
    assert abs(binary.mean() - grey.mean()) < 0.02  # Bernoulli draws keep the mean intensity


def test_given_latent_points(mlp_run, tmp_path):
    images = sample(mlp_run, tmp_path / "z", "--z", "0.5,-1.2;0,0;0.5,-1.2")
    assert images.shape == (3, H, W, 1)
    np.testing.assert_array_equal(images[0], images[2])
    np.testing.assert_allclose(np.load(tmp_path / "z" / "z.npy"), [[0.5, -1.2], [0, 0], [0.5, -1.2]], rtol=1e-7)


def test_latent_points_may_start_with_a_negative_value(mlp_run, tmp_path):
    """`--z -0.5,1.2` (a space, not `=`): argparse alone would read the value as a flag."""
    images = sample(mlp_run, tmp_path / "neg", "--z", "-0.5,1.2;-1,-2")
    assert images.shape == (2, H, W, 1)
    np.testing.assert_allclose(np.load(tmp_path / "neg" / "z.npy"), [[-0.5, 1.2], [-1, -2]], rtol=1e-7)


def test_interpolation_walks_from_one_held_out_image_to_another(mlp_run, tmp_path):
    images = sample(mlp_run, tmp_path / "walk", "--interpolate", "0", "1", "--steps", "6")
    assert images.shape == (6, H, W, 1)
    z = np.load(tmp_path / "walk" / "z.npy")
    np.testing.assert_allclose(z[1:] - z[:-1], np.repeat((z[-1:] - z[:1]) / 5, 5, axis=0), atol=1e-5)
    with Image.open(tmp_path / "walk" / "grid.png") as grid:
        assert grid.size[0] > 3 * grid.size[1]  # one row


def test_default_output_is_a_new_folder_inside_the_run(mlp_run):
    before = set((mlp_run / "generated").glob("*")) if (mlp_run / "generated").exists() else set()
    assert main([str(mlp_run), "-n", "2"]) == 0
    assert main([str(mlp_run), "-n", "2"]) == 0
    new = set((mlp_run / "generated").glob("*")) - before
    assert len(new) == 2 and all((p / "samples.npy").is_file() for p in new)



@pytest.mark.parametrize("args, message", [
    (["--z", "1,2,3"], "--z: each point needs 2 values (this run's latent_dim), got 3"),
    (["--z", "1,abc"], "expected comma-separated numbers"),
    (["--z", "1,2;3"], "every point needs the same number of values"),
    (["--z", "1,nan"], "expected finite numbers"),
    (["--interpolate", "0", "10000"], "--interpolate: indexes must be 0 to 9999"),
    (["--interpolate", "0", "1", "--z", "0,0"], "two different requests"),
    (["--steps", "5"], "--steps only applies to --interpolate"),
    (["--z", "0,0", "-n", "4"], "-n applies to prior samples"),
    (["--label", "7"], "--label: this run is not conditional"),
    (["-n", "0"], "expected an integer from 1 to 100000"),
    (["--temperature", "-1"], "--temperature: expected a number >= 0"),
])
def test_bad_requests_exit_2_with_one_line_and_write_nothing(mlp_run, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert exit_code(main, [str(mlp_run), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_existing_files_in_out_are_never_touched(mlp_run, tmp_path, capsys):
    out = tmp_path / "digits"
    out.mkdir()
    (out / "sample-0001.png").write_bytes(b"mine")
    assert exit_code(main, [str(mlp_run), "--out", str(out), "-n", "3"]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["sample-0001.png"]
    assert (out / "sample-0001.png").read_bytes() == b"mine"


def test_conditional_sampling_draws_the_requested_class(cond_run, tmp_path):
    sevens = sample(cond_run, tmp_path / "sevens", "--label", "7", "-n", "6", "--seed", "2")
    assert sevens.shape == (6, H, W, 1)
    labels = np.load(tmp_path / "sevens" / "labels.npy")
    assert labels.shape == (6, 10) and np.all(labels.argmax(1) == 7) and np.all(labels.sum(1) == 1)
    ones = sample(cond_run, tmp_path / "ones", "--label", "1", "-n", "6", "--seed", "2")
    np.testing.assert_array_equal(np.load(tmp_path / "sevens" / "z.npy"), np.load(tmp_path / "ones" / "z.npy"))
    assert np.abs(sevens - ones).mean() > 5e-3  # same z, different label: different images
    mixed = sample(cond_run, tmp_path / "all", "-n", "20")
    assert list(np.load(tmp_path / "all" / "labels.npy").argmax(1)) == [i % 10 for i in range(20)]
    assert mixed.shape == (20, H, W, 1)


def test_conditional_label_out_of_range(cond_run, tmp_path, capsys):
    assert exit_code(main, [str(cond_run), "--label", "10", "--out", str(tmp_path / "o")]) == 2
    assert "--label: expected a class from 0 to 9, got 10" in capsys.readouterr().err


def test_conditional_interpolation_blends_the_two_labels(cond_run, tmp_path):
    from vae_cli.run import load_held_out, load_run

    y = load_held_out(load_run(cond_run)).y
    i, j = 0, int(np.argmax(y != y[0]))  # two images of different classes
    sample(cond_run, tmp_path / "walk", "--interpolate", str(i), str(j), "--steps", "5")
    labels = np.load(tmp_path / "walk" / "labels.npy")
    assert labels[0].argmax() == y[i] and labels[-1].argmax() == y[j]
    np.testing.assert_allclose(labels[2][[y[i], y[j]]], [0.5, 0.5])
    sample(cond_run, tmp_path / "fixed", "--interpolate", str(i), str(j), "--steps", "5", "--label", "3")
    assert np.all(np.load(tmp_path / "fixed" / "labels.npy").argmax(1) == 3)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_ctrl_c_says_on_a_line_of_its_own_what_was_kept(mlp_run, tmp_path, monkeypatch):
    """The message does not glue onto the progress line and names the PNGs kept and the files
    not written."""
    real = vae_cli.latent.generate_batches

    def interrupted_after_one_batch(*args, **kwargs):
        batches = real(*args, **{**kwargs, "batch_size": 5})
        first = next(batches)
        time.sleep(0.3)  # past the progress line's 0.2 s between redraws, so it is drawn
        yield first
        raise KeyboardInterrupt

    monkeypatch.setattr(vae_cli.latent, "generate_batches", interrupted_after_one_batch)
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    out = tmp_path / "out"
    assert main([str(mlp_run), "-n", "20", "--out", str(out)]) == 130
    progress, message, end = err.getvalue().rsplit("\n", 2)
    assert progress.startswith("\rvae-sample: 5/20 images (25%)") and end == ""
    assert message == (f"vae-sample: interrupted; kept 5 PNGs (sample-0001.png to sample-0005.png) in {out}/; "
                       "no grid.png and no .npy files, which are written only once every image is done")
    assert sorted(p.name for p in out.iterdir()) == [f"sample-{i:04d}.png" for i in range(1, 6)]

"""vae-plot: every figure redrawn from saved weights into RUN/plots/, training's files untouched,
per-class manifolds and t-SNE for the conditional 3-D run, and one-line refusals."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.faults import exit_code
from vae_cli.cli.plot import ALL, main


def snapshot(run):
    """{relative path: (sha256, mtime_ns)} of every file training wrote."""
    return {str(p.relative_to(run)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(run.rglob("*")) if p.is_file() and p.parts[len(run.parts)] != "plots"}


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size



@pytest.fixture
def run_copy(mlp_run, tmp_path):
    copy = tmp_path / mlp_run.name
    shutil.copytree(mlp_run, copy)
    return copy


def test_all_figures_go_to_plots_and_training_files_are_untouched(run_copy, capsys):
    before = snapshot(run_copy)
    assert main([str(run_copy)]) == 0
    assert snapshot(run_copy) == before
    expected = {"latent.png", "manifold.png", "reconstructions.png", "samples.png", "interpolation.png",
                "traversal.png", "loss.png"}
    assert {p.name for p in (run_copy / "plots").iterdir()} == expected
    for name in expected:
        width, height = png_size(run_copy / "plots" / name)
        assert width >= 200 and height >= 100, name
    width, height = png_size(run_copy / "plots" / "traversal.png")
    assert width > 2 * height  # two rows (latent_dim 2) of 11 values
    assert "10,000 held-out images (test)" in capsys.readouterr().out


def test_manifold_options_and_out_folder(run_copy, tmp_path):
    out = tmp_path / "figs"
    assert main([str(run_copy), "--what", "manifold", "--grid", "20", "--range", "3", "--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["manifold.png"]
    assert not (run_copy / "plots").exists()
    assert min(png_size(out / "manifold.png")) >= 400


def test_conditional_run_gets_one_manifold_per_class_and_tsne(cond_run, tmp_path):
    out = tmp_path / "figs"
    assert main([str(cond_run), "--what", "manifold,latent,traversal,samples", "--grid", "4", "--tsne",
                 "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {*(f"manifold-{k}.png" for k in range(10)), "latent-tsne.png", "traversal.png",
                     "samples.png"}
    width, height = png_size(out / "samples.png")  # ten rows, one per class, of ten samples
    assert 0.8 < width / height < 1.3
    pixels = np.asarray(Image.open(out / "manifold-1.png").convert("L"), np.float32)
    assert pixels.std() > 1


def test_training_figures_of_a_conditional_run(cond_run):
    for name in ("latent.png", "samples.png", "reconstructions.png", "loss.png", "samples/epoch-003.png"):
        assert min(png_size(cond_run / name)) >= 100, name


@pytest.mark.parametrize("args, message", [
    (["--what", "latent,pie"], "unknown figure(s) 'pie'; choose from"),
    (["--tsne"], "--tsne: this run's latent space is 2-D"),
    (["--grid", "1"], "expected an integer from 2 to 100"),
    (["--range", "0"], "expected a number > 0"),
    (["--index", "10000", "--what", "traversal"], "--index: expected 0 to 9999"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
])
def test_bad_requests_exit_2_with_one_line(run_copy, capsys, args, message):
    assert exit_code(main, [str(run_copy), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (run_copy / "plots").exists()


def test_out_may_not_be_the_run_directory(run_copy, capsys):
    before = snapshot(run_copy)
    assert exit_code(main, [str(run_copy), "--out", str(run_copy)]) == 2
    assert "is the run directory itself" in capsys.readouterr().err
    assert snapshot(run_copy) == before


def test_other_data_must_have_the_runs_image_shape(run_copy, tmp_path, capsys):
    rgb = tmp_path / "rgb.npz"
    np.savez(rgb, x=np.zeros((6, 32, 32, 3), np.uint8))
    assert exit_code(main, [str(run_copy), "--dataset", f"npz:{rgb}"]) == 2
    assert "32x32x3 images but this run was trained on 28x28x1" in capsys.readouterr().err


def test_missing_history(run_copy, capsys):
    (run_copy / "history.csv").unlink()
    assert exit_code(main, [str(run_copy), "--what", "loss"]) == 2
    assert "history.csv is missing" in capsys.readouterr().err
    assert ALL[-1] == "loss"  # `all` skips it with a note instead (see plot_command)


def test_epoch_sample_grids_keep_their_tiles_apart(mlp_run):
    """samples/epoch-NNN.png: 8 x 8 digits, one grey pixel apart, enlarged 3x."""
    pixels = np.asarray(Image.open(mlp_run / "samples" / "epoch-001.png"))
    assert pixels.shape == (3 * (8 * 28 + 7), 3 * (8 * 28 + 7))
    gap_rows = pixels[3 * 28: 3 * 29]  # between the first and second row of digits
    assert np.all(gap_rows == 128)


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    """A 1-epoch 2-D MLP run on a small .npz (12x12 images, 3 labels) that tests may delete."""
    from vae_cli.cli.train import main as train

    folder = tmp_path_factory.mktemp("npz-run")
    rng = np.random.default_rng(0)
    np.savez(folder / "data.npz", x_train=rng.integers(0, 256, (120, 12, 12), dtype=np.uint8),
             y_train=np.arange(120) % 3)
    assert train(["--arch", "mlp", "--hidden-dim", "8", "--dataset", f"npz:{folder / 'data.npz'}",
                  "--epochs", "1", "--batch-size", "40", "--out", str(folder / "runs")]) == 0
    (run,) = (folder / "runs").iterdir()
    return run


def test_figures_drawn_from_the_model_alone_never_load_the_data(npz_run, tmp_path, capsys):
    (npz_run.parents[1] / "data.npz").unlink()  # the data moved away after training
    out = tmp_path / "figs"
    assert main([str(npz_run), "--what", "manifold,samples,loss", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["loss.png", "manifold.png", "samples.png"]
    captured = capsys.readouterr()
    assert "data:" not in captured.out and captured.err == ""
    assert exit_code(main, [str(npz_run), "--what", "latent", "--out", str(tmp_path / "latent")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.npz" in err
    assert "latent is drawn from the run's held-out images: point --dataset at the same data" in err
    assert not (tmp_path / "latent").exists()


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A conditional 1-epoch MLP run on a folder of three classes named circle, square, triangle."""
    from vae_cli.cli.train import main as train

    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for k, name in enumerate(("circle", "square", "triangle")):
        (root / "data" / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(rng.normal(80 * k + 40, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "data" / name / f"{i}.png")
    assert train(["--arch", "mlp", "--hidden-dim", "8", "--dataset", f"folder:{root / 'data'}", "--conditional",
                  "--epochs", "1", "--batch-size", "6", "--out", str(root / "runs")]) == 0
    (run,) = (root / "runs").iterdir()
    return run


def test_figures_name_the_classes_that_config_json_keeps(shapes_run, tmp_path):
    """config.json keeps a folder's class names; the latent key, the rows of samples.png and the
    per-class manifold titles use them; without them (or with junk) they show numbers."""
    meta = json.loads((shapes_run / "config.json").read_text())
    assert meta["data"]["class_names"] == ["circle", "square", "triangle"]
    runs = {}
    for variant, names in (("names", meta["data"]["class_names"]), ("again", meta["data"]["class_names"]),
                           ("numbers", None), ("junk", 5)):
        runs[variant] = tmp_path / variant
        shutil.copytree(shapes_run, runs[variant])
        (runs[variant] / "config.json").write_text(json.dumps({**meta, "data": {**meta["data"], "class_names": names}}))
        assert main([str(runs[variant]), "--what", "latent,samples,manifold", "--grid", "3"]) == 0

    def pixels(variant, name):
        return np.asarray(Image.open(runs[variant] / "plots" / name).convert("L"), np.int16)

    for name in ("latent.png", "samples.png", "manifold-0.png"):
        assert np.array_equal(pixels("names", name), pixels("again", name))  # drawing is repeatable
        assert np.array_equal(pixels("numbers", name), pixels("junk", name))  # junk: numbers
        named, numbered = pixels("names", name), pixels("numbers", name)
        assert named.shape != numbered.shape or np.abs(named - numbered).sum() > 0, name

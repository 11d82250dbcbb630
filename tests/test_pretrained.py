"""The run shipped inside vae-cli: what ships, and `pretrained:mnist` in vae-eval, vae-sample and
vae-plot, whose outputs go to a copy in the user's cache, never into the package or the cwd."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from vae_cli.cli.eval import main as eval_main
from vae_cli.cli.plot import main as plot_main
from vae_cli.cli.sample import main as sample_main
from vae_cli.run import load_run

SHIPPED = Path(__file__).resolve().parents[1] / "vae_cli" / "pretrained" / "mnist"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """XDG_CACHE_HOME under tmp, and an empty working folder that must stay empty."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path / "cache" / "vae-cli" / "pretrained-mnist"


def test_only_what_readers_need_ships():
    files = sorted(p.name for p in SHIPPED.iterdir())
    assert files == ["config.json", "history.csv", "metrics.json", "vae.weights.h5"]
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) <= 4 * 1024 * 1024
    with h5py.File(SHIPPED / "vae.weights.h5", "r") as f:
        assert "optimizer" not in f  # model arrays only
    meta = json.loads((SHIPPED / "config.json").read_text())
    assert meta["config"]["arch"] == "conv" and meta["config"]["latent_dim"] == 2
    assert meta["config"]["dataset"] == "mnist-5k" and meta["config"]["out"] == "outputs"
    for name in ("config.json", "metrics.json"):
        assert "/tmp" not in (SHIPPED / name).read_text()  # nothing of the machine it was made on


def test_eval_reproduces_the_shipped_numbers(cache, tmp_path, capsys):
    """The shipped weights are the ones metrics.json measured on the 500 validation digits, and
    vae-eval scores the 10,000 real MNIST test digits shipped with vae-cli."""
    from vae_cli.data import load_dataset
    from vae_cli.evaluate import evaluate

    assert eval_main(["pretrained:mnist", "--iw-samples", "0", "--json", str(tmp_path / "eval.json")]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["n_examples"] == 10_000 and report["protocol"]["data"]["split"] == "test"
    shipped = json.loads((SHIPPED / "metrics.json").read_text())["eval"]
    run = load_run("pretrained:mnist")
    validation = load_dataset("mnist-5k", validation_split=0.1, seed=0).x_val
    again = evaluate(run.encoder, run.decoder, validation, likelihood=run.config.likelihood, seed=run.config.seed)
    assert again["neg_elbo"] == pytest.approx(shipped["neg_elbo"], abs=0.05)  # same protocol and seed
    assert not any(Path().iterdir())


def test_sample_and_plot_write_beside_the_cached_copy(cache, capsys):
    assert sample_main(["pretrained:mnist", "-n", "4", "--seed", "1"]) == 0
    (folder,) = (cache / "generated").iterdir()
    samples = np.load(folder / "samples.npy")
    assert samples.shape == (4, 28, 28, 1) and np.all((samples >= 0) & (samples <= 1))
    assert plot_main(["pretrained:mnist", "--what", "samples"]) == 0
    assert (cache / "plots" / "samples.png").is_file()
    assert not any(Path().iterdir())  # nothing named pretrained:mnist appeared in the cwd
    assert sorted(p.name for p in SHIPPED.iterdir()) == ["config.json", "history.csv", "metrics.json",
                                                         "vae.weights.h5"]


def test_a_damaged_cached_copy_is_restored(cache):
    load_run("pretrained:mnist")
    (cache / "vae.weights.h5").write_bytes(b"not weights")
    run = load_run("pretrained:mnist")
    assert (cache / "vae.weights.h5").read_bytes() == (SHIPPED / "vae.weights.h5").read_bytes()
    assert run.config.latent_dim == 2


def test_unknown_names_and_an_unwritable_cache_are_one_line_errors(cache, tmp_path, monkeypatch, capsys):
    assert sample_main(["pretrained:cifar", "-n", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such pretrained run" in err[0] and "pretrained:mnist" in err[0]

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))
    assert eval_main(["pretrained:mnist"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "XDG_CACHE_HOME" in err[0]

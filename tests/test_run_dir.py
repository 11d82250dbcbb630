"""The run directory's contract: model weights stored once (weights-only vae/best files, the
optimizer state only in the checkpoint, identical files linked), data found from any working
folder (and a clear line naming --dataset when it moved), the progress bar's real step count,
the real MNIST test set as an offline mnist run's default evaluation, and a one-line warning
when a run learned nothing."""

import json
import os
import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from PIL import Image

from vae_cli.checkpoint import WEIGHTS_AT_ATTR, load_checkpoint
from vae_cli.cli import eval as eval_cli
from vae_cli.cli.train import main as train_main
from vae_cli.config import Config, resolve
from vae_cli.errors import UsageError
from vae_cli.models import build_vae
from vae_cli.run import RunDir, load_held_out, load_run, save_config
from vae_cli.train_run import MIN_STEPS, learned_little, resume_run, train_new_run


def _arrays(path: Path, group: str | None = None) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        root = f[group] if group else f
        root.visititems(lambda name, item: out.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return out


def _history(run: Path) -> list[dict[str, float]]:
    lines = (run / "history.csv").read_text().splitlines()
    return [dict(zip(lines[0].split(","), map(float, line.split(",")))) for line in lines[1:]]


def _bytes(arrays: dict) -> int:
    return sum(a.nbytes for a in arrays.values())


class KeepCheckpoint(keras.callbacks.Callback):
    """Copies the checkpoint at every epoch end: what the run held before it finished (the run's
    own callbacks come first, so the epoch's checkpoint is already written)."""

    def __init__(self, run_parent: Path, copy: Path):
        super().__init__()
        self.run_parent, self.copy = run_parent, copy

    def on_epoch_end(self, epoch, logs=None):
        (checkpoint,) = self.run_parent.glob("*/checkpoint.weights.h5")
        shutil.copy(checkpoint, self.copy)


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    """A 2-epoch conv run on 256 16x16 images of 4x4 blocks, with --patience (so the best epoch
    is restored into the compiled model at the end), and the full checkpoint of its last epoch."""
    folder = tmp_path_factory.mktemp("conv")
    blocks = np.random.default_rng(0).random((256, 4, 4)) > 0.6
    np.savez(folder / "x.npz", x=np.kron(blocks, np.ones((4, 4))).astype(np.uint8) * 255)
    config = resolve(None, {"arch": "conv", "conv_filters": (4, 8), "hidden_dim": 512, "latent_dim": 2, "epochs": 2,
                            "batch_size": 16, "learning_rate": 0.003, "patience": 5,
                            "dataset": f"npz:{folder / 'x.npz'}", "out": str(folder / "runs")})
    (folder / "runs").mkdir()
    result = train_new_run(config, log=lambda line: None,
                           callbacks=[KeepCheckpoint(folder / "runs", folder / "last-epoch.weights.h5")])
    return result.run_path, folder / "last-epoch.weights.h5", config


def test_weights_files_hold_model_weights_once(conv_run):
    run, full_checkpoint, _ = conv_run
    model = _arrays(full_checkpoint, "layers")
    val = [row["val_recon"] + row["val_kl"] for row in _history(run)]
    assert val[-1] == min(val), "the fixture's premise: its last epoch is its best"
    with h5py.File(run / "vae.weights.h5", "r") as f:
        assert "optimizer" not in f and "layers" in f
    np.testing.assert_equal(_arrays(run / "vae.weights.h5", "layers"), model)  # the last epoch was the best
    assert os.path.samefile(run / "best.weights.h5", run / "vae.weights.h5")  # best == final: one file
    with h5py.File(run / "checkpoint.weights.h5", "r") as f:
        assert set(f) == {"optimizer"}  # its model weights are vae.weights.h5's
        assert json.loads(f.attrs[WEIGHTS_AT_ATTR])["file"] == "vae.weights.h5"
    # before the end, each of the three files was as large as this one (weights + Adam's 2 slots)
    old_file = full_checkpoint.stat().st_size
    assert _bytes(_arrays(full_checkpoint, "optimizer")) > 1.9 * _bytes(model)
    inodes = {p.stat().st_ino: p.stat().st_size for p in run.glob("*.weights.h5")}
    assert len(inodes) == 2 and sum(inodes.values()) < 1.05 * old_file
    assert (run / "vae.weights.h5").stat().st_size < 1.05 * _bytes(model)


def test_a_finished_checkpoint_restores_what_the_full_one_held(conv_run, tmp_path):
    run, full_checkpoint, config = conv_run
    restored = []
    for checkpoint in (run / "checkpoint.weights.h5", full_checkpoint):
        vae = build_vae(config, (16, 16, 1)).vae
        vae.compile(optimizer="adam")
        progress = load_checkpoint(checkpoint, vae)
        restored.append((progress, [np.asarray(v) for v in vae.weights + vae.optimizer.variables]))
    (pointer_progress, pointer_state), (full_progress, full_state) = restored
    assert pointer_progress == full_progress and len(pointer_state) == len(full_state)
    for a, b in zip(pointer_state, full_state):
        np.testing.assert_array_equal(a, b)


def test_a_finished_run_whose_final_weights_changed_cannot_resume(conv_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(conv_run[0], run)
    other = build_vae(conv_run[2], (16, 16, 1))  # fresh weights in place of the trained ones
    other.vae.save_weights(run / "vae.weights.h5")
    with pytest.raises(UsageError, match="keeps its model weights in .*vae.weights.h5, which has changed"):
        resume_run(str(run), flags={"epochs": 3}, log=lambda line: None)


def test_a_run_from_before_weights_only_files_still_loads(tmp_path):
    """Older runs: vae.weights.h5 with the optimizer state, data recorded without a location."""
    config = Config(arch="mlp", hidden_dim=16)
    models = build_vae(config, (8, 8, 1))
    models.vae.compile(optimizer="adam")
    models.vae.fit(np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32), epochs=1, verbose=0)
    tmp_path.joinpath("run").mkdir()
    save_config(RunDir(tmp_path / "run"), config, (8, 8, 1), None, {"requested": "mnist", "validation": "test"})
    models.vae.save_weights(tmp_path / "run" / "vae.weights.h5")
    with h5py.File(tmp_path / "run" / "vae.weights.h5", "r") as f:
        assert "optimizer" in f
    x = np.random.default_rng(1).random((3, 8, 8, 1), dtype=np.float32)
    loaded = load_run(tmp_path / "run")
    np.testing.assert_allclose(np.asarray(loaded.encoder(x)[0]), np.asarray(models.encoder(x)[0]), atol=1e-6)


# ---------------------------------------------------------------- data found from anywhere


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A 1-epoch run trained from project/ on --dataset folder:data/digits (relative): 30 8x8
    PNGs, 27 for training in batches of 8 (4 steps an epoch), 3 for validation."""
    project = tmp_path_factory.mktemp("project")
    digits = project / "data" / "digits"
    digits.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(digits / f"{i:02d}.png")
    before = Path.cwd()
    os.chdir(project)
    try:
        lines = []
        config = resolve(None, {"arch": "mlp", "hidden_dim": 8, "epochs": 1, "batch_size": 8,
                                "dataset": "folder:data/digits", "out": "runs"})
        result = train_new_run(config, log=lines.append)
    finally:
        os.chdir(before)
    return project / result.run_path, digits, lines


def test_a_folder_run_records_where_its_data_is(folder_run):
    run, digits, lines = folder_run
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["requested"] == "folder:data/digits" and data["location"] == f"folder:{digits.resolve()}"
    assert data["n_train"] == 27 and data["n_val"] == 3 and data["n_test"] == 0


def test_readers_and_resume_work_from_any_folder(folder_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(folder_run[0], run)
    monkeypatch.chdir(tmp_path)  # not where it was trained: data/digits is not here
    assert eval_cli.main([str(run), "--iw-samples", "0"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["n_examples"] == 3 and report["protocol"]["data"]["split"].startswith("validation:")
    assert train_main(["--resume", str(run), "--epochs", "2"]) == 0
    assert "resuming at epoch 2 of 2" in capsys.readouterr().out


def test_moved_data_is_named_with_the_flag_that_finds_it(folder_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(folder_run[0], run)
    moved = tmp_path / "elsewhere" / "digits"
    shutil.copytree(folder_run[1], moved)
    gone = tmp_path / "gone" / "digits"  # the run as trained there, before the data moved away
    text = (run / "config.json").read_text().replace(str(folder_run[1].resolve()), str(gone))
    (run / "config.json").write_text(text)
    assert json.loads(text)["data"]["location"] == f"folder:{gone}"
    monkeypatch.chdir(tmp_path)
    assert eval_cli.main([str(run), "--iw-samples", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"is no longer at {gone}" in err and "--dataset folder:NEW_PATH" in err
    # the new place: still the run's own data, so its validation split, never all 30 images
    assert eval_cli.main([str(run), "--dataset", f"folder:{moved}", "--iw-samples", "0"]) == 0
    assert json.loads((run / "eval.json").read_text())["n_examples"] == 3
    assert train_main(["--resume", str(run), "--epochs", "2", "--dataset", f"folder:{moved}"]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["location"] == f"folder:{moved.resolve()}"


def test_a_run_without_a_recorded_location_says_where_to_run_it(folder_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(folder_run[0], run)
    data = json.loads((run / "config.json").read_text())
    del data["data"]["location"]  # as runs recorded it before
    (run / "config.json").write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)
    assert eval_cli.main([str(run), "--iw-samples", "0"]) == 2
    err = capsys.readouterr().err
    assert "'folder:data/digits' is not found from" in err and "--dataset folder:PATH" in err
    monkeypatch.chdir(folder_run[1].parent.parent)  # where it was trained: found as before
    assert eval_cli.main([str(run), "--iw-samples", "0"]) == 0


def test_the_progress_bar_counts_a_folders_real_steps(folder_run, capsys, tmp_path):
    """27 images in batches of 8: 4 steps an epoch (the bar once showed steps_per_execution's
    32), and compiled calls end with the epoch."""
    run = tmp_path / "run"
    shutil.copytree(folder_run[0], run)
    assert 4 % json.loads((run / "metrics.json").read_text())["speed"]["steps_per_execution"] == 0
    assert train_main(["--resume", str(run), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "4/4 - " in out and "/32" not in out


# ---------------------------------------------------------------- a run that learned nothing


def test_a_run_that_learned_nothing_says_so_in_one_line(folder_run):
    run, _, lines = folder_run
    (warning,) = json.loads((run / "metrics.json").read_text())["warnings"]
    assert f"warning: {warning}" in lines and "\n" not in warning
    assert "only 4 optimizer steps (1 epoch of 4 batches)" in warning
    assert f"--epochs {-(-MIN_STEPS // 4)}" in warning


@pytest.mark.parametrize("config, n_train, evaluation, epochs, expected", [
    (Config(latent_dim=1000), 60_000, {"active_units": 0, "kl": 0.004}, 10,
     ["0 of 1000 latent units are active", "KL is 0.00 nats", "a smaller --latent-dim than 1000",
      "KL warm-up (--kl-warmup-epochs 10)"]),
    (Config(latent_dim=2, kl_warmup_epochs=5), 1_617, {"active_units": 0, "kl": 0.0}, 5,
     ["0 of 2 latent units", "only 65 optimizer steps (5 epochs of 13 batches)", "--epochs 24 for 300 steps",
      "a smaller --batch-size than 128"]),
    (Config(latent_dim=16), 4_500, {"active_units": 3, "kl": 0.05}, 30,
     ["learned little: the KL is 0.05 nats", "try more epochs, a smaller --latent-dim than 16 or KL warm-up"]),
    (Config(), 4_500, {"active_units": 2, "kl": 3.99}, 3,  # learning, but barely started
     ["this run took only 108 optimizer steps (3 epochs of 36 batches), likely too few to learn much; "
      "try more epochs (--epochs 9 for 300 steps)"]),
])
def test_what_a_run_that_learned_little_is_told_to_try(config, n_train, evaluation, epochs, expected):
    warning = learned_little(config, n_train, {"epochs": epochs, "eval": evaluation})
    assert warning.startswith("this run ") and "\n" not in warning
    for part in expected:
        assert part in warning


def test_a_run_that_learned_says_nothing():
    assert learned_little(Config(), 4_500, {"epochs": 10, "eval": {"active_units": 2, "kl": 4.9}}) is None


# ---------------------------------------------------------------- the real MNIST test set, offline


def test_an_offline_mnist_run_is_scored_on_the_real_test_set(tmp_path, monkeypatch, mnist_t10k_dir):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://storage.googleapis.com: None -- [Errno -3]")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    assert train_main(["--dataset", "mnist", "--arch", "mlp", "--hidden-dim", "16", "--epochs", "1",
                       "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    data = json.loads((run / "config.json").read_text())["data"]
    assert (data["n_train"], data["n_val"], data["n_test"]) == (4_500, 500, 10_000)  # test never validates
    assert data["validation"].startswith("validation: 10% of train held out")
    assert eval_cli.main([str(run), "--iw-samples", "0"]) == 0  # no path to type
    default = json.loads((run / "eval.json").read_text())
    assert default["n_examples"] == 10_000 and default["protocol"]["data"]["split"] == "test"
    assert "t10k, shipped with vae-cli" in default["protocol"]["data"]["source"]
    official = tmp_path / "official.json"
    assert eval_cli.main([str(run), "--iw-samples", "0", "--dataset", f"idx:{mnist_t10k_dir}",
                          "--json", str(official)]) == 0
    assert json.loads(official.read_text())["neg_elbo"] == default["neg_elbo"]  # the same 10,000 digits
    assert load_held_out(load_run(run)).split == "test"

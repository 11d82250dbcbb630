"""Numerical and runtime faults during training: a NaN loss keeps the last good epoch's weights
and figures and exits 1 with one line; extreme settings stay finite; a disk that fills up mid-run
is one line, exit 1, leaves no half-written file, and the run resumes once there is space."""

import json
import re

import h5py
import keras
import numpy as np
import pytest

from tests.faults import full_disk
from tests.test_resume import assert_nothing_half_written, history_rows, weights
from vae_cli.checkpoint import WEIGHTS_AT_ATTR
from vae_cli.cli.common import run_main
from vae_cli.cli.train import main
from vae_cli.config import resolve
from vae_cli.layers import Sampling
from vae_cli.train_run import train_new_run


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory):
    rng = np.random.default_rng(1)
    x = (np.kron(rng.random((300, 7, 7)) > 0.6, np.ones((4, 4))) * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, x_train=x[:240], x_test=x[240:])
    return path


def vae_train_with(callback, npz, out, **settings) -> int:
    """What `vae-train --arch mlp --hidden-dim 16 --dataset npz:NPZ --batch-size 60 --out OUT`
    does, with one more Keras callback (train_new_run's `callbacks`): how the faults below are
    injected. Returns the exit code; errors go to stderr as vae-train writes them."""
    config = resolve(None, {"arch": "mlp", "hidden_dim": 16, "dataset": f"npz:{npz}", "batch_size": 60,
                            "out": str(out), **settings})

    def work():
        train_new_run(config, callbacks=[callback])
        return 0

    return run_main("vae-train", work)


class PoisonWeightsAt(keras.callbacks.Callback):
    """At the start of a 0-based epoch, set the encoder's z_mean kernel to NaN: what divergence
    looks like (z_mean has no activation, so the very next loss is NaN)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.at = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            kernel = self.model.get_layer("encoder").get_layer("z_mean").kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_gaussian_likelihood_at_the_highest_learning_rate_stays_finite(gaussian_extreme_run):
    """The clipped log-variance keeps exp() finite even when lr=10 throws the weights around."""
    rows = history_rows(gaussian_extreme_run)
    assert len(rows) == 2 and all(np.isfinite(float(v)) for r in rows for v in r.values())
    metrics = json.loads((gaussian_extreme_run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and np.isfinite(metrics["eval"]["iw_nll"])
    config = json.loads((gaussian_extreme_run / "config.json").read_text())["config"]
    assert config["likelihood"] == "gaussian" and config["learning_rate"] == 10


def test_sampling_layer_keeps_exp_of_huge_log_variance_finite():
    layer = Sampling(seed=0)
    z = np.asarray(layer([np.zeros((4, 3), "float32"), np.full((4, 3), 1e4, "float32")]))
    assert np.isfinite(z).all() and np.isfinite(float(layer.losses[0]))


def test_nan_loss_keeps_the_last_good_epoch(small_npz, tmp_path, capsys):
    assert vae_train_with(PoisonWeightsAt(2), small_npz, tmp_path, epochs=4, learning_rate=0.003) == 1
    (run,) = tmp_path.iterdir()
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        # 4 steps per epoch run as one compiled call (steps_per_execution), so the loss is seen after step 4
        "vae-train: training stopped: the loss became nan at epoch 3, steps 1-4; the learning rate "
        "(0.003) is probably too high for this model, try --learning-rate 0.0003; "
        f"{run} holds the weights and figures of epoch 2, the last good one"]
    assert [r["epoch"] for r in history_rows(run)] == ["1", "2"]
    for figure in ("loss.png", "latent.png", "manifold.png", "samples.png", "reconstructions.png"):
        assert (run / figure).stat().st_size > 0
    final = weights(run / "vae.weights.h5")
    layer_keys = [k for k in final if k.startswith("layers/")]
    assert layer_keys and all(np.isfinite(final[k]).all() for k in layer_keys)
    # the checkpoint's model weights are the final ones (epoch 2), kept once: in vae.weights.h5
    assert not [k for k in weights(run / "checkpoint.weights.h5") if k.startswith("layers/")]
    with h5py.File(run / "checkpoint.weights.h5", "r") as f:
        assert json.loads(f.attrs[WEIGHTS_AT_ATTR])["file"] == "vae.weights.h5"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "epoch 3, steps 1-4" in metrics["failure"]
    assert metrics["epochs"] == 2
    assert_nothing_half_written(run)
    assert main(["--resume", str(run)]) == 2  # it would only repeat the same steps
    assert "stopped on a NaN/Inf loss" in capsys.readouterr().err


def test_nan_in_the_first_epoch_says_nothing_was_kept(small_npz, tmp_path, capsys):
    assert vae_train_with(PoisonWeightsAt(0), small_npz, tmp_path, epochs=2) == 1
    (run,) = tmp_path.iterdir()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at epoch 1, steps 1-4" in err[0] and "no epoch had finished" in err[0]
    assert not (run / "vae.weights.h5").exists()
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"


def test_disk_full_mid_run_is_one_line_and_the_run_resumes(small_npz, tmp_path, capsys, monkeypatch):
    with full_disk(tmp_path / "disk", monkeypatch) as disk:
        class FillDisk(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:
                    disk.fill()

        assert vae_train_with(FillDisk(), small_npz, disk.folder, epochs=2, seed=2) == 1
        (run,) = [p for p in disk.folder.iterdir() if p.is_dir()]
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert re.search(r"failed: No space left on device( \(\S+/history.csv\))?: the disk is full; "
                         r"free some space; epoch 1 is saved", err[0]), err[0]
        assert err[0].endswith(f"continue with: vae-train --resume {run}")
        disk.free()
        monkeypatch.undo()  # when the full disk is simulated: no more ENOSPC
        assert_nothing_half_written(run)
        assert [r["epoch"] for r in history_rows(run)] == ["1"]
        assert main(["--resume", str(run)]) == 0
        assert [r["epoch"] for r in history_rows(run)] == ["1", "2"]
        assert json.loads((run / "metrics.json").read_text())["status"] == "completed"

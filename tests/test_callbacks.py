"""The training callbacks (callbacks.py), each on its own: the KL warm-up on the model's weights
(its schedule, kl_weight, is in test_levers.py), where a NaN loss is reported, and what the run
writer leaves after every epoch (StopAtSafePoint is in test_signals.py)."""

import csv
import dataclasses
import time

import h5py
import keras
import numpy as np
import pytest
from matplotlib import image as mpimg

from vae_cli.callbacks import KLWarmup, NonFiniteLoss, RunWriter, StopOnNaN
from vae_cli.checkpoint import Progress, load_checkpoint, read_progress
from vae_cli.config import Config
from vae_cli.models import build_vae
from vae_cli.run import RunDir

SHAPE = (8, 8, 1)


@pytest.mark.parametrize("iw_train", [1, 3])  # 3: the KL terms are in IWAELoss too
def test_kl_warmup_sets_every_kl_weight_of_the_model_and_logs_it(iw_train):
    vae = build_vae(Config(arch="mlp", hidden_dim=8, iw_train=iw_train), SHAPE).vae
    betas = [v for v in vae.variables if v.path.endswith("/beta")]
    assert len(betas) == (2 if iw_train > 1 else 1)
    warmup = KLWarmup(vae, beta=4.0, warmup_epochs=2)
    for epoch, expected in [(0, 0.0), (1, 2.0), (2, 4.0), (7, 4.0)]:
        warmup.on_epoch_begin(epoch)
        assert [float(b.numpy()) for b in betas] == [expected] * len(betas)
        logs = {"loss": 1.0}
        warmup.on_epoch_end(epoch, logs)
        assert logs == {"loss": 1.0, "kl_weight": expected}  # a history.csv column during warm-up
    logs = {}
    KLWarmup(vae, beta=1.0, warmup_epochs=0).on_epoch_end(0, logs)
    assert logs == {}  # no warm-up, no column


def test_stop_on_nan_says_which_steps_of_which_epoch():
    stop = StopOnNaN()
    stop.on_epoch_begin(2)
    stop.on_train_batch_begin(0)
    stop.on_train_batch_end(3, {"loss": 1.5})  # finite: nothing happens
    stop.on_train_batch_begin(4)
    with pytest.raises(NonFiniteLoss, match=r"^the loss became nan at epoch 3, steps 5-8$"):
        stop.on_train_batch_end(7, {"loss": float("nan")})
    stop.on_train_batch_begin(8)
    with pytest.raises(NonFiniteLoss, match=r"^the loss became inf at epoch 3, step 9$"):
        stop.on_train_batch_end(8, {"loss": float("inf")})


class FixedValidation(keras.callbacks.Callback):
    """Replaces the logged validation numbers (the run writer runs after it, as after KLWarmup)."""

    def __init__(self, val_recon: list[float]):
        super().__init__()
        self.val_recon = val_recon

    def on_epoch_end(self, epoch, logs=None):
        logs.update(val_recon=self.val_recon[epoch], val_kl=1.0)


def fit_with_writer(tmp_path, val_recon, patience):
    models = build_vae(Config(arch="mlp", hidden_dim=8), SHAPE)
    models.vae.compile(optimizer="adam")
    progress = Progress()
    z = np.random.default_rng(0).standard_normal((6, 2)).astype("float32")
    writer = RunWriter(RunDir(tmp_path), progress, models.decoder, (z,), 3, patience=patience)
    x = np.random.default_rng(1).random((40, *SHAPE), dtype=np.float32)
    history = models.vae.fit(x[:32], validation_data=(x[32:],), batch_size=16, epochs=len(val_recon),
                             verbose=0, callbacks=[FixedValidation(val_recon), writer])
    return writer, progress, history


def test_run_writer_saves_every_epoch_and_stops_after_patience(tmp_path):
    writer, progress, history = fit_with_writer(tmp_path, [5.0, 4.0, 6.0, 7.0, 3.0, 3.0], patience=2)
    assert len(history.history["loss"]) == 4  # epoch 2 was the best; 3 and 4 were not: stop
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert [float(r["val_recon"]) for r in rows] == [5.0, 4.0, 6.0, 7.0]
    assert progress.best_val_loss == 5.0 and len(writer.train_seconds) == 4
    saved = read_progress(tmp_path / "checkpoint.weights.h5")[0]
    # the checkpoint holds its own epoch's time up to the epoch's end, the full time came later
    assert saved.epoch_seconds[:-1] == progress.epoch_seconds[:-1]
    assert saved.epoch_seconds[-1] < progress.epoch_seconds[-1]
    timings = {"epoch_seconds": progress.epoch_seconds, "fit_seconds": progress.fit_seconds}
    assert dataclasses.replace(saved, **timings) == progress
    assert (tmp_path / "best.weights.h5").is_file()
    for epoch in range(1, 5):  # 6 samples, 3 a row, each 8x8 with 1-pixel gaps (plots.tile_gap), enlarged 3x
        assert mpimg.imread(tmp_path / "samples" / f"epoch-{epoch:03d}.png").shape[:2] == (3 * 17, 3 * 26)


class SlowEpochEnd(keras.callbacks.Callback):
    """End-of-epoch work that takes at least `seconds` (like TensorBoard or a slow disk)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.seconds)


def test_epoch_seconds_include_all_end_of_epoch_work_and_the_files_reload(tmp_path):
    models = build_vae(Config(arch="mlp", hidden_dim=8), SHAPE)
    models.vae.compile(optimizer="adam")
    progress = Progress()
    z = np.random.default_rng(0).standard_normal((6, 2)).astype("float32")
    writer = RunWriter(RunDir(tmp_path), progress, models.decoder, (z,), 3)
    x = np.random.default_rng(1).random((40, *SHAPE), dtype=np.float32)
    models.vae.fit(x[:32], validation_data=(x[32:],), batch_size=16, epochs=3, verbose=0,
                   callbacks=[FixedValidation([3.0, 2.0, 1.0]), writer, SlowEpochEnd(0.3)])  # best: the last
    assert all(s >= 0.3 for s in progress.epoch_seconds)  # a later callback's work counts too
    assert all(t < s for t, s in zip(writer.train_seconds, progress.epoch_seconds))
    # the files written from the captured arrays reload exactly: the checkpoint with the optimizer
    # state, best.weights.h5 the model weights only (weights.py)
    checkpoint = build_vae(Config(arch="mlp", hidden_dim=8), SHAPE).vae
    checkpoint.compile(optimizer="adam")
    load_checkpoint(tmp_path / "checkpoint.weights.h5", checkpoint)
    assert int(np.asarray(checkpoint.optimizer.iterations)) == 6  # 3 epochs of 2 steps
    best = build_vae(Config(arch="mlp", hidden_dim=8), SHAPE).vae
    best.load_weights(tmp_path / "best.weights.h5")
    with h5py.File(tmp_path / "best.weights.h5", "r") as f:
        assert "optimizer" not in f
    for model in (checkpoint, best):
        for a, b in zip(model.get_weights(), models.vae.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_run_writer_refuses_a_non_finite_validation_number(tmp_path):
    with pytest.raises(NonFiniteLoss, match=r"^val_recon became nan at the end of epoch 1$"):
        fit_with_writer(tmp_path, [float("nan")], patience=0)
    assert not (tmp_path / "checkpoint.weights.h5").exists()

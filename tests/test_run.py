"""The run directory: the one loader rebuilds what vae-train saved, and refuses everything else
with one clear line (exit 2 from every command), never executing what it reads; new run
directories never collide; the lock keeps a second trainer out."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from vae_cli.cli import eval as eval_cli
from vae_cli.cli import plot as plot_cli
from vae_cli.cli import sample as sample_cli
from vae_cli.config import FORMAT_VERSION, Config
from vae_cli.errors import UsageError
from vae_cli.models import build_vae
from vae_cli.run import RunDir, load_held_out, load_run, read_history, run_lock, save_config

ROOT = Path(__file__).resolve().parents[1]

SHAPE = (8, 8, 1)


PLAIN = Config(arch="mlp", hidden_dim=16)


def make_run(path, config=PLAIN, num_classes=None, shape=SHAPE):
    """A run directory as vae-train leaves it (config.json + weights), without training."""
    path.mkdir()
    models = build_vae(config, shape, num_classes)
    save_config(RunDir(path), config, shape, num_classes, {"requested": config.dataset})
    models.vae.save_weights(path / "vae.weights.h5")
    return path, models


def test_round_trip_gives_identical_outputs(tmp_path):
    path, models = make_run(tmp_path / "run", Config(arch="conv", hidden_dim=16, conv_filters=(4,)))
    run = load_run(path)
    assert run.config.arch == "conv" and run.input_shape == SHAPE and not run.conditional
    z = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(run.decoder(z)), np.asarray(models.decoder(z)))


def test_conditional_round_trip(tmp_path):
    path, models = make_run(tmp_path / "run", Config(arch="mlp", hidden_dim=16, conditional=True), 3)
    run = load_run(path)
    assert run.conditional and run.num_classes == 3
    inputs = [np.zeros((2, 2), np.float32), np.eye(3, dtype=np.float32)[[0, 2]]]
    np.testing.assert_array_equal(np.asarray(run.decoder(inputs)), np.asarray(models.decoder(inputs)))


def edit_config(path, **changes):
    meta = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if key in meta:
            meta[key] = value
        else:
            meta["config"][key] = value
    (path / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, message", [
    (lambda p: shutil.rmtree(p), "is not a directory"),
    (lambda p: (p / "config.json").unlink(), "config.json is missing"),
    (lambda p: (p / "config.json").write_text('{"format_version": 1, "config": {'), "corrupt JSON"),
    (lambda p: (p / "config.json").write_text("[1, 2]"), "expected a JSON object"),
    (lambda p: edit_config(p, format_version=FORMAT_VERSION + 1), "newer than this vae-cli understands"),
    (lambda p: edit_config(p, format_version=None), "no format_version"),
    (lambda p: edit_config(p, warp_drive=True), "unknown setting(s) 'warp_drive'"),
    (lambda p: edit_config(p, latent_dim=-1), "latent_dim: expected an integer"),
    (lambda p: edit_config(p, input_shape=[8, 8]), "input_shape must be [H, W, C]"),
    (lambda p: edit_config(p, conditional=True), "a conditional run needs num_classes"),
    (lambda p: (p / "vae.weights.h5").unlink(), "vae.weights.h5 is missing"),
    (lambda p: (p / "vae.weights.h5").write_bytes(b"PK\x03\x04 a zip, not hdf5"), "not an HDF5 weights file"),
    (lambda p: (p / "vae.weights.h5").write_bytes((p / "vae.weights.h5").read_bytes()[:3000]),
     "truncated or corrupt"),
    (lambda p: edit_config(p, latent_dim=3), "does not match config.json"),
    (lambda p: edit_config(p, hidden_dim=32), "does not match config.json"),
])
def test_refusals_are_one_line_usage_errors(tmp_path, damage, message):
    path, _ = make_run(tmp_path / "run")
    damage(path)
    with pytest.raises(UsageError) as info:
        load_run(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_weights_of_another_architecture_are_refused_even_when_keras_would_load_them(tmp_path):
    # The conv run's dense layers have exactly the mlp's shapes (8x8 -> 4x4x4 = 64 features), so
    # keras's own load_weights accepts the file silently and leaves a wrong model.
    conv, _ = make_run(tmp_path / "conv", Config(arch="conv", hidden_dim=16, conv_filters=(4,)))
    mlp, _ = make_run(tmp_path / "mlp", Config(arch="mlp", hidden_dim=16))
    keras_model = build_vae(Config(arch="mlp", hidden_dim=16), SHAPE).vae
    keras_model.load_weights(conv / "vae.weights.h5")  # no error from keras itself
    shutil.copy(conv / "vae.weights.h5", mlp / "vae.weights.h5")
    with pytest.raises(UsageError, match=r"does not match config.json: the file holds 17 arrays, .* has 11"):
        load_run(mlp)


def write_hostile_keras_file(path, marker):
    """A real .keras model whose Lambda writes `marker` whenever the model is rebuilt."""
    payload = eval(f"lambda t: (open({str(marker)!r}, 'w').write('code ran'), t)[1]")
    z = keras.Input((2,), name="z")
    keras.Model(z, keras.layers.Lambda(payload, name="payload")(z), name="decoder").save(path)
    marker.unlink()  # building the model ran it once; start clean


def test_hostile_keras_file_never_runs(tmp_path):
    marker = tmp_path / "marker.txt"
    hostile = tmp_path / "hostile.keras"
    write_hostile_keras_file(hostile, marker)
    with pytest.raises(ValueError, match="Lambda"):
        keras.models.load_model(hostile, safe_mode=True)
    assert not marker.exists()
    # our loader, on a run whose .keras files were replaced by the hostile one
    path, _ = make_run(tmp_path / "run")
    for name in ("encoder.keras", "decoder.keras"):
        shutil.copy(hostile, path / name)
    load_run(path)
    assert not marker.exists()
    # the file really is hostile: only an explicit safe_mode=False runs it
    keras.models.load_model(hostile, safe_mode=False)
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("main, extra", [(plot_cli.main, []), (sample_cli.main, ["-n", "2"]),
                                         (eval_cli.main, ["--iw-samples", "0"])])
def test_every_command_refuses_a_bad_run_with_exit_2(tmp_path, capsys, main, extra):
    path, _ = make_run(tmp_path / "run")
    edit_config(path, format_version=FORMAT_VERSION + 1)
    assert main([str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert "newer than this vae-cli understands" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "vae.weights.h5"]  # nothing written


def test_held_out_data_must_match_the_run(tmp_path, tiny_npz):
    path, _ = make_run(tmp_path / "run")
    with pytest.raises(UsageError, match="has 28x28x1 images but this run was trained on 8x8x1"):
        load_held_out(load_run(path), f"npz:{tiny_npz}")
    unlabelled = tmp_path / "x.npz"
    np.savez(unlabelled, x=np.zeros((10, 8, 8), np.uint8))
    cond, _ = make_run(tmp_path / "cond", Config(arch="mlp", hidden_dim=16, conditional=True), 3)
    with pytest.raises(UsageError, match="has no labels, but this conditional run needs"):
        load_held_out(load_run(cond), f"npz:{unlabelled}")
    labelled = tmp_path / "xy.npz"
    np.savez(labelled, x=np.zeros((10, 8, 8), np.uint8), y=np.arange(10) % 5)
    with pytest.raises(UsageError, match="has label 4, but this run knows labels 0..2 only"):
        load_held_out(load_run(cond), f"npz:{labelled}")


def test_held_out_images_are_ones_the_run_never_trained_on(tmp_path):
    data = tmp_path / "digits.npz"
    np.savez(data, x=np.zeros((40, 8, 8), np.uint8))
    path, _ = make_run(tmp_path / "run", Config(arch="mlp", hidden_dim=16, dataset=f"npz:{data}"))
    run = load_run(path)
    own = load_held_out(run)  # the validation split training used
    assert len(own.x) == 4 and own.split.startswith("validation: 10% of train held out")
    assert len(load_held_out(run, f"npz:{tmp_path}/./digits.npz").x) == 4  # the same file
    other = tmp_path / "other.npz"
    shutil.copy(data, other)
    assert len(load_held_out(run, f"npz:{other}").x) == 40  # data it never saw: all of it


def test_the_real_mnist_test_folder_is_evaluated_whole(tmp_path, mnist_t10k_dir):
    path, _ = make_run(tmp_path / "run", Config(arch="mlp", hidden_dim=16, dataset="mnist-5k"),
                       shape=(28, 28, 1))
    held = load_held_out(load_run(path), f"idx:{mnist_t10k_dir}")
    assert held.x.shape == (10_000, 28, 28, 1) and held.split.startswith("all 10,000 images")


def test_read_history(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n1,3.5,4.0\n2,2.5,3.0\n")
    assert read_history(tmp_path) == {"loss": [3.5, 2.5], "val_loss": [4.0, 3.0]}
    (tmp_path / "history.csv").write_text("epoch,loss\n1,oops\n")
    with pytest.raises(UsageError, match="history.csv: unreadable"):
        read_history(tmp_path)
    (tmp_path / "history.csv").unlink()
    with pytest.raises(UsageError, match="history.csv is missing"):
        read_history(tmp_path)


def test_runs_started_in_the_same_second_get_different_directories(tmp_path):
    code = ("import sys, time\nfrom vae_cli.run import RunDir\n"
            "time.strftime = lambda *a: '20250101-000000'\n"
            "print(RunDir.create(sys.argv[1], 'same').path)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(6)]
    paths = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert len(set(paths)) == 6 and all(Path(p).is_dir() for p in paths)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["20250101-000000-same"] + [f"20250101-000000-same-{i}" for i in range(2, 7)])


def test_run_lock_keeps_a_second_trainer_out_until_the_first_lets_go(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(UsageError, match="is being trained by another vae-train process; wait for it"):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released on exit
        pass
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="file is not a directory; give a run directory made by vae-train"):
        with run_lock(tmp_path / "file"):
            pass


def test_run_lock_of_a_killed_process_is_released(tmp_path):
    """A trainer killed with SIGKILL runs no clean-up; the lock must not outlive it."""
    code = ("import sys\nfrom vae_cli.run import run_lock\n"
            "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match="is being trained by another vae-train process"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.communicate(timeout=60)
    with run_lock(tmp_path):
        pass

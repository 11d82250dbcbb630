"""The JAX engine next to TensorFlow: a JAX run writes everything a run promises without
importing TensorFlow, resumes bit for bit, stops on NaN, trains in mixed precision and
data-parallel over two devices; runs of either engine are read by either with the same numbers;
`auto` picks by the measured table; conflicting engines are refused in one line.

A process holds one Keras engine, and this one (pytest) imported Keras on TensorFlow, so the
JAX side runs in subprocesses: a few, each doing several things, to keep the suite short.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from vae_cli.cli.eval import main as eval_main
from vae_cli.cli.plot import main as plot_main
from vae_cli.cli.sample import main as sample_main
from vae_cli.cli.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}
    for name in ("KERAS_BACKEND", "TF_CONFIG", "XLA_FLAGS"):
        if name not in extra:
            env.pop(name, None)
    return env


def run_python(code: str, *args: str, **env) -> dict:
    """Run `code` in a fresh interpreter; it prints one line `RESULT <json>`."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=_env(**env), timeout=TIMEOUT_S, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def weights(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def images_npz(tmp_path_factory) -> Path:
    """300 train / 60 test 12x12 blob images with 3 labels: seconds to train."""
    rng = np.random.default_rng(0)
    base = rng.random((360, 3, 3)) > 0.5
    x = (np.kron(base, np.ones((4, 4))) * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x_train=x[:300], y_train=np.arange(300) % 3, x_test=x[300:], y_test=np.arange(60) % 3)
    return path


def jax_train_args(npz: Path, out: Path, epochs: int, name: str) -> list[str]:
    return ["--backend", "jax", "--arch", "mlp", "--hidden-dim", "16", "--latent-dim", "2", "--dataset", f"npz:{npz}",
            "--epochs", str(epochs), "--batch-size", "32", "--seed", "1", "--out", str(out), "--name", name]


TRAIN = """
import sys
from vae_cli.cli.train import main
code = main(sys.argv[1:])
print("RESULT", __import__("json").dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
"""


@pytest.fixture(scope="module")
def jax_run(images_npz, tmp_path_factory) -> tuple[Path, dict]:
    """vae-train --backend jax, 3 epochs, in its own process; tests must not modify it."""
    out = tmp_path_factory.mktemp("jax-run")
    result = run_python(TRAIN, *jax_train_args(images_npz, out, 3, "jax"))
    (run,) = out.iterdir()
    return run, result


def test_a_jax_run_holds_what_every_run_promises_without_importing_tensorflow(jax_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, result = jax_run
    assert result == {"code": 0, "tensorflow": False}
    assert json.loads((run / "config.json").read_text())["config"]["backend"] == "jax"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["backend"] == {"name": "jax", "reason": "requested"}
    assert metrics["speed"]["backend"] == "jax" and "jax" in metrics["versions"]
    assert "tensorflow" not in metrics["versions"]
    assert len(metrics["epoch_seconds"]) == 3 and np.isfinite(metrics["eval"]["neg_elbo"])
    for name in ("vae.weights.h5", "best.weights.h5", "checkpoint.weights.h5", "encoder.keras", "decoder.keras",
                 "history.csv", "loss.png", "latent.png", "manifold.png", "samples.png", "reconstructions.png"):
        assert (run / name).stat().st_size > 0, name
    assert sorted(os.listdir(run / "samples")) == ["epoch-001.png", "epoch-002.png", "epoch-003.png"]
    for part, tag in (("train", "epoch_loss"), ("validation", "epoch_loss")):
        events = EventAccumulator(str(run / "tensorboard" / part))
        events.Reload()
        assert [e.step for e in events.Scalars(tag)] == [0, 1, 2]
    history = [float(line.split(",")[0]) for line in (run / "history.csv").read_text().splitlines()[1:]]
    assert history == [1.0, 2.0, 3.0]


JAX_SIDE = """
import json, os, shutil, sys
import keras, numpy as np
from vae_cli.cli.eval import main as eval_main
from vae_cli.config import resolve
from vae_cli.errors import TrainingFailed
from vae_cli.train_run import resume_run, train_new_run
npz, out, *to_evaluate = sys.argv[1:]
common = {"backend": "jax", "arch": "mlp", "hidden_dim": 16, "latent_dim": 2, "dataset": f"npz:{npz}",
          "batch_size": 32, "seed": 1, "out": out}
quiet = lambda *a: None
result = {}

# uninterrupted 3 epochs, and 2 epochs resumed to 3 (in this one process: the same XLA set-up)
result["whole"] = str(train_new_run(resolve(None, {**common, "epochs": 3, "name": "whole"}), log=quiet).run_path)
cut = train_new_run(resolve(None, {**common, "epochs": 2, "name": "cut"}), log=quiet).run_path
resume_run(str(cut), None, {"epochs": 3}, log=quiet)
result["cut"] = str(cut)

class PoisonWeightsAt(keras.callbacks.Callback):  # as tests/test_faults.py: divergence in epoch 2
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            kernel = self.model.get_layer("encoder").get_layer("z_mean").kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))

try:
    train_new_run(resolve(None, {**common, "epochs": 2, "name": "nan"}), log=quiet, callbacks=[PoisonWeightsAt()])
except TrainingFailed as e:
    result["failure"] = str(e)

result["mixed"] = train_new_run(resolve(None, {**common, "epochs": 1, "name": "mixed", "precision": "mixed",
                                               "likelihood": "gaussian-learned"}), log=quiet).metrics

result["eval"] = {}
for run in to_evaluate:  # runs of either engine, read on this one
    assert eval_main([run, "--iw-samples", "5"]) == 0
    result["eval"][run] = json.load(open(os.path.join(run, "eval.json")))

sys.path.insert(0, "tests")
import jax_data_parallel  # one step on one device and on both (XLA_FLAGS made two)
result["parallel"] = jax_data_parallel.results()
print("RESULT", json.dumps(result))
"""


@pytest.fixture(scope="module")
def jax_side(images_npz, jax_run, mlp_run, tmp_path_factory) -> dict:
    """Everything else the tests below check on JAX, in one process with two CPU devices: four
    trainings (on one device), the evaluation of a JAX run and of two TensorFlow runs, mlp and
    conv (copies, evaluated again here on TensorFlow), and one step on one device and on both."""
    out = tmp_path_factory.mktemp("jax-side")
    copies = tmp_path_factory.mktemp("read")
    runs = [copies / "jax", copies / "tf", copies / "tf-conv"]
    shutil.copytree(jax_run[0], runs[0])
    shutil.copytree(mlp_run, runs[1])
    conv_out = tmp_path_factory.mktemp("tf-conv")  # the fused conv layers compute differently per engine
    assert train_main(["--backend", "tensorflow", "--arch", "conv", "--conv-filters", "4,8", "--hidden-dim", "16",
                       "--dataset", f"npz:{images_npz}", "--epochs", "1", "--out", str(conv_out)]) == 0
    shutil.copytree(next(conv_out.iterdir()), runs[2])
    result = run_python(JAX_SIDE, images_npz, out, *runs, KERAS_BACKEND="jax",
                        XLA_FLAGS="--xla_force_host_platform_device_count=2")
    return {**result, "out": out, "runs": runs}


def test_runs_of_either_engine_read_the_same_on_both(jax_side, tmp_path):
    """vae-eval of a JAX run and of TensorFlow runs, on TensorFlow (here) and on JAX: the same
    -ELBO and IW bound to float tolerance; vae-plot and vae-sample read the JAX run too."""
    for run in jax_side["runs"]:
        theirs = jax_side["eval"][str(run)]
        assert eval_main([str(run), "--iw-samples", "5"]) == 0
        on_tf = json.loads((run / "eval.json").read_text())
        for key in ("neg_elbo", "recon", "kl", "iw_nll"):
            assert theirs[key] == pytest.approx(on_tf[key], rel=1e-5, abs=1e-4), (run.name, key)
        assert theirs["active_units"] == on_tf["active_units"]
    jax_copy = jax_side["runs"][0]
    assert plot_main([str(jax_copy), "--what", "samples"]) == 0
    assert (jax_copy / "plots" / "samples.png").stat().st_size > 0
    assert sample_main([str(jax_copy), "-n", "4", "--out", str(tmp_path / "samples")]) == 0
    assert len(list((tmp_path / "samples").glob("*.png"))) >= 4


def test_a_jax_run_resumes_bit_for_bit(jax_side):
    whole, cut = Path(jax_side["whole"]), Path(jax_side["cut"])
    assert json.loads((cut / "metrics.json").read_text())["resumed_at_epochs"] == [2]
    assert (cut / "history.csv").read_text() == (whole / "history.csv").read_text()
    for name in ("vae.weights.h5", "checkpoint.weights.h5"):
        ref, got = weights(whole / name), weights(cut / name)
        assert ref.keys() == got.keys() and all(np.array_equal(ref[k], got[k]) for k in ref), name


def test_a_nan_loss_on_jax_keeps_the_last_good_epoch(jax_side):
    assert "the loss became nan at epoch 2" in jax_side["failure"]
    (run,) = Path(jax_side["out"]).glob("*-nan")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["epochs"] == 1
    final = weights(run / "vae.weights.h5")
    assert all(np.isfinite(v).all() for k, v in final.items() if k.startswith("layers/"))


def test_mixed_precision_on_a_cpu_trains_bfloat16_with_float32_terms(jax_side):
    metrics = jax_side["mixed"]
    assert metrics["precision"] == {"name": "mixed", "dtype_policy": "mixed_bfloat16"}
    assert metrics["status"] == "completed" and all(np.isfinite(v) for v in metrics["final"].values())
    assert np.isfinite(metrics["eval"]["neg_elbo"])


def test_mixed_precision_keeps_the_elbo_terms_in_float32_on_tensorflow():
    import keras

    from vae_cli.config import Config
    from vae_cli.models import build_vae

    keras.config.set_dtype_policy("mixed_bfloat16")  # what the trainer sets for --precision mixed on a CPU
    try:
        models = build_vae(Config(arch="conv", conv_filters=(4,), hidden_dim=8, latent_dim=2), (12, 12, 1))
        models.vae.compile(optimizer="adam")
    finally:
        keras.config.set_dtype_policy("float32")
    encoder = models.encoder
    assert encoder.get_layer("conv1").compute_dtype == "bfloat16"
    for layer in (encoder.get_layer("z_mean"), encoder.get_layer("z"), models.vae.get_layer("kl"),
                  models.vae.get_layer("reconstruction"), models.decoder.get_layer("x_hat")):
        assert layer.compute_dtype == "float32", layer.name
    x = np.random.default_rng(0).random((16, 12, 12, 1), dtype=np.float32)
    out = models.vae(x)
    dtypes = {k: keras.backend.standardize_dtype(v.dtype) for k, v in out.items()}
    assert dtypes == {"x_hat": "float32", "recon": "float32", "kl": "float32"}
    history = models.vae.fit(x, batch_size=8, epochs=2, verbose=0).history
    assert all(np.isfinite(v).all() for v in history.values()) and history["loss"][1] < history["loss"][0]


def test_data_parallel_step_on_two_devices_equals_one_device(jax_side):
    single, parallel = jax_side["parallel"]["single"], jax_side["parallel"]["mirrored"]
    assert (single["replicas"], parallel["replicas"], parallel["name"]) == (1, 2, "mirrored")
    assert single["largest_update"] > 1e-3  # the step moved the weights
    assert parallel["loss"] == pytest.approx(single["loss"], rel=1e-6)
    for a, b in zip(single["weights"], parallel["weights"]):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


AUTO = """
import json, sys
from vae_cli import backend
choices = {f"{arch}-{gpu}": backend.choose("auto", arch, gpu=gpu).__dict__
           for arch in ("mlp", "conv", "strided") for gpu in (False, True)}
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
choices["named"] = backend.choose("auto", "mlp", gpu=False).__dict__
import vae_cli.cli.train as cli
cli.build_parser().format_help()
print("RESULT", json.dumps({"choices": choices, "heavy": sorted(m for m in ("keras", "jax", "tensorflow")
                                                              if m in sys.modules)}))
"""


def test_auto_picks_the_engine_measured_faster_and_help_imports_no_engine():
    result = run_python(AUTO)
    assert result["heavy"] == []  # the choice and --help come before any engine loads
    choices = result["choices"]
    assert choices["mlp-False"]["name"] == "jax" and "mlp on CPU measured" in choices["mlp-False"]["reason"]
    assert "x tensorflow" in choices["mlp-False"]["reason"]
    assert choices["conv-False"]["name"] == "tensorflow" and "x jax" in choices["conv-False"]["reason"]
    assert choices["named"] == {"name": "tensorflow", "reason": "auto: KERAS_BACKEND=tensorflow is set"}
    for arch in ("mlp", "conv", "strided"):  # nothing measured on a GPU yet
        assert choices[f"{arch}-True"] == {"name": "tensorflow",
                                           "reason": f"auto: {arch} on GPU is unmeasured, so the default"}


def test_conflicting_engines_are_refused_in_one_line(tmp_path, capsys, monkeypatch):
    import keras

    assert keras.backend.backend() == "tensorflow"  # this process's Keras (conftest)
    assert train_main(["--backend", "jax", "--arch", "mlp", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vae-train: error: --backend jax: Keras is already imported on tensorflow in this process and "
                   "cannot switch; use --backend tensorflow, or start a new process"]
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert train_main(["--backend", "jax", "--strategy", "multiworker", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "add --backend tensorflow" in err[0]
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


def test_the_engine_benchmark_table_and_the_measured_entries_it_suggests():
    from benchmarks.gpu import table

    def row(arch, engine, precision, speed, device="gpu", code=0):
        return {"arch": arch, "engine": engine, "precision": precision, "exit_code": code, "device": device,
                "dtype_policy": "float32" if precision == "float32" else "mixed_float16",
                "epoch_samples_per_second": speed, "train_samples_per_second": speed * 1.2,
                "first_epoch_seconds": 3.0, "start_seconds": 5.0, "wind_down_seconds": 2.0}

    results = [row("mlp", "tensorflow", "float32", 100.0), row("mlp", "tensorflow", "float32", 120.0),
               row("mlp", "jax", "float32", 330.0), row("mlp", "jax", "mixed", 440.0),
               row("conv", "tensorflow", "float32", 50.0), row("conv", "jax", "float32", 10.0, device="cpu"),
               row("conv", "jax", "mixed", 0.0, code=1)]
    text, measured = table(results)
    lines = text.splitlines()
    # ratio of medians against TensorFlow float32 of the same arch: 330 / median(100, 120)
    assert any(line.startswith("| mlp | float32 (float32) | jax | gpu | 330 | 396 | 3.00 |") for line in lines)
    assert any("| mlp | mixed (mixed_float16) | jax | gpu | 440 |" in line and "| 4.00 |" in line for line in lines)
    assert any(line.startswith("| conv | mixed | jax | - | failed |") for line in lines)
    # only float32, and a row per device: JAX without CUDA ran on the CPU of a GPU machine
    assert measured == {("gpu", "mlp"): {"tensorflow": 110.0, "jax": 330.0}, ("gpu", "conv"): {"tensorflow": 50.0},
                        ("cpu", "conv"): {"jax": 10.0}}


def test_the_jax_feed_keys_batches_by_seed_and_epoch_and_keeps_every_validation_image():
    from vae_cli.feed import array_feed, even_batch_size

    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    y = np.arange(10) % 3
    whole = array_feed(x, y, x[:7], y[:7], batch_size=4, seed=3, first_epoch=0, epochs=3, num_classes=3)
    batches = [b[0] for b in whole.train]
    assert whole.steps == 2 and len(batches) == 6  # full batches only: 2 of 4 per epoch (one shape)
    assert all(b["x"].shape == (4, 1, 1, 1) and b["label"].shape == (4, 3) for b in batches)
    for b in batches:  # each image with its own one-hot label
        np.testing.assert_array_equal(b["label"].argmax(1), b["x"].ravel().astype(int) % 3)
    epoch_0 = np.concatenate([b["x"].ravel() for b in batches[:2]])
    assert len(set(epoch_0)) == 8  # a permutation's first 8: no image twice in an epoch
    resumed = array_feed(x, y, x[:7], y[:7], batch_size=4, seed=3, first_epoch=2, epochs=3, num_classes=3)
    for a, b in zip([b[0] for b in resumed.train], batches[4:]):  # epoch 2 alone: the same batches
        np.testing.assert_array_equal(a["x"], b["x"])
    validation = whole.validation[0]
    assert len(validation["x"]) == 7 and whole.validation_batch_size == 4  # every held-out image
    assert even_batch_size(500, 128) == 125 and even_batch_size(500, 128, replicas=2) == 126


def test_a_run_from_before_engines_reads_and_resumes_as_tensorflow(mlp_run, tmp_path):
    from vae_cli.resume import plan_resume
    from vae_cli.run import read_run_config

    run = tmp_path / "old"
    shutil.copytree(mlp_run, run)
    meta = json.loads((run / "config.json").read_text())
    del meta["config"]["backend"], meta["config"]["precision"]  # as vae-cli wrote it before this change
    (run / "config.json").write_text(json.dumps(meta))
    assert read_run_config(run)[0].backend == "tensorflow"
    assert plan_resume(str(run), None, {"epochs": 4}).config.backend == "tensorflow"  # its own engine

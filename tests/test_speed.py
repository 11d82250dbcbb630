"""Speed without timings: the settings the trainer really uses and the fused upsample-conv layer's
math against the two layers it replaces (the benchmarks' own tests: tests/test_benchmarks.py)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from vae_cli.cli.train import main
from vae_cli.config import Config
from vae_cli.errors import UsageError
from vae_cli.layers import NarrowConv2D, UpsampleConv2D
from vae_cli.models import build_vae
from vae_cli.backend import Engine
from vae_cli.speed import choose, speed_line


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("arch, gpu, jit", [("mlp", False, True), ("conv", False, False),
                                            ("mlp", True, True), ("conv", True, True)])
def test_automatic_settings_per_device(arch, gpu, jit):
    s = choose(Config(arch=arch), gpu=gpu)
    assert s.to_dict() == {"device": "gpu" if gpu else "cpu", "backend": "tensorflow", "steps_per_execution": 32,
                           "jit_compile": jit, "precision": "float32"}


@pytest.mark.parametrize("arch", ["mlp", "conv", "strided"])
def test_the_jax_engine_always_compiles_the_step_and_the_speed_line_says_why(arch):
    s = choose(Config(arch=arch, augment_shift=2), Engine("jax", "auto: measured faster"), gpu=False)
    assert s.jit_compile is True and s.backend == "jax"  # without XLA Keras runs JAX op by op
    assert "backend jax (auto: measured faster)" in speed_line(s)
    assert choose(Config(arch=arch, jit_compile="off"), Engine("jax", "requested"), gpu=False).jit_compile is False


@pytest.mark.parametrize("precision, gpu, policy", [("float32", False, "float32"), ("mixed", False, "mixed_bfloat16"),
                                                    ("mixed", True, "mixed_float16")])
def test_mixed_precision_is_float16_on_a_gpu_and_bfloat16_on_a_cpu(precision, gpu, policy):
    assert choose(Config(precision=precision), gpu=gpu).precision == policy


@pytest.mark.parametrize("epoch_steps, most, expected", [(36, 32, 18), (469, 32, 7), (4, 32, 4), (37, 32, 1),
                                                         (64, 32, 32), (None, 32, 32), (36, 5, 4)])
def test_a_compiled_call_never_runs_past_the_end_of_an_epoch(epoch_steps, most, expected):
    s = choose(Config(steps_per_execution=most), gpu=False, epoch_steps=epoch_steps)
    assert s.steps_per_execution == expected
    assert epoch_steps is None or epoch_steps % expected == 0


def test_no_xla_under_tf_distribute_unless_asked():
    assert choose(Config(arch="mlp"), gpu=True, distributed=True).jit_compile is False
    assert choose(Config(arch="mlp", jit_compile="on"), gpu=False, distributed=True).jit_compile is True


def test_flags_override_the_automatic_settings():
    s = choose(Config(arch="mlp", steps_per_execution=4, jit_compile="off"), gpu=True)
    assert (s.steps_per_execution, s.jit_compile) == (4, False)
    assert choose(Config(arch="conv", jit_compile="on"), gpu=False).jit_compile is True


@pytest.mark.parametrize("args, message", [
    (["--steps-per-execution", "-1"], "--steps-per-execution: expected an integer from 0"),
    (["--jit-compile", "maybe"], "argument --jit-compile: invalid choice"),
])
def test_bad_speed_flags_exit_2(tmp_path, capsys, args, message):
    try:
        code = main([*args, "--out", str(tmp_path / "runs")])
    except SystemExit as e:
        code = e.code
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_steps_per_execution_is_validated_in_config():
    with pytest.raises(UsageError, match="steps_per_execution: expected an integer from 0"):
        Config(steps_per_execution=-3)


def test_trainer_compiles_with_the_settings_it_records(tmp_path, tiny_npz, monkeypatch):
    """mlp on CPU: XLA on (automatic) and --steps-per-execution 3, which becomes 2 because an
    epoch of 64 images in batches of 16 has 4 steps, as compiled and as recorded."""
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("the automatic values asserted here are the CPU ones")
    seen = {}
    compile_ = keras.Model.compile

    def spy(self, *args, **kwargs):
        if self.name == "vae":
            seen.update(kwargs)
        return compile_(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "compile", spy)
    out = tmp_path / "runs"
    assert main(["--arch", "mlp", "--hidden-dim", "16", "--epochs", "1", "--batch-size", "16",
                 "--dataset", f"npz:{tiny_npz}", "--out", str(out), "--steps-per-execution", "3"]) == 0
    assert (seen["steps_per_execution"], seen["jit_compile"]) == (2, True)
    (run,) = out.iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["speed"] == {"device": "cpu", "backend": "tensorflow", "steps_per_execution": 2, "jit_compile": True,
                                "precision": "float32"}
    assert metrics["train_samples_per_second"] > 0 and metrics["epoch_samples_per_second"] > 0
    assert len(metrics["train_seconds"]) == len(metrics["epoch_seconds"]) == 1
    assert metrics["train_seconds"][0] <= metrics["epoch_seconds"][0]


# ---------------------------------------------------------------- the faster layers


def _check_same_as(layer, reference_layers, shape, filters):
    """Same weights -> same outputs and same gradients as the standard Keras layers."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal(shape).astype(np.float32))
    layer(x)
    layer.bias.assign(rng.standard_normal(filters).astype(np.float32))
    conv = layers.Conv2D(filters, 3, padding="same", activation="relu")
    reference = keras.Sequential([*reference_layers, conv])
    reference(x)
    conv.set_weights([layer.kernel.numpy(), layer.bias.numpy()])

    def value_and_grads(model, variables):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x)
            loss = tf.reduce_sum(y * tf.cos(y))
        return y, tape.gradient(loss, [x, *variables])

    y1, g1 = value_and_grads(layer, [layer.kernel, layer.bias])
    y2, g2 = value_and_grads(reference, [conv.kernel, conv.bias])
    assert y1.shape == y2.shape
    np.testing.assert_allclose(y1, y2, atol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    return y1.shape


@pytest.mark.parametrize("shape", [(2, 7, 7, 5), (3, 4, 9, 2), (1, 1, 1, 3)])
def test_upsample_conv_equals_upsampling_then_conv(shape):
    out = _check_same_as(UpsampleConv2D(4, activation="relu"), [layers.UpSampling2D(2)], shape, 4)
    assert out == (shape[0], 2 * shape[1], 2 * shape[2], 4)


@pytest.mark.parametrize("filters", [1, 3])
@pytest.mark.parametrize("shape", [(2, 7, 7, 5), (3, 4, 9, 1)])
def test_narrow_conv_equals_conv(shape, filters):
    out = _check_same_as(NarrowConv2D(filters, activation="relu"), [], shape, filters)
    assert out == (*shape[:3], filters)


@pytest.mark.parametrize("cls", [UpsampleConv2D, NarrowConv2D])
def test_layer_config_round_trip_and_bad_filters(cls):
    layer = cls(8, activation="relu", name="up")
    again = cls.from_config(layer.get_config())
    assert (again.filters, again.name, again.activation.__name__) == (8, "up", "relu")
    assert layer.compute_output_shape((None, 7, 5, 3))[-1] == 8
    with pytest.raises(ValueError, match="Expected a positive integer. Received: filters=0"):
        cls(0)


def _format_1_run(path, config, shape, num_classes):
    """A run directory as vae-cli wrote it before the fused layers: the stock decoder's weights
    and format_version 1; returns the stock models."""
    from vae_cli import run as rundir

    keras.utils.set_random_seed(3)
    stock = build_vae(config, shape, num_classes, fused=False)
    for v in stock.vae.trainable_weights:  # non-zero biases too, so a lost array would show
        v.assign(np.random.default_rng(len(v.path)).normal(0, 0.3, v.shape).astype(np.float32))
    path.mkdir()
    stock.vae.save_weights(str(path / rundir.WEIGHTS_FILE))
    rundir.save_config(rundir.RunDir(path), config, shape, num_classes, {"used": "test"})
    meta = json.loads((path / rundir.CONFIG_FILE).read_text())
    (path / rundir.CONFIG_FILE).write_text(json.dumps({**meta, "format_version": 1}))
    return stock


@pytest.mark.parametrize("shape, num_classes", [((28, 28, 1), None), ((30, 26, 3), None), ((13, 9, 1), 4)])
def test_format_1_conv_run_loads_into_the_fused_layers_with_the_same_outputs(tmp_path, shape, num_classes):
    """Odd sizes (cropped decoder), RGB and a conditional decoder: same weights, same math."""
    from vae_cli.run import load_run

    config = Config(arch="conv", conv_filters=(4, 8), hidden_dim=16, latent_dim=3,
                    conditional=num_classes is not None)
    stock = _format_1_run(tmp_path / "old", config, shape, num_classes)
    run = load_run(tmp_path / "old")
    assert isinstance(run.decoder.get_layer("deconv1"), UpsampleConv2D)
    assert isinstance(run.decoder.get_layer("x_hat"), NarrowConv2D)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 3)).astype(np.float32)
    x = rng.random((6, *shape)).astype(np.float32)
    label = None if num_classes is None else np.eye(num_classes, dtype=np.float32)[rng.integers(0, num_classes, 6)]
    inputs = (lambda a: a) if label is None else (lambda a: [a, label])
    np.testing.assert_allclose(run.decoder(inputs(z)), stock.decoder(inputs(z)), atol=1e-5)
    np.testing.assert_array_equal(run.encoder(inputs(x))[0], stock.encoder(inputs(x))[0])


def test_format_1_conv_run_is_not_resumed(tmp_path):
    from vae_cli.resume import plan_resume

    _format_1_run(tmp_path / "old", Config(arch="conv", conv_filters=(4,), hidden_dim=8), (8, 8, 1), None)
    with pytest.raises(UsageError, match="run format 1.*cannot be resumed; vae-plot, vae-sample and vae-eval "
                                         "still read it"):
        plan_resume(str(tmp_path / "old"), None, {"epochs": 3})


# ---------------------------------------------------------------- memory


def test_pipeline_reads_the_images_in_place(tiny_npz):
    """Loaded images are 64-byte aligned float32, so tf.data uses them without a second copy."""
    from vae_cli.data import load_dataset, make_tf_dataset
    from vae_cli.data.base import split_indices

    data = load_dataset(f"npz:{tiny_npz}")
    x = data.x_train
    assert x.dtype == np.float32 and x.ctypes.data % 64 == 0 and data.x_val.ctypes.data % 64 == 0
    train_idx, _, _ = split_indices(64, 0.1, 0)  # the validation split comes out of x_train
    expected = np.multiply(np.load(tiny_npz)["x_train"][train_idx, ..., None], np.float32(1 / 255), dtype=np.float32)
    np.testing.assert_array_equal(x, expected)  # same values as a plain conversion
    ds = make_tf_dataset(x, batch_size=8, shuffle=False, seed=0)
    x[0, 0, 0, 0] = 0.125  # visible through the pipeline only if it shares the memory
    assert float(next(iter(ds))[0, 0, 0, 0]) == 0.125


def test_pipeline_copies_arrays_it_cannot_share():
    from vae_cli.data import make_tf_dataset

    x = np.random.default_rng(0).random((10, 4, 4, 1))  # float64: copied as it is
    batches = [np.asarray(b) for b in make_tf_dataset(x, batch_size=4, shuffle=False, seed=0)]
    np.testing.assert_array_equal(np.concatenate(batches), x)
    readonly = np.ones((6, 2, 2, 1), np.float32)
    readonly.flags.writeable = False
    assert sum(len(b) for b in make_tf_dataset(readonly, batch_size=4, shuffle=False, seed=0)) == 6


def test_chosen_steps_per_execution_trains_on_the_same_batches_as_one_step_per_call(tiny_npz):
    """fit over the all-epochs pipeline: per-epoch losses match steps_per_execution=1 exactly."""
    from vae_cli.data import load_dataset, steps_per_epoch

    data = load_dataset(f"npz:{tiny_npz}")
    config = Config(arch="mlp", hidden_dim=8, batch_size=12, jit_compile="off")  # 58 images: 5 steps
    histories = []
    for spe in (1, choose(config, gpu=False, epoch_steps=steps_per_epoch(data.n_train, 12)).steps_per_execution):
        keras.utils.set_random_seed(0)
        vae = build_vae(config, data.input_shape).vae
        vae.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=spe, jit_compile=False)
        batches, steps = data.epoch_batches(12, seed=0, first_epoch=0, epochs=3)
        histories.append(vae.fit(batches, epochs=3, steps_per_epoch=steps, verbose=0, shuffle=False).history["loss"])
    assert steps == 5
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-6)

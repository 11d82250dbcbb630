"""The model-quality levers, each checked against what it promises: warm-up's KL weight per epoch,
free bits' floor per latent unit, the IWAE bound against the ELBO, the learned-variance
Gaussian by hand, dynamic binarisation, the cosine schedule and early stopping's restore."""

import math

import keras
import numpy as np
import pytest

from vae_cli.callbacks import kl_weight
from vae_cli.checkpoint import Progress, validation_neg_elbo
from vae_cli.config import Config, resolve
from vae_cli.errors import UsageError
from vae_cli.evaluate import evaluate
from vae_cli.layers import Binarize, IWAELoss, IWSampling, KLDivergence, ReconstructionLoss, Sampling, TileRows
from vae_cli.losses import free_bits_kl, kl_divergence, reconstruction_nll
from vae_cli.models import PIXEL_LOG_VAR_MIN, build_vae
from vae_cli.run import RunDir, load_run, save_config
from vae_cli.trainer import _make_optimizer

# ------------------------------------------------------------------------------ KL warm-up


def test_warmup_weight_per_epoch():
    assert [kl_weight(e, 1.0, 4) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert [kl_weight(e, 2.0, 2) for e in range(4)] == [0.0, 1.0, 2.0, 2.0]
    assert [kl_weight(e, 0.5, 0) for e in range(3)] == [0.5, 0.5, 0.5]


# ------------------------------------------------------------------------------ free bits


def test_free_bits_floor_each_unit_after_averaging_over_the_batch():
    # unit 0: KL 0 and 2 nats for the two examples (batch mean 1); unit 1: 0.02 and 0 (mean 0.01)
    z_mean = np.array([[0.0, 0.2], [2.0, 0.0]], np.float32)
    z_log_var = np.zeros((2, 2), np.float32)
    assert float(free_bits_kl(z_mean, z_log_var, 0.0)) == pytest.approx(1.01, abs=1e-6)
    # lambda 0.5: unit 0 keeps its mean 1 (> 0.5), unit 1 is floored at 0.5
    assert float(free_bits_kl(z_mean, z_log_var, 0.5)) == pytest.approx(1.5, abs=1e-6)
    # averaging first: per-example flooring would give unit 0 mean(max(0, 1.5), max(2, 1.5)) = 1.75
    assert float(free_bits_kl(z_mean, z_log_var, 1.5)) == pytest.approx(1.5 + 1.5, abs=1e-6)
    # the plain ELBO term is the batch mean of the closed-form KL
    np.testing.assert_allclose(float(free_bits_kl(z_mean, z_log_var, 0.0)),
                               np.mean(kl_divergence(z_mean, z_log_var)), rtol=1e-6)


def test_free_bits_stops_the_gradient_of_units_below_the_floor():
    import tensorflow as tf

    z_mean = tf.Variable([[0.0, 0.2], [2.0, 0.0]])
    with tf.GradientTape() as tape:
        loss = free_bits_kl(z_mean, tf.zeros((2, 2)), 0.5)
    grad = tape.gradient(loss, z_mean).numpy()
    assert np.all(grad[:, 1] == 0.0)  # unit 1 (mean KL 0.01 < 0.5) is left alone
    np.testing.assert_allclose(grad[:, 0], [0.0, 1.0])  # d/dmu of mean(mu^2 / 2) = mu / 2


def test_sampling_layer_adds_the_free_bits_term_and_the_model_reports_the_true_kl():
    z_mean = np.array([[0.0, 0.2], [2.0, 0.0]], np.float32)
    layer = Sampling(seed=0, free_bits=0.5)
    layer([z_mean, np.zeros((2, 2), np.float32)])
    assert float(layer.losses[0]) == pytest.approx(1.5, abs=1e-6)
    kl = np.asarray(KLDivergence()([z_mean, np.zeros((2, 2), np.float32)]))  # the VAE's "kl" output
    assert float(kl.mean()) == pytest.approx(1.01, abs=1e-6)
    silent = Sampling(seed=0, kl_loss=False)
    silent([z_mean, np.zeros((2, 2), np.float32)])
    assert silent.losses == []


# ------------------------------------------------------------------------------ IWAE


def _iw_inputs(k, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((3, 4, 4, 1)) < 0.5).astype(np.float32)
    z_mean = rng.normal(size=(3, 2)).astype(np.float32)
    z_log_var = rng.normal(scale=0.3, size=(3, 2)).astype(np.float32)
    z = np.asarray(IWSampling(k, seed=seed)([z_mean, z_log_var]))
    x_hat = 1 / (1 + np.exp(-rng.normal(size=(k * 3, 4, 4, 1)))).astype(np.float32)
    return x, z_mean, z_log_var, z, x_hat.astype(np.float32)


def _log_weights_by_hand(x, z_mean, z_log_var, z, x_hat, k):
    b = len(x)
    xr = np.tile(x, (k, 1, 1, 1)).reshape(k * b, -1)
    p = x_hat.reshape(k * b, -1).astype(np.float64)
    log_px = np.sum(xr * np.log(p) + (1 - xr) * np.log(1 - p), axis=1)
    mean, log_var = np.tile(z_mean, (k, 1)), np.tile(z_log_var, (k, 1))
    log_pz = -0.5 * np.sum(np.log(2 * np.pi) + z ** 2, axis=1)
    log_qz = -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var), axis=1)
    return (log_px + log_pz - log_qz).reshape(k, b), log_px


def test_iw_sampling_is_sample_major_with_the_posterior_statistics():
    z_mean = np.array([[5.0, -5.0], [0.0, 1.0]], np.float32)
    z_log_var = np.log(np.array([[0.25, 0.25], [1.0, 4.0]], np.float32))
    z = np.asarray(IWSampling(4000, seed=1)([z_mean, z_log_var])).reshape(4000, 2, 2)
    np.testing.assert_allclose(z.mean(axis=0), z_mean, atol=0.1)
    np.testing.assert_allclose(z.std(axis=0), np.exp(0.5 * z_log_var), rtol=0.05)


def test_iwae_loss_by_hand_and_never_above_the_mean_single_sample_elbo():
    k = 5
    x, z_mean, z_log_var, z, x_hat = _iw_inputs(k)
    layer = IWAELoss(k)
    out, recon = layer([x, z_mean, z_log_var, z, x_hat])
    np.testing.assert_array_equal(np.asarray(out), x_hat[:3])  # the first draw's reconstruction
    log_w, log_px = _log_weights_by_hand(x, z_mean, z_log_var, z, x_hat, k)
    m = log_w.max(axis=0)
    iwae = -np.mean(m + np.log(np.mean(np.exp(log_w - m), axis=0)))
    assert float(layer.losses[0]) == pytest.approx(iwae, rel=1e-5)
    assert float(layer.losses[0]) <= -np.mean(log_w) + 1e-4  # Jensen: tighter than the k ELBOs
    np.testing.assert_allclose(np.asarray(recon), -log_px.reshape(k, 3).mean(axis=0), rtol=1e-5)  # per example
    one = IWAELoss(1)
    one([x, z_mean, z_log_var, z[:3], x_hat[:3]])  # k = 1: the single-sample ELBO
    assert float(one.losses[0]) == pytest.approx(-np.mean(log_w[0]), rel=1e-5)


@pytest.mark.parametrize("arch, conditional", [("mlp", False), ("strided", True)])
def test_iwae_model_loss_is_below_the_elbo_model_loss_on_the_same_batch(arch, conditional):
    shape = (8, 8, 1)
    rng = np.random.default_rng(0)
    x = (rng.random((64, *shape)) < 0.3).astype(np.float32)
    inputs = {"x": x, "label": np.eye(3, dtype=np.float32)[rng.integers(0, 3, 64)]} if conditional else x
    common = {"arch": arch, "conv_filters": (4,), "hidden_dim": 16, "latent_dim": 3, "conditional": conditional,
              "batch_norm": conditional}
    elbo = build_vae(Config(**common), shape, num_classes=3)
    iwae = build_vae(Config(**common, iw_train=50), shape, num_classes=3)
    for part in ("encoder", "decoder"):
        getattr(iwae, part).set_weights(getattr(elbo, part).get_weights())
    for m in (elbo.vae, iwae.vae):
        m.compile(optimizer="adam")
    elbo_loss = elbo.vae.evaluate(inputs, batch_size=64, verbose=0, return_dict=True)
    iwae_loss = iwae.vae.evaluate(inputs, batch_size=64, verbose=0, return_dict=True)
    assert iwae_loss["loss"] < elbo_loss["loss"]
    # recon + kl is the ELBO under either objective (same weights, so about the same number); for a
    # conditional model this needs every one of the K draws decoded with its own example's label
    assert iwae_loss["recon"] + iwae_loss["kl"] == pytest.approx(elbo_loss["loss"], rel=0.02)


def test_tile_rows_repeats_the_batch_sample_major_like_iw_sampling():
    labels = np.eye(3, dtype=np.float32)[[2, 0]]
    layer = TileRows(3)
    np.testing.assert_array_equal(np.asarray(layer(labels)), np.concatenate([labels] * 3))
    assert TileRows.from_config(layer.get_config()).k == 3
    with pytest.raises(ValueError, match="Expected an integer >= 1"):
        TileRows(0)


# ------------------------------------------------------------------------------ likelihoods


def test_learned_variance_gaussian_by_hand():
    x = np.array([[[[1.0], [0.0]]]], np.float32)  # (1, 1, 2, 1)
    mean = np.array([[[[0.8], [0.4]]]], np.float32)
    log_var = np.array([[[[math.log(0.01)], [0.0]]]], np.float32)
    # -log N(1; 0.8, 0.01) - log N(0; 0.4, 1)
    expected = (0.5 * math.log(2 * math.pi * 0.01) + 0.04 / 0.02) + (0.5 * math.log(2 * math.pi) + 0.08)
    got = np.asarray(reconstruction_nll(x, (mean, log_var), "gaussian-learned"))
    np.testing.assert_allclose(got, [expected], rtol=1e-5)
    layer = ReconstructionLoss("gaussian-learned")
    np.testing.assert_array_equal(np.asarray(layer([x, mean, log_var])[0]), mean)
    assert float(layer.losses[0]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("arch", ["mlp", "strided"])
def test_learned_variance_decoder_outputs_mean_and_bounded_log_variance(arch):
    config = Config(arch=arch, likelihood="gaussian-learned", latent_dim=2, hidden_dim=8, conv_filters=(4,))
    encoder, decoder, vae = build_vae(config, (6, 6, 1))
    mean, log_var = decoder(np.zeros((2, 2), np.float32))
    assert mean.shape == log_var.shape == (2, 6, 6, 1)
    assert np.all(np.asarray(log_var) > PIXEL_LOG_VAR_MIN)
    assert np.all(np.abs(np.asarray(log_var)) < 1.0)  # starts near unit variance, not at the floor
    assert vae(np.zeros((2, 6, 6, 1), np.float32))["x_hat"].shape == (2, 6, 6, 1)


def test_evaluate_uses_the_learned_variance():
    config = Config(arch="mlp", likelihood="gaussian-learned", latent_dim=2, hidden_dim=8)
    encoder, decoder, _ = build_vae(config, (4, 4, 1))
    # make the decoder ignore z, so the reconstruction term is known exactly
    hidden = decoder.get_layer("hidden")
    hidden.set_weights([np.zeros_like(w) for w in hidden.get_weights()])
    mean, log_var = (np.asarray(t, np.float64) for t in decoder(np.zeros((1, 2), np.float32)))
    x = np.random.default_rng(0).random((5, 4, 4, 1)).astype(np.float32)
    expected = np.mean(np.sum(0.5 * (np.log(2 * np.pi) + log_var + (x - mean) ** 2 / np.exp(log_var)),
                              axis=(1, 2, 3)))
    result = evaluate(encoder, decoder, x, likelihood="gaussian-learned", iw_samples=3)
    assert result["recon"] == pytest.approx(expected, rel=1e-5)
    assert result["iw_nll"] <= result["neg_elbo"] + 1.0


# ------------------------------------------------------------------------------ binarisation


def test_dynamic_binarisation_gives_0_1_images_that_change_every_step():
    x = np.random.default_rng(0).random((200, 5, 5, 1)).astype(np.float32)
    layer = Binarize(seed=3)
    first, second = np.asarray(layer(x, training=True)), np.asarray(layer(x, training=True))
    assert set(np.unique(first)) == {0.0, 1.0}
    assert (first != second).mean() > 0.2  # a fresh draw per step
    assert abs(first.mean() - x.mean()) < 0.02  # P(pixel = 1) is its grey level
    np.testing.assert_array_equal(np.asarray(Binarize(seed=3)(x, training=True)), first)  # seeded
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)  # not outside training
    # in the model, with shifts: the encoder and the loss see binarised, shifted images
    _, _, vae = build_vae(Config(arch="mlp", hidden_dim=8, binarize=True, augment_shift=1), (5, 5, 1))
    seen = keras.Model(vae.input, vae.get_layer("shift").output)
    assert set(np.unique(np.asarray(seen(x, training=True)))) == {0.0, 1.0}
    np.testing.assert_array_equal(np.asarray(seen(x, training=False)), x)


# ------------------------------------------------------------------------------ schedule, early stopping


def test_cosine_schedule_decays_to_zero_over_the_run():
    opt = _make_optimizer(Config(learning_rate=0.002, lr_schedule="cosine", epochs=10), steps_per_epoch=5)
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    values = [float(schedule(step)) for step in (0, 25, 50)]
    np.testing.assert_allclose(values, [0.002, 0.001, 0.0], atol=1e-7)
    assert float(_make_optimizer(Config(learning_rate=0.002), 5).learning_rate) == pytest.approx(0.002)


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_weight_decay_shrinks_each_weight_by_learning_rate_times_decay(name):
    # with a zero gradient the optimizer's own step is 0, so only the decay moves the weight
    opt = _make_optimizer(Config(learning_rate=0.1, weight_decay=0.5, optimizer=name), steps_per_epoch=5)
    weight = keras.Variable(np.array([2.0, -4.0], dtype="float32"))
    opt.apply_gradients([(np.zeros(2, dtype="float32"), weight)])
    np.testing.assert_allclose(np.asarray(weight), [2.0 * 0.95, -4.0 * 0.95], rtol=1e-6)
    plain = _make_optimizer(Config(learning_rate=0.1, optimizer=name), steps_per_epoch=5)
    kept = keras.Variable(np.array([2.0, -4.0], dtype="float32"))
    plain.apply_gradients([(np.zeros(2, dtype="float32"), kept)])
    np.testing.assert_array_equal(np.asarray(kept), [2.0, -4.0])


def test_validation_neg_elbo_reads_recon_plus_kl():
    assert validation_neg_elbo({"val_recon": 90.0, "val_kl": 10.5, "val_loss": 1.0}) == 100.5
    assert validation_neg_elbo({"val_loss": 7.0}) == 7.0
    assert validation_neg_elbo({"loss": 1.0}) is None
    assert validation_neg_elbo({"val_recon": float("nan"), "val_kl": 1.0}) is None


def test_best_epoch_and_patience_follow_the_elbo_not_val_loss():
    progress = Progress()
    # val_loss falls throughout (as under KL warm-up) but the -ELBO is best at epoch 2
    history = [(100.0, 5.0, 50.0), (95.0, 4.0, 40.0), (96.0, 4.0, 30.0), (97.0, 4.0, 20.0)]
    improved = [progress.record(epoch, {"val_recon": r, "val_kl": k, "val_loss": loss}, 1.0, 1.0)
                for epoch, (r, k, loss) in enumerate(history, start=1)]
    assert improved == [True, True, False, False]
    assert progress.best_val_loss == 99.0 and progress.epochs_since_best() == 2


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize("overrides, message", [
    ({"free_bits": -0.5}, "--free-bits: expected a number >= 0 and <= 1000 \\(nats per latent unit\\)"),
    ({"iw_train": 0}, "--iw-train: expected an integer from 1"),
    ({"patience": -1}, "--patience: expected an integer from 0"),
    ({"lr_schedule": "step"}, "--lr-schedule: expected one of constant, cosine"),
    ({"weight_decay": -0.1}, "--weight-decay: expected a number >= 0 and < 1"),
    ({"weight_decay": 1.0}, "--weight-decay: expected a number >= 0 and < 1"),
    ({"binarize": "yes"}, "--binarize: expected true or false"),
    ({"activation": "tanh"}, "--activation: expected one of relu, silu"),
    ({"free_bits": 0.5, "iw_train": 5}, "--free-bits 0.5 applies to the ELBO's KL term"),
])
def test_bad_lever_settings_are_refused_with_one_clear_message(overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve(None, overrides)


# ------------------------------------------------------------------------------ architectures


@pytest.mark.parametrize("shape", [(28, 28, 1), (30, 30, 1), (17, 9, 2), (8, 8, 3)])
def test_strided_arch_reproduces_any_image_shape(shape):
    config = Config(arch="strided", latent_dim=3, hidden_dim=8, conv_filters=(4, 8), batch_norm=True)
    encoder, decoder, vae = build_vae(config, shape)
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    assert [t.shape for t in encoder(x)] == [(2, 3)] * 3
    assert decoder(np.zeros((2, 3), np.float32)).shape == (2, *shape)
    assert vae(x)["x_hat"].shape == (2, *shape)
    assert {"down1", "down2"} <= {layer.name for layer in encoder.layers}
    assert encoder.get_layer("down1").strides == (2, 2) and decoder.get_layer("up1").strides == (2, 2)
    assert decoder.get_layer("grid_bn") and decoder.get_layer("up2").filters == 4


def test_hidden_layers_and_batch_norm_and_safe_mode_reload(tmp_path):
    config = Config(arch="mlp", hidden_dim=8, hidden_layers=3, batch_norm=True, latent_dim=2)
    encoder, decoder, vae = build_vae(config, (6, 6, 1))
    names = [layer.name for layer in decoder.layers]
    assert [n for n in names if n.startswith("hidden")] == [
        "hidden", "hidden_bn", "hidden_relu", "hidden2", "hidden2_bn", "hidden2_relu",
        "hidden3", "hidden3_bn", "hidden3_relu"]
    assert decoder.get_layer("hidden").use_bias is False
    vae.compile(optimizer="adam")
    x = np.random.default_rng(0).random((64, 6, 6, 1), dtype=np.float32)
    vae.fit(x, batch_size=32, epochs=1, verbose=0)  # moves the batch-norm statistics
    for model in (encoder, decoder):
        model.save(tmp_path / f"{model.name}.keras")
    z = np.random.default_rng(1).standard_normal((4, 2)).astype(np.float32)
    again = keras.models.load_model(tmp_path / "decoder.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(decoder(z)), np.asarray(again(z)), atol=1e-6)
    enc = keras.models.load_model(tmp_path / "encoder.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(encoder(x)[0]), np.asarray(enc(x)[0]), atol=1e-6)


def _silu(a):
    return a / (1.0 + np.exp(-a))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_silu_activation_is_x_times_sigmoid_x_in_every_hidden_layer(batch_norm):
    config = Config(arch="mlp", hidden_dim=3, latent_dim=2, activation="silu", batch_norm=batch_norm)
    _, decoder, _ = build_vae(config, (2, 2, 1))
    rng = np.random.default_rng(0)
    for w in decoder.weights:  # arbitrary values, a variance above 0
        w.assign(rng.uniform(0.5, 2.0, w.shape) if "variance" in w.path else rng.standard_normal(w.shape))
    z = rng.standard_normal((4, 2)).astype(np.float32)
    weights = {w.path: np.asarray(w) for w in decoder.weights}
    h = z @ weights["hidden/kernel"]
    if batch_norm:  # inference: the moving statistics
        mean, var = weights["hidden_bn/moving_mean"], weights["hidden_bn/moving_variance"]
        h = (h - mean) / np.sqrt(var + 1e-3) * weights["hidden_bn/gamma"] + weights["hidden_bn/beta"]
    else:
        h = h + weights["hidden/bias"]
    logits = _silu(h) @ weights["pixels/kernel"] + weights["pixels/bias"]
    expected = (1.0 / (1.0 + np.exp(-logits))).reshape(4, 2, 2, 1)
    np.testing.assert_allclose(np.asarray(decoder(z, training=False)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["conv", "strided"])
def test_silu_reaches_the_conv_stages_and_the_run_reloads_to_identical_outputs(tmp_path, arch):
    config = Config(arch=arch, latent_dim=2, hidden_dim=8, conv_filters=(4, 8), batch_norm=True, activation="silu")
    models = build_vae(config, (12, 12, 1))
    stages = [layer for layer in models.encoder.layers + models.decoder.layers if layer.name[:-1] in
              ("conv", "down", "deconv", "up")]
    assert len(stages) == 4 and all(layer.activation is keras.activations.silu for layer in stages)
    assert models.decoder.get_layer("grid_silu")
    save_config(RunDir(tmp_path), config, (12, 12, 1), None, {"requested": config.dataset})
    models.vae.save_weights(tmp_path / "vae.weights.h5")
    run = load_run(tmp_path)
    assert run.config.activation == "silu"
    z = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(run.decoder(z)), np.asarray(models.decoder(z)))


def test_shift_augmentation_moves_training_images_by_whole_pixels_only():
    _, _, vae = build_vae(Config(arch="mlp", hidden_dim=8, augment_shift=2), (12, 12, 1))
    shift = vae.get_layer("shift")
    x = np.zeros((500, 12, 12, 1), np.float32)
    x[:, 6, 6, 0] = 0.6
    moved = np.asarray(shift(x, training=True))
    rows, cols = np.nonzero(moved[..., 0])[1:]
    assert len(rows) == 500 and set(np.unique(moved)) == {0.0, np.float32(0.6)}
    assert set(rows - 6) <= {-2, -1, 0, 1, 2} and len(set(rows - 6)) > 1 and len(set(cols - 6)) > 1
    np.testing.assert_array_equal(np.asarray(shift(x, training=False)), x)  # validation: untouched


def test_shift_augmentation_leaves_xla_off_because_random_translation_has_no_xla_kernel():
    from vae_cli.speed import choose

    assert choose(Config(arch="mlp"), gpu=False).jit_compile
    assert not choose(Config(arch="mlp", augment_shift=1), gpu=False).jit_compile

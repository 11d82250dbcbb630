"""Model shapes for both archs and many image shapes, weight sharing, and saving/loading."""

import keras
import numpy as np
import pytest

from vae_cli.config import Config
from vae_cli.models import build_vae

SHAPES = [(28, 28, 1), (32, 32, 3), (8, 8, 1), (30, 30, 1), (17, 9, 2)]


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("shape", SHAPES)
def test_output_shapes(arch, shape):
    config = Config(arch=arch, latent_dim=3, hidden_dim=16, conv_filters=(4, 4))
    encoder, decoder, vae = build_vae(config, shape)
    x = np.random.default_rng(0).random((5, *shape), dtype=np.float32)
    z_mean, z_log_var, z = encoder(x)
    assert z_mean.shape == z_log_var.shape == z.shape == (5, 3)
    assert decoder(z).shape == (5, *shape)
    x_hat = np.asarray(vae(x)["x_hat"])
    assert x_hat.shape == (5, *shape)
    assert x_hat.min() >= 0.0 and x_hat.max() <= 1.0


def test_models_share_weights():
    encoder, decoder, vae = build_vae(Config(arch="mlp", hidden_dim=8), (8, 8, 1))
    assert {id(w) for w in encoder.weights + decoder.weights} >= {id(w) for w in vae.trainable_weights}


def test_no_lambda_layers_and_names():
    models = build_vae(Config(arch="conv"), (28, 28, 1))
    assert [m.name for m in models] == ["encoder", "decoder", "vae"]
    for model in models:
        for layer in model._flatten_layers():
            assert not isinstance(layer, keras.layers.Lambda)
    assert models.encoder.get_layer("z_mean") and models.encoder.get_layer("z_log_var")


def test_saved_models_reload_in_safe_mode_with_identical_outputs(tmp_path):
    encoder, decoder, _ = build_vae(Config(arch="conv", hidden_dim=16, conv_filters=(4,)), (12, 12, 1))
    decoder.save(tmp_path / "decoder.keras")
    encoder.save(tmp_path / "encoder.keras")
    z = np.random.default_rng(1).standard_normal((4, 2)).astype(np.float32)
    again = keras.models.load_model(tmp_path / "decoder.keras", safe_mode=True)
    np.testing.assert_array_equal(np.asarray(decoder(z)), np.asarray(again(z)))
    enc2 = keras.models.load_model(tmp_path / "encoder.keras", safe_mode=True)
    x = np.random.default_rng(2).random((3, 12, 12, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(encoder(x)[0]), np.asarray(enc2(x)[0]), atol=0)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_conditional_models_take_the_label_and_use_it(arch):
    config = Config(arch=arch, latent_dim=2, hidden_dim=16, conv_filters=(4, 4), conditional=True)
    encoder, decoder, vae = build_vae(config, (12, 12, 1), num_classes=4)
    assert [t.name for t in encoder.inputs] == ["x", "label"] and [t.name for t in decoder.inputs] == ["z", "label"]
    x = np.random.default_rng(0).random((4, 12, 12, 1), dtype=np.float32)
    labels = np.eye(4, dtype=np.float32)
    assert vae([x, labels])["x_hat"].shape == (4, 12, 12, 1)
    z = np.zeros((4, 2), np.float32)
    x_hat = np.asarray(decoder([z, labels]))  # same z, four labels
    assert x_hat.shape == (4, 12, 12, 1) and np.abs(x_hat[0] - x_hat[1]).max() > 0
    means = np.asarray(encoder([np.repeat(x[:1], 4, 0), labels])[0])
    assert np.abs(means[0] - means[1]).max() > 0  # the encoder sees the label too


def test_conditional_decoder_reloads_in_safe_mode(tmp_path):
    config = Config(arch="conv", hidden_dim=16, conv_filters=(4,), conditional=True)
    _, decoder, _ = build_vae(config, (12, 12, 1), num_classes=3)
    decoder.save(tmp_path / "decoder.keras")
    again = keras.models.load_model(tmp_path / "decoder.keras", safe_mode=True)
    inputs = [np.ones((3, 2), np.float32), np.eye(3, dtype=np.float32)]
    np.testing.assert_array_equal(np.asarray(decoder(inputs)), np.asarray(again(inputs)))


def test_conditional_needs_num_classes_and_plain_models_ignore_it():
    with pytest.raises(ValueError, match="needs num_classes"):
        build_vae(Config(arch="mlp", hidden_dim=8, conditional=True), (8, 8, 1))
    encoder, _, _ = build_vae(Config(arch="mlp", hidden_dim=8), (8, 8, 1), num_classes=10)
    assert len(encoder.inputs) == 1

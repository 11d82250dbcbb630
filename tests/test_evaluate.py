"""evaluate.py: -ELBO is the training loss, the IW bound is a stable, memory-bounded log-mean-exp
that equals the ELBO in expectation at K=1 and is tighter at K=50, and vae-eval reports it all."""

import json

import keras
import numpy as np
import pytest

from vae_cli.cli.eval import main
from vae_cli.config import Config
from vae_cli.evaluate import (DECODED_PER_CALL, _compiled, _logmeanexp, elbo_terms, evaluate, iw_log_weights,
                              iw_nll, posterior)
from vae_cli.losses import reconstruction_nll
from vae_cli.models import build_vae
from vae_cli.run import load_held_out, load_run


@pytest.fixture(scope="module")
def trained(mlp_run):
    run = load_run(mlp_run)
    return run, load_held_out(run).x[:500]  # the first 500 of the 10,000 real test digits


def test_logmeanexp_is_stable_where_the_naive_formula_fails():
    a = np.array([[-1000.0, -1001.0], [800.0, 800.0]])
    expected = np.array([-1000.0 + np.log((1 + np.exp(-1.0)) / 2), 800.0])
    np.testing.assert_allclose(_logmeanexp(a, axis=1), expected, rtol=1e-12)
    with np.errstate(all="ignore"):
        assert not np.isfinite(np.log(np.mean(np.exp(a), axis=1))).all()


def test_neg_elbo_equals_the_models_own_training_loss_on_a_fixed_batch():
    keras.utils.set_random_seed(1)
    models = build_vae(Config(arch="conv", hidden_dim=16, conv_filters=(4,), latent_dim=3), (8, 8, 1))
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    z_mean, z_log_var = posterior(models.encoder, x)
    sampler = models.encoder.get_layer("z").seed_generator
    state = np.asarray(sampler.state.value)
    eps = (np.asarray(models.encoder(x)[2]) - z_mean) / np.exp(0.5 * z_log_var)  # the z keras draws
    sampler.state.assign(state)  # the training forward pass now draws the same z
    models.vae(x)
    training_loss = sum(float(loss) for loss in models.vae.losses)  # beta = recon_weight = 1
    recon, kl = elbo_terms(models.decoder, x, z_mean, z_log_var, eps, "bernoulli")
    assert np.mean(recon + kl) == pytest.approx(training_loss, rel=1e-5)
    assert np.mean(kl) == pytest.approx(float(models.vae.losses[0]), rel=1e-5)  # the Sampling layer's KL


def test_training_graph_and_eager_evaluation_share_the_reconstruction_term():
    import tensorflow as tf

    x = np.array([0.0, 1.0, 0.3, 0.0], np.float32).reshape(1, 2, 2, 1)
    logits = np.array([30.0, -30.0, 0.5, -2.0], np.float32).reshape(1, 2, 2, 1)  # two saturated pixels
    graph = tf.function(lambda x, l: reconstruction_nll(x, keras.activations.sigmoid(l), "bernoulli"))
    eager = reconstruction_nll(x, keras.activations.sigmoid(tf.constant(logits)), "bernoulli")
    assert float(graph(x, logits)[0]) == pytest.approx(float(eager[0]), rel=1e-6)
    p = 1 / (1 + np.exp(-logits.ravel()[2:]))
    rest = -(x.ravel()[2:] * np.log(p) + (1 - x.ravel()[2:]) * np.log(1 - p)).sum()
    saturated = float(eager[0]) - rest  # exact: 30 nats each; clipped to 1e-7: about 16 each
    assert 2 * 15.5 < saturated < 2 * 16.2


def test_iw_with_one_sample_equals_the_elbo_in_expectation(trained):
    run, x = trained
    x = x[:500]
    z_mean, z_log_var = posterior(run.encoder, x)
    rng = np.random.default_rng(0)
    differences = []
    for _ in range(4):  # paired per-example estimates of the same quantity, -ELBO
        recon, kl = elbo_terms(run.decoder, x, z_mean, z_log_var,
                               rng.standard_normal(z_mean.shape).astype(np.float32), "bernoulli")
        iw = -np.asarray(iw_log_weights(run.decoder, x, z_mean, z_log_var,
                                        rng.standard_normal((1, *z_mean.shape)).astype(np.float32),
                                        "bernoulli"))[:, 0]
        differences.append(iw - (recon + kl))
    d = np.concatenate(differences)
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert abs(d.mean()) < 4 * se + 1e-6, (d.mean(), se)


def test_iw_bound_with_50_samples_is_tighter_than_the_elbo(trained):
    run, x = trained
    result = evaluate(run.encoder, run.decoder, x, likelihood="bernoulli", iw_samples=50, seed=0)
    assert result["n_examples"] == len(x) == 500
    assert result["iw_nll"] < result["neg_elbo"] - 1.0  # nats; the gap is several nats here
    assert result["neg_elbo"] == pytest.approx(result["recon"] + result["kl"])
    assert result["active_units"] == 2 and result["latent_dim"] == 2
    assert 0 < result["neg_elbo_se"] < 5 and 0 < result["iw_nll_se"] < 5
    without_iw = evaluate(run.encoder, run.decoder, x, likelihood="bernoulli", iw_samples=0, seed=0)
    assert without_iw["neg_elbo"] == result["neg_elbo"]  # separate random streams
    assert "iw_nll" not in without_iw


class CountingDecoder:
    """Wraps a decoder and records how many images each call decodes."""

    def __init__(self, decoder):
        self.decoder, self.sizes = decoder, []

    def __call__(self, inputs, training=False):
        self.sizes.append(len(inputs[0] if isinstance(inputs, list) else inputs))
        return self.decoder(inputs, training=training)


def test_many_iw_samples_are_decoded_in_bounded_chunks():
    models = build_vae(Config(arch="mlp", hidden_dim=8), (4, 4, 1))
    x = np.random.default_rng(0).random((8, 4, 4, 1), dtype=np.float32)
    z_mean, z_log_var = posterior(models.encoder, x)
    decoder = CountingDecoder(models.decoder)
    eager = lambda *args: np.asarray(iw_log_weights(decoder, *args[:4], "bernoulli", args[4]), np.float64)
    streamed = iw_nll(eager, x, z_mean, z_log_var, 5000, np.random.default_rng(3))
    assert sum(decoder.sizes) == 5000 * 8 and max(decoder.sizes) <= DECODED_PER_CALL
    eps = np.random.default_rng(3).standard_normal((5000, 8, 2)).astype(np.float32)
    full = np.asarray(iw_log_weights(models.decoder, x, z_mean, z_log_var, eps, "bernoulli"), np.float64)
    np.testing.assert_allclose(streamed, -_logmeanexp(full, axis=1), rtol=1e-6)  # same draws, one piece
    compiled = iw_nll(_compiled(models.decoder, "bernoulli"), x, z_mean, z_log_var, 5000,
                      np.random.default_rng(3))
    np.testing.assert_allclose(compiled, streamed, rtol=1e-5)


def test_vae_eval_prints_the_protocol_and_writes_eval_json(mlp_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    assert main([str(run), "--iw-samples", "5", "--batch-size", "128", "--examples", "500"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "eval.json").read_text())
    assert report["protocol"]["iw_samples"] == 5 and report["protocol"]["data"]["n_examples"] == 500
    assert "not binarised" in report["protocol"]["pixels"]
    assert report["protocol"]["data"]["split"] == "the first 500 of test"  # the real MNIST test set
    for text in ("mnist-5k", "K=5", "-ELBO", f"{report['neg_elbo']:.2f}", f"{report['iw_nll']:.2f}",
                 "active units", "not binarised"):
        assert text in out


def test_vae_eval_report_elsewhere_leaves_the_run_alone(mlp_run, tmp_path, capsys):
    before = sorted(p.name for p in mlp_run.iterdir())
    assert main([str(mlp_run), "--iw-samples", "0", "--json", str(tmp_path / "reports" / "e.json")]) == 0
    assert "iw_nll" not in json.loads((tmp_path / "reports" / "e.json").read_text())
    out = capsys.readouterr().out
    assert "no IW bound" in out and "-log p(x)" not in out
    assert sorted(p.name for p in mlp_run.iterdir()) == before
    assert main([str(mlp_run), "--json", str(tmp_path)]) == 2
    assert "is a folder; give a file path" in capsys.readouterr().err


def test_vae_eval_refuses_other_image_shapes(mlp_run, tiny_npz, tmp_path, capsys):
    cifar_like = tmp_path / "rgb.npz"
    np.savez(cifar_like, x=np.zeros((4, 32, 32, 3), np.uint8))
    assert main([str(mlp_run), "--dataset", f"npz:{cifar_like}"]) == 2
    err = capsys.readouterr().err
    assert "32x32x3 images but this run was trained on 28x28x1" in err and len(err.splitlines()) == 1
    assert not (mlp_run / "eval.json").exists()

"""Runs trained with a learned prior (--prior mog:K, vamp:K): they train, save, reload to the same
numbers, resume bit for bit, evaluate with their prior, draw from it (the per-epoch sample grid
too) and export; bad values and impossible combinations exit 2 with one line."""

import json
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from tests.faults import exit_code
from vae_cli.cli import eval as eval_cli
from vae_cli.cli import export as export_cli
from vae_cli.cli import plot as plot_cli
from vae_cli.cli import sample as sample_cli
from vae_cli.cli.train import main as train_main
from vae_cli.data import load_dataset
from vae_cli.evaluate import evaluate
from vae_cli.latent import decode
from vae_cli.plots import tile_images
from vae_cli.priors import prior_components
from vae_cli.run import load_held_out, load_run
from vae_cli.samplers import make_sampler

TINY = ["--dataset", "mnist-5k", "--arch", "mlp", "--hidden-dim", "32", "--latent-dim", "2", "--seed", "0"]


def _train(out, *flags):
    assert train_main([*TINY, "--out", str(out), *flags]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def mog_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("mog"), "--prior", "mog:3", "--epochs", "2", "--kl-warmup-epochs", "1")


@pytest.fixture(scope="module")
def vamp_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("vamp"), "--prior", "vamp:4", "--epochs", "2")


def _arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_mog_run_reloads_to_the_numbers_training_measured(mog_run):
    """metrics.json's eval is computed by the trainer's models in memory on the 500 validation
    digits; the models rebuilt from config.json + vae.weights.h5 give the same numbers."""
    metrics = json.loads((mog_run / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    run = load_run(mog_run)
    prior = prior_components(run.config, run.vae, run.encoder)
    assert prior[1].shape == (3, 2) and prior[0].shape == (3,)
    validation = load_dataset("mnist-5k", validation_split=0.1, seed=0).x_val
    again = evaluate(run.encoder, run.decoder, validation, likelihood="bernoulli", iw_samples=50, seed=0, prior=prior)
    for key in ("neg_elbo", "kl", "recon", "iw_nll"):
        assert again[key] == pytest.approx(metrics["eval"][key], rel=1e-4), key
    twice = load_run(mog_run)
    np.testing.assert_array_equal(prior_components(twice.config, twice.vae, twice.encoder)[1], prior[1])


def test_vae_eval_uses_the_runs_prior(mog_run, tmp_path, capsys):
    report_path = tmp_path / "eval.json"
    assert eval_cli.main([str(mog_run), "--iw-samples", "20", "--examples", "300", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert np.isfinite(report["neg_elbo"]) and report["iw_nll"] < report["neg_elbo"]
    assert report["protocol"]["prior"] == "mog:3"
    assert "learned prior mog:3 (KL: its one-sample estimate)" in capsys.readouterr().out


def test_the_evaluation_uses_the_prior_and_matches_the_closed_form_for_n01(mog_run):
    run = load_run(mog_run)
    x = load_held_out(run).x[:2000]
    d = run.config.latent_dim
    standard = (np.zeros(1, np.float32), np.zeros((1, d), np.float32), np.zeros((1, d), np.float32))
    closed = evaluate(run.encoder, run.decoder, x, likelihood="bernoulli", iw_samples=20, seed=1)
    sampled = evaluate(run.encoder, run.decoder, x, likelihood="bernoulli", iw_samples=20, seed=1, prior=standard)
    assert sampled["recon"] == closed["recon"]  # the same z
    assert sampled["iw_nll"] == pytest.approx(closed["iw_nll"], rel=1e-6)  # the same log p(z)
    assert sampled["kl"] == pytest.approx(closed["kl"], abs=0.4)  # a one-sample estimate of the same KL (se about 0.12)
    learned = evaluate(run.encoder, run.decoder, x, likelihood="bernoulli", iw_samples=20, seed=1,
                       prior=prior_components(run.config, run.vae, run.encoder))
    assert learned["recon"] == closed["recon"] and learned["kl"] != pytest.approx(closed["kl"], abs=1e-3)


@pytest.mark.parametrize("prior", ["mog:3", "vamp:3"])
def test_learned_prior_run_resumes_bit_for_bit(tmp_path, prior):
    """Also with the prior read at every epoch's end for the sample grid."""
    straight = _train(tmp_path / "straight", "--prior", prior, "--epochs", "3")
    cut = _train(tmp_path / "cut", "--prior", prior, "--epochs", "2")
    assert train_main(["--resume", str(cut), "--epochs", "3"]) == 0
    ref, got = _arrays(straight / "vae.weights.h5"), _arrays(cut / "vae.weights.h5")
    assert ref.keys() == got.keys() and any("prior" in k or "pseudo_inputs" in k for k in ref)
    assert all(np.array_equal(ref[k], got[k]) for k in ref)


def test_samples_come_from_the_learned_prior(vamp_run, tmp_path):
    run = load_run(vamp_run)
    assert make_sampler(run, "prior").description == "the learned prior vamp:4"
    assert sample_cli.main([str(vamp_run), "-n", "2000", "--seed", "3", "--out", str(tmp_path / "s")]) == 0
    z = np.load(tmp_path / "s" / "z.npy")
    _, means, log_vars = prior_components(run.config, run.vae, run.encoder)
    prior_mean = means.mean(axis=0)  # equal weights
    prior_var = (np.exp(log_vars) + means**2).mean(axis=0) - prior_mean**2
    np.testing.assert_allclose(z.mean(axis=0), prior_mean, atol=4 * np.sqrt(prior_var.max() / 2000))
    np.testing.assert_allclose(z.var(axis=0), prior_var, rtol=0.15)


def test_figures_and_export_of_a_vamp_run(vamp_run, tmp_path):
    run = shutil.copytree(vamp_run, tmp_path / "run")
    assert plot_cli.main([str(run), "--what", "samples,manifold,traversal", "--grid", "4"]) == 0
    assert all((run / "plots" / f"{name}.png").is_file() for name in ("samples", "manifold", "traversal"))
    assert export_cli.main([str(run), "--format", "keras", "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "export.json").is_file()


def test_conditional_runs_keep_a_mixture_prior(tmp_path):
    run = _train(tmp_path, "--prior", "mog:2", "--conditional", "--epochs", "1")
    assert sample_cli.main([str(run), "-n", "10", "--label", "3", "--out", str(tmp_path / "s")]) == 0
    assert np.load(tmp_path / "s" / "labels.npy")[:, 3].all()
    # the epoch's grid: one row per class, the same 10 draws of the prior in every row
    loaded = load_run(run)
    z = np.tile(_prior_draws(loaded, 10), (10, 1))
    labels = np.repeat(np.eye(10, dtype=np.float32), 10, axis=0)
    _assert_grid(run / "samples" / "epoch-001.png", _grid_pixels(loaded, z, 10, labels))


def _prior_draws(run, n):
    """n draws of the run's saved prior by hand, the seeded noise the grid promises: the component
    of each point from uniforms of default_rng(seed) by the mixture weights (numpy's choice), then
    eps ~ N(0, I) from the same generator, z = mean_k + std_k * eps."""
    logits, means, log_vars = (a.astype(np.float64) for a in prior_components(run.config, run.vae, run.encoder))
    weights = np.exp(logits - logits.max())
    rng = np.random.default_rng(run.config.seed)
    k = rng.choice(len(weights), n, p=weights / weights.sum())
    eps = rng.standard_normal((n, run.config.latent_dim))
    assert len(set(k)) > 1  # the draws come from several components
    return (means[k] + np.exp(0.5 * log_vars[k]) * eps).astype(np.float32)


def _grid_pixels(run, z, ncols, labels=None):
    """The 8-bit pixels of the per-epoch grid PNG that decoding z gives (tiled, enlarged 3x)."""
    mosaic = tile_images(decode(run.decoder, z, labels), ncols=ncols)
    return np.round(mosaic.repeat(3, axis=0).repeat(3, axis=1)[..., 0] * 255).astype(int)


def _assert_grid(path, expected):
    got = np.asarray(Image.open(path), int)
    assert got.shape == expected.shape
    # the same decoder weights, rebuilt from the files: a pixel may round the other way
    assert np.abs(got - expected).max() <= 1 and np.mean(got != expected) < 0.01


@pytest.mark.parametrize("fixture", ["mog_run", "vamp_run"])
def test_the_per_epoch_grid_draws_from_the_prior_of_its_epoch(fixture, request):
    """The last epoch's grid is the saved prior's draws with the seeded noise, not N(0, I)."""
    path = request.getfixturevalue(fixture)
    run = load_run(path)
    grid = path / "samples" / "epoch-002.png"
    _assert_grid(grid, _grid_pixels(run, _prior_draws(run, 64), 8))
    standard = np.random.default_rng(run.config.seed).standard_normal((64, 2)).astype(np.float32)
    assert np.mean(np.asarray(Image.open(grid), int) != _grid_pixels(run, standard, 8)) > 0.5  # N(0, I): other images


def test_a_standard_prior_runs_grid_decodes_the_same_seeded_normal_draws(tmp_path):
    path = _train(tmp_path, "--epochs", "1", "--seed", "5")
    run = load_run(path)
    z = np.random.default_rng(5).standard_normal((64, 2)).astype(np.float32)
    _assert_grid(path / "samples" / "epoch-001.png", _grid_pixels(run, z, 8))


@pytest.mark.parametrize("flags, message", [
    (["--prior", "vamp:0"],
     "--prior: expected standard, mog:K or vamp:K with K an integer from 1 to 1000, got 'vamp:0'"),
    (["--prior", "mog:x"], "got 'mog:x'"),
    (["--prior", "vamp:3", "--conditional"], "cannot train a --conditional model"),
    (["--prior", "vamp:3", "--batch-norm"], "use --prior mog:K or --no-batch-norm"),
    (["--prior", "mog:3", "--free-bits", "1"], "--free-bits 1 floors each latent unit's closed-form KL"),
])
def test_bad_prior_flags_exit_2_with_one_line(tmp_path, capsys, flags, message):
    assert exit_code(train_main, [*TINY, "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())

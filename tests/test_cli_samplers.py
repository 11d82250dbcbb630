"""--sampler prior|gmm[:K] of vae-sample, vae-plot (samples) and vae-eval (--samples): the gmm
mixture is fitted on first use, kept in the run directory and reused; bad values exit 2."""

import json
import shutil

import numpy as np
import pytest

from tests.faults import exit_code
from vae_cli.cli import eval as eval_cli
from vae_cli.cli import plot as plot_cli
from vae_cli.cli import sample as sample_cli
from vae_cli.mixture import GaussianMixture, load


@pytest.fixture
def run(mlp_run, tmp_path):
    return shutil.copytree(mlp_run, tmp_path / "run")


def test_vae_sample_gmm_fits_once_and_draws_from_the_mixture(run, tmp_path, capsys):
    assert sample_cli.main([str(run), "--sampler", "gmm:3", "-n", "400", "--seed", "2",
                            "--out", str(tmp_path / "a")]) == 0
    assert "fitting a 3-component Gaussian mixture" in capsys.readouterr().err
    fitted, _ = load(run / "gmm-3.npz", dim=2)
    z = np.load(tmp_path / "a" / "z.npy")
    np.testing.assert_array_equal(z, fitted.sample(400, np.random.default_rng(2)))
    stamp = (run / "gmm-3.npz").stat().st_mtime_ns

    assert sample_cli.main([str(run), "--sampler", "gmm:3", "-n", "400", "--seed", "2",
                            "--out", str(tmp_path / "b")]) == 0
    assert "fitting" not in capsys.readouterr().err
    assert (run / "gmm-3.npz").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "samples.npy"), np.load(tmp_path / "a" / "samples.npy"))


def test_vae_sample_prior_sampler_is_the_default(run, tmp_path):
    for name, extra in (("plain", []), ("prior", ["--sampler", "prior"])):
        assert sample_cli.main([str(run), "-n", "5", "--seed", "3", "--out", str(tmp_path / name), *extra]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "plain" / "samples.npy"),
                                  np.load(tmp_path / "prior" / "samples.npy"))


def test_vae_plot_samples_with_gmm(run, tmp_path, capsys):
    # a mixture already in the run directory is what the figure draws from
    from vae_cli import mixture

    mixture.save(run / "gmm-2.npz", GaussianMixture(np.array([0.5, 0.5]), np.array([[0.0, 0.0], [1.0, 1.0]]),
                                                    np.array([np.eye(2)] * 2)), {"weights_sha256": "x"})
    assert plot_cli.main([str(run), "--what", "samples", "--sampler", "gmm:2", "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "samples.png").is_file()
    assert "earlier weights" in capsys.readouterr().err  # its protocol named other weights: fitted again
    assert load(run / "gmm-2.npz", dim=2)[0].means[1].tolist() != [1.0, 1.0]


def test_vae_eval_sample_quality_with_gmm(run, tmp_path):
    report = tmp_path / "eval.json"
    assert eval_cli.main([str(run), "--iw-samples", "0", "--examples", "20", "--samples", "30", "--sampler", "gmm:2",
                          "--json", str(report)]) == 0
    quality = json.loads(report.read_text())["sample_quality"]
    assert quality["protocol"]["sampler"] == "gmm-2 fitted to the training codes"
    assert np.isfinite(quality["frechet_distance"]) and (run / "gmm-2.npz").is_file()


@pytest.mark.parametrize("main, args, message", [
    (sample_cli.main, ["--sampler", "gmm:-1"],
     "argument --sampler: expected prior or gmm[:K] with K an integer from 1 to 1000, got 'gmm:-1'"),
    (sample_cli.main, ["--sampler", "gmm:0"], "got 'gmm:0'"),
    (sample_cli.main, ["--sampler", "gmm", "--z", "0,0"], "--sampler applies to prior samples"),
    (plot_cli.main, ["--sampler", "gmm:1001"], "got 'gmm:1001'"),
    (plot_cli.main, ["--what", "manifold", "--sampler", "gmm"], "--sampler only applies to the samples figure"),
    (eval_cli.main, ["--samples", "20", "--sampler", "vamp:3"], "got 'vamp:3'"),
    (eval_cli.main, ["--sampler", "gmm"], "--sampler only applies to sample quality; add --samples N"),
])
def test_bad_sampler_requests_exit_2_with_one_line(mlp_run, tmp_path, capsys, main, args, message):
    assert exit_code(main, [str(mlp_run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(mlp_run.glob("gmm-*"))


def test_api_sample_takes_the_sampler(run):
    import vae_cli
    from vae_cli.errors import UsageError

    vae = vae_cli.load(run)
    images = vae.sample(6, seed=1, sampler="gmm:2")
    assert images.shape == (6, 28, 28, 1) and (run / "gmm-2.npz").is_file()
    np.testing.assert_array_equal(vae.sample(6, seed=1), vae.sample(6, seed=1, sampler="prior"))
    with pytest.raises(UsageError, match="sampler: expected prior, gmm or gmm:K .* got 'gmm:0'"):
        vae.sample(6, sampler="gmm:0")

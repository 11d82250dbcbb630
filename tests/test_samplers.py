"""vae_cli.samplers: where new images' z come from. The gmm sampler fits its mixture to a run's
training codes once, keeps it as plain arrays in the run directory and reuses it."""

import json
import shutil

import numpy as np
import pytest

from vae_cli.errors import UsageError
from vae_cli.latent import prior_z
from vae_cli.run import load_held_out, load_run
from vae_cli.samplers import make_sampler, parse_sampler


def sample_z(run, sampler, n, *, seed, temperature=1.0, note=lambda line: None):
    return make_sampler(run, sampler, note)(n, seed=seed, temperature=temperature)


@pytest.mark.parametrize("text, parsed", [("prior", ("prior", 0)), ("gmm", ("gmm", 10)), ("gmm:1", ("gmm", 1)),
                                          ("gmm:1000", ("gmm", 1000))])
def test_parse_sampler(text, parsed):
    assert parse_sampler(text) == parsed


@pytest.mark.parametrize("text", ["gmm:-1", "gmm:0", "gmm:1001", "gmm:", "prior:3", "mixture", "GMM:3"])
def test_parse_sampler_refuses_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match=rf"^expected prior or gmm\[:K\] with K an integer from 1 to 1000, "
                                         rf"got '{text}'$"):
        parse_sampler(text)


@pytest.fixture
def run_copy(mlp_run, tmp_path):
    return load_run(shutil.copytree(mlp_run, tmp_path / "run"))


def test_standard_prior_sampler_is_the_plain_normal_stream(run_copy):
    np.testing.assert_array_equal(sample_z(run_copy, "prior", 50, seed=4, temperature=0.7),
                                  prior_z(50, 2, seed=4, temperature=0.7))


def test_gmm_sampler_fits_once_and_reuses(run_copy):
    notes = []
    z = sample_z(run_copy, "gmm:3", 4000, seed=1, note=notes.append)
    npz, protocol_file = run_copy.path / "gmm-3.npz", run_copy.path / "gmm-3.json"
    assert npz.is_file() and protocol_file.is_file()
    assert len(notes) == 1 and "fitting a 3-component" in notes[0]
    protocol = json.loads(protocol_file.read_text())
    assert protocol["n_points"] == 4500 and protocol["k"] == 3 and "training images" in protocol["fitted_to"]
    with np.load(npz, allow_pickle=False) as arrays:
        assert arrays["covariances"].shape == (3, 2, 2)
    # the draws sit where the codes are: their mean is the codes' and their spread the aggregate
    # posterior's, q(z) = mean of q(z | x), whose variance is Var(z_mean) + mean(exp(z_log_var))
    z_mean, z_log_var, _ = run_copy.encoder.predict(load_held_out(run_copy).x, verbose=0)
    np.testing.assert_allclose(z.mean(0), z_mean.mean(0), atol=0.15)
    np.testing.assert_allclose(z.std(0), np.sqrt(z_mean.var(0) + np.exp(z_log_var).mean(0)), rtol=0.2)
    assert protocol["codes"] == "posterior draws" and "drawn from q(z | x)" in protocol["fitted_to"]

    before = (npz.stat().st_mtime_ns, protocol_file.read_bytes())
    again = sample_z(run_copy, "gmm:3", 4000, seed=1, note=notes.append)
    np.testing.assert_array_equal(again, z)
    assert (npz.stat().st_mtime_ns, protocol_file.read_bytes()) == before and len(notes) == 1


def test_gmm_fitted_to_other_weights_is_fitted_again(run_copy):
    sample_z(run_copy, "gmm:2", 10, seed=0)
    protocol_file = run_copy.path / "gmm-2.json"
    protocol = json.loads(protocol_file.read_text())
    true_sha = protocol["weights_sha256"]
    protocol_file.write_text(json.dumps({**protocol, "weights_sha256": "0" * 64}))
    notes = []
    sample_z(run_copy, "gmm:2", 10, seed=0, note=notes.append)
    assert "earlier weights" in notes[0]
    assert json.loads(protocol_file.read_text())["weights_sha256"] == true_sha


def test_gmm_fitted_to_z_mean_by_an_earlier_version_is_fitted_again(run_copy):
    sample_z(run_copy, "gmm:2", 10, seed=0)
    protocol_file = run_copy.path / "gmm-2.json"
    protocol = json.loads(protocol_file.read_text())
    del protocol["codes"]  # what a mixture fitted to z_mean says
    protocol_file.write_text(json.dumps(protocol))
    notes = []
    sample_z(run_copy, "gmm:2", 10, seed=0, note=notes.append)
    assert "fitted to z_mean by an earlier vae-cli" in notes[0]
    assert json.loads(protocol_file.read_text())["codes"] == "posterior draws"


def test_damaged_gmm_file_is_refused_not_overwritten(run_copy):
    sample_z(run_copy, "gmm:2", 10, seed=0)
    npz = run_copy.path / "gmm-2.npz"
    npz.write_bytes(b"not an npz")
    with pytest.raises(UsageError, match=r"gmm-2.npz: does not match the SHA-256 .* delete gmm-2.npz and "
                                         r"gmm-2.json from the run directory"):
        sample_z(run_copy, "gmm:2", 10, seed=0)
    assert npz.read_bytes() == b"not an npz"


def test_gmm_with_more_components_than_training_images_is_refused(tmp_path, tiny_npz):
    from vae_cli.cli.train import main

    assert main(["--dataset", f"npz:{tiny_npz}", "--arch", "mlp", "--hidden-dim", "8", "--epochs", "1",
                 "--out", str(tmp_path / "runs")]) == 0
    (run_path,) = (tmp_path / "runs").iterdir()
    run = load_run(run_path)
    n = run.data["n_train"]
    with pytest.raises(UsageError, match=f"only {n} training images, fewer than the {n + 1} components"):
        sample_z(run, f"gmm:{n + 1}", 10, seed=0)
    assert not list(run_path.glob("gmm-*"))

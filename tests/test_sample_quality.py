"""Sample quality (vae-eval --samples N): the Fréchet distance and k-NN precision/recall against
hand-computed cases, the shipped digit classifier (hash, size, t10k accuracy), the three feature
spaces through vae-eval, and bad values."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from faults import exit_code
from vae_cli.cli.eval import main
from vae_cli.sample_metrics import (binomial_se, frechet_distance, frechet_distance_of_sets, knn_radii, pca_basis,
                                    precision_recall)

# --------------------------------------------------------------------------- the numbers


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(300, 8))
    assert frechet_distance_of_sets(x, x) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_of_a_shifted_set_is_the_squared_shift():
    x = np.random.default_rng(1).normal(size=(400, 5)) @ np.diag([1, 2, 3, 0.5, 0.1])
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance_of_sets(x, x + shift) == pytest.approx(np.sum(shift ** 2), rel=1e-8)


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    # diagonal: |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    assert frechet_distance(np.zeros(3), np.diag(a), np.ones(3), np.diag(b)) == pytest.approx(3 + 1 + 1 + 0)
    # 2x2, not commuting: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) with M = S1 S2, det M = 3 * 4
    s1, s2 = np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([[1.0, 0.0], [0.0, 4.0]])
    expected = 5 + 4 + 5 - 2 * np.sqrt(10 + 2 * np.sqrt(12))
    assert frechet_distance([0, 0], s1, [1, 2], s2) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance([1, 2], s2, [0, 0], s1) == pytest.approx(expected, rel=1e-10)  # symmetric
    # singular covariances (fewer points than dimensions) stay real and finite
    assert frechet_distance(np.zeros(3), np.diag([1.0, 0, 0]), np.zeros(3), np.diag([0, 1.0, 0])) == pytest.approx(2)


def test_frechet_distance_of_sampled_gaussian_sets_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    mu = np.array([1.0, -1.0, 2.0, 0.0])
    real, fake = rng.normal(size=(20_000, 4)), mu + 2 * rng.normal(size=(20_000, 4))
    assert frechet_distance_of_sets(real, fake) == pytest.approx(np.sum(mu ** 2) + 4 * (2 - 1) ** 2, rel=0.03)


def test_precision_and_recall_on_hand_built_points():
    real = np.array([[0.0], [1], [2], [3], [4]])  # k=1 radii: 1 each
    fake = np.array([[0.5], [1.5], [10], [10.2]])  # k=1 radii: 1, 1, 0.2, 0.2
    np.testing.assert_allclose(knn_radii(real, 1), [1, 1, 1, 1, 1])  # squared distances
    # precision: 0.5 and 1.5 lie in real balls, 10 and 10.2 do not; recall: 0, 1, 2 lie in fake balls
    assert precision_recall(real, fake, k=1) == (0.5, 0.6)
    # with k=2 the real radii grow to 2 (4 for the ends), still short of 10: precision unchanged
    assert precision_recall(real, fake, k=2)[0] == 0.5
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0)), -1).reshape(-1, 2)
    assert precision_recall(grid, grid) == (1.0, 1.0)
    assert precision_recall(grid, grid + 100) == (0.0, 0.0)
    with pytest.raises(ValueError, match="k < number of points"):
        knn_radii(real, 5)


def test_binomial_se_and_pca_basis():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    line = np.outer(np.arange(10.0), [1.0, 2.0, 2.0])  # points on one line in 3-D
    mean, directions = pca_basis(line, 64)
    assert directions.shape == (3, 3)  # min(64, N - 1, D)
    np.testing.assert_allclose(np.abs(directions[0]), [1 / 3, 2 / 3, 2 / 3], atol=1e-12)


# --------------------------------------------------------------------------- the digit classifier


def test_shipped_digit_classifier_loads_its_hash_matches_and_it_is_small():
    from vae_cli.feature_net import DIGIT_WEIGHTS, DIGIT_WEIGHTS_SHA256, load_digit_classifier, sha256_file

    assert DIGIT_WEIGHTS.stat().st_size <= 1_000_000
    assert sha256_file(DIGIT_WEIGHTS) == DIGIT_WEIGHTS_SHA256
    model, protocol = load_digit_classifier()
    assert protocol["weights_sha256"] == DIGIT_WEIGHTS_SHA256
    assert protocol["t10k_accuracy"] >= 0.97 and "mnist-5k" in protocol["trained_on"]
    assert model.output_shape == (None, 10)


def test_shipped_digit_classifier_reaches_97_percent_on_real_test_digits(mnist_t10k_dir):
    from vae_cli.data import load_eval_split
    from vae_cli.feature_net import accuracy, load_digit_classifier

    test = load_eval_split(f"idx:{mnist_t10k_dir}", validation_split=0.1, seed=0, all_if_no_test=True)
    assert len(test.x) == 10_000
    model, _ = load_digit_classifier()
    assert accuracy(model, test.x[:2000], test.y[:2000]) >= 0.97


# --------------------------------------------------------------------------- vae-eval --samples


def test_vae_eval_samples_writes_the_numbers_with_their_protocol(mlp_run, tmp_path, capsys):
    from vae_cli.feature_net import DIGIT_WEIGHTS_SHA256
    from vae_cli.run import load_run
    from vae_cli.sample_quality import sample_quality

    report_path = tmp_path / "eval.json"
    assert main([str(mlp_run), "--iw-samples", "0", "--samples", "60", "--json", str(report_path)]) == 0
    sq = json.loads(report_path.read_text())["sample_quality"]
    p = sq["protocol"]
    assert p["n"] == 60 and p["seed"] == 0 and p["temperature"] == 1.0 and p["sampler"].startswith("prior")
    assert p["feature_network"]["name"] == "digit-classifier"
    assert p["feature_network"]["weights_sha256"] == DIGIT_WEIGHTS_SHA256
    assert "k=3" in p["precision_recall"] and p["reference"]["split"] == "test"  # the real MNIST test digits
    assert sq["frechet_distance"] > 0 and sq["frechet_distance_se"] > 0
    assert 0 <= sq["precision"] <= 1 and 0 <= sq["recall"] <= 1 and sq["reference_accuracy"] > 0.8
    assert "label_accuracy" not in sq  # not a conditional run
    out = capsys.readouterr().out
    assert f"FD {sq['frechet_distance']:.2f} ± {sq['frechet_distance_se']:.2f}" in out
    assert f"precision {sq['precision']:.3f}" in out
    # seeded: the library gives the same numbers; a hotter prior moves them
    again = sample_quality(load_run(mlp_run), 60, seed=0)
    assert again["frechet_distance"] == pytest.approx(sq["frechet_distance"], rel=1e-6)
    assert (again["precision"], again["recall"]) == (sq["precision"], sq["recall"])
    hot = sample_quality(load_run(mlp_run), 60, seed=0, temperature=3.0)
    assert hot["frechet_distance"] != pytest.approx(sq["frechet_distance"], rel=1e-3)


def test_other_samplers_plug_in_as_a_callable_or_latent_points(mlp_run):
    from vae_cli.latent import prior_z
    from vae_cli.run import load_run
    from vae_cli.sample_quality import sample_quality

    run = load_run(mlp_run)

    def narrow(n, *, seed, temperature):
        return 0.5 * prior_z(n, 2, seed=seed)
    narrow.description = "N(0, 0.25 I)"

    by_callable = sample_quality(run, 30, sampler=narrow, seed=4)
    by_points = sample_quality(run, 30, sampler=0.5 * prior_z(30, 2, seed=4), seed=4)
    by_prior = sample_quality(run, 30, temperature=0.5, seed=4)  # the same z, drawn by the prior sampler
    assert by_callable["protocol"]["sampler"] == "N(0, 0.25 I)"
    assert by_points["protocol"]["sampler"] == "given latent points"
    assert by_callable["frechet_distance"] == pytest.approx(by_points["frechet_distance"], rel=1e-6)
    assert by_prior["frechet_distance"] == pytest.approx(by_points["frechet_distance"], rel=1e-6)
    with pytest.raises(ValueError, match="30 finite latent points of dimension 2"):
        sample_quality(run, 30, sampler=np.zeros((30, 3)))


def test_vae_eval_samples_label_accuracy_of_a_conditional_run(cond_run, tmp_path):
    from vae_cli.feature_net import features_and_classes, load_digit_classifier
    from vae_cli.run import load_run
    from vae_cli.latent import generate, prior_z

    report_path = tmp_path / "eval.json"
    assert main([str(cond_run), "--iw-samples", "0", "--samples", "20", "--label", "3",
                 "--json", str(report_path)]) == 0
    sq = json.loads(report_path.read_text())["sample_quality"]
    assert sq["protocol"]["label"] == 3 and "of class 3" in sq["protocol"]["reference"]["selection"]
    assert sq["reference_accuracy"] >= 0.9  # the digit classifier knows real 3s
    # label accuracy: the share of the 20 seeded class-3 draws the digit classifier calls 3
    run = load_run(cond_run)
    images = generate(run.decoder, 3, z=prior_z(20, 3, seed=0), num_classes=10, label=3).images
    called = features_and_classes(load_digit_classifier()[0], np.clip(images, 0, 1))[1]
    assert sq["label_accuracy"] == pytest.approx(np.mean(called == 3))
    assert sq["label_accuracy_se"] == pytest.approx(np.sqrt(np.mean(called == 3) * np.mean(called != 3) / 20))


def test_other_shapes_use_the_runs_own_classifier_cached_in_the_run(gaussian_extreme_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(gaussian_extreme_run, run)
    assert main([str(run), "--iw-samples", "0", "--samples", "20"]) == 0
    first = json.loads((run / "eval.json").read_text())["sample_quality"]
    net = first["protocol"]["feature_network"]
    assert net["name"] == "run-classifier" and net["cached"] is False and "3 labels" in net["classes"]
    assert (run / "feature-classifier.weights.h5").is_file()
    assert json.loads((run / "feature-classifier.json").read_text())["weights_sha256"] == net["weights_sha256"]
    assert main([str(run), "--iw-samples", "0", "--samples", "20"]) == 0
    second = json.loads((run / "eval.json").read_text())["sample_quality"]
    assert second["protocol"]["feature_network"]["cached"] is True
    assert second["frechet_distance"] == pytest.approx(first["frechet_distance"], rel=1e-6)


def test_unlabelled_other_shapes_fall_back_to_pixel_pca(tmp_path):
    from vae_cli.cli.train import main as train

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (120, 10, 10, 3), dtype=np.uint8))  # colour
    assert train(["--arch", "mlp", "--hidden-dim", "8", "--latent-dim", "2", "--epochs", "1",
                  "--dataset", f"npz:{tmp_path / 'd.npz'}", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert main([str(run), "--iw-samples", "0", "--samples", "12"]) == 0
    sq = json.loads((run / "eval.json").read_text())["sample_quality"]
    assert sq["protocol"]["feature_network"]["name"] == "pixel-pca"
    assert "pixel-PCA space" in sq["protocol"]["feature_network"]["features"]
    assert "reference_accuracy" not in sq and np.isfinite(sq["frechet_distance"])
    protocol = json.loads((run / "eval.json").read_text())["protocol"]  # colour values are no grey levels
    assert protocol["pixels"] == "channel values in [0, 1], not binarised"
    assert protocol["trained_on"].startswith("108 training images (channel values) of npz:")


@pytest.mark.parametrize("argv, message", [
    (["--samples", "0"], "--samples: expected an integer from 10 to 50000, got 0"),
    (["--samples", "-5"], "--samples: expected an integer from 10 to 50000, got -5"),
    (["--samples", "ten"], "--samples: expected an integer, got 'ten'"),
    (["--temperature", "0.5"], "--temperature only applies to sample quality; add --samples N"),
    (["--samples", "20", "--label", "1"], "--label: this run is not conditional"),
    (["--samples", "10001"], "--samples 10,001: the held-out split (test) has only 10,000 images"),
])
def test_bad_sample_quality_values_get_one_line_and_exit_2(mlp_run, tmp_path, capsys, argv, message):
    report_path = tmp_path / "eval.json"
    assert exit_code(main, [str(mlp_run), "--iw-samples", "0", "--json", str(report_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not report_path.exists()


def test_the_wheel_ships_the_digit_classifier(tmp_path):
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(repo)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("vae_cli-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = z.read("vae_cli/assets/digit_features.weights.h5")
    assert shipped == (repo / "vae_cli/assets/digit_features.weights.h5").read_bytes()


def test_half_sample_se_matches_the_standard_error_of_a_mean():
    from vae_cli.sample_metrics import half_sample_se

    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(2000, 1)), rng.normal(size=(2000, 1))
    se = half_sample_se(lambda a, b: [b.mean() - a.mean()], real, fake, repeats=200, seed=0)
    assert se[0] == pytest.approx(np.sqrt(2 / 2000), rel=0.2)  # sd of a difference of two means of N(0, 1)

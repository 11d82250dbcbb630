"""The levers inside real vae-train runs (tiny data, tiny models), and the quality-table script."""

import csv
import importlib.util
import json
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from vae_cli.cli.eval import main as eval_main
from vae_cli.cli.train import main as train_main
from vae_cli.evaluate import evaluate
from vae_cli.run import load_run

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("quality_script", REPO / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """96 train + 32 test blurry 'digits' (a bright square at random places), 12x12, labelled."""
    rng = np.random.default_rng(0)
    x = np.zeros((128, 12, 12), np.uint8)
    for img, (r, c) in zip(x, rng.integers(2, 7, (128, 2))):
        img[r:r + 4, c:c + 4] = rng.integers(120, 256)
    path = tmp_path_factory.mktemp("data") / "squares.npz"
    np.savez(path, x_train=x[:96], y_train=np.arange(96) % 10, x_test=x[96:], y_test=np.arange(32) % 10)
    return path


def _train(out, dataset, *flags):
    assert train_main(["--dataset", f"npz:{dataset}", "--arch", "mlp", "--hidden-dim", "16",
                       "--latent-dim", "2", "--batch-size", "32", "--out", str(out), *flags]) == 0
    (run,) = list(Path(out).iterdir())
    return run


def _weights(path):
    with h5py.File(path, "r") as f:
        arrays = []
        f.visititems(lambda name, obj: arrays.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return arrays


@pytest.fixture(scope="module")
def elbo_run(tmp_path_factory, digits):
    """Warm-up, cosine schedule, early stopping, binarisation and shifts in one ELBO run."""
    return _train(tmp_path_factory.mktemp("runs"), digits, "--epochs", "4", "--kl-warmup-epochs", "2",
                  "--lr-schedule", "cosine", "--patience", "1", "--binarize", "--augment-shift", "1",
                  "--learning-rate", "0.01")


def test_warmup_weight_is_logged_per_epoch(elbo_run):
    rows = list(csv.DictReader(open(elbo_run / "history.csv")))
    weights = [float(r["kl_weight"]) for r in rows]
    assert weights == [0.0, 0.5, 1.0, 1.0][:len(rows)]


def test_early_stopping_keeps_the_best_epochs_weights(elbo_run):
    rows = list(csv.DictReader(open(elbo_run / "history.csv")))
    elbos = [float(r["val_recon"]) + float(r["val_kl"]) for r in rows]
    best = int(np.argmin(elbos))
    assert len(rows) == 4 or best == len(rows) - 2  # ran out of epochs, or stopped 1 after the best
    final, kept = _weights(elbo_run / "vae.weights.h5"), _weights(elbo_run / "best.weights.h5")
    assert [n for n, _ in final] == [n for n, _ in kept]
    for (_, a), (_, b) in zip(final, kept):
        np.testing.assert_array_equal(a, b)


def test_binarised_run_validates_on_0_1_images(elbo_run):
    metrics = json.loads((elbo_run / "metrics.json").read_text())
    run = load_run(elbo_run)
    assert run.config.binarize and run.config.augment_shift == 1
    assert metrics["eval"]["neg_elbo"] == pytest.approx(metrics["eval"]["recon"] + metrics["eval"]["kl"])


@pytest.fixture(scope="module")
def iwae_gaussian_run(tmp_path_factory, digits):
    return _train(tmp_path_factory.mktemp("runs"), digits, "--epochs", "2", "--iw-train", "3",
                  "--likelihood", "gaussian-learned", "--kl-warmup-epochs", "1")


def test_iwae_gaussian_run_reloads_and_evaluates(iwae_gaussian_run, digits):
    run = load_run(iwae_gaussian_run)
    assert run.vae.get_layer("iwae").k == 3
    decoder = keras.models.load_model(iwae_gaussian_run / "decoder.keras", safe_mode=True)
    z = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    for a, b in zip(run.decoder(z), decoder(z)):  # mean and log-variance
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    with np.load(digits) as data:
        x_test = data["x_test"][..., None].astype(np.float32) / 255
    result = evaluate(run.encoder, run.decoder, x_test, likelihood="gaussian-learned", iw_samples=20)
    last = list(csv.DictReader(open(iwae_gaussian_run / "history.csv")))[-1]
    # the same model on the same data: evaluate's -ELBO is the one training validated on
    assert result["neg_elbo"] == pytest.approx(float(last["val_recon"]) + float(last["val_kl"]), rel=0.02)
    assert result["iw_nll"] < result["neg_elbo"] + 1.0
    for figure in ("samples.png", "manifold.png", "decoder.png"):
        assert (iwae_gaussian_run / figure).is_file()


def _eval_report(capsys, run, tmp_path, *flags):
    report = tmp_path / f"eval{len(list(tmp_path.iterdir()))}.json"
    assert eval_main([str(run), "--iw-samples", "5", "--json", str(report), *flags]) == 0
    return json.loads(report.read_text()), capsys.readouterr().out


def test_vae_eval_follows_the_runs_binarisation_and_says_so(elbo_run, tmp_path, capsys):
    binarised, out = _eval_report(capsys, elbo_run, tmp_path)
    assert binarised["protocol"]["binarized"] and "binarised once" in out and "not binarised" not in out
    assert "squares.npz" in binarised["protocol"]["trained_on"] and "dynamically binarised" in out
    assert "86 training images" in binarised["protocol"]["trained_on"]  # 96 less 10 for validation
    grey, out = _eval_report(capsys, elbo_run, tmp_path, "--no-binarize")
    assert not grey["protocol"]["binarized"] and "grey levels in [0, 1], not binarised" in out
    assert binarised["neg_elbo"] != pytest.approx(grey["neg_elbo"], rel=1e-3)  # other images


def test_vae_eval_examples_scores_the_first_n_and_names_them(elbo_run, tmp_path, capsys):
    first, out = _eval_report(capsys, elbo_run, tmp_path, "--examples", "7")
    assert first["n_examples"] == 7 and first["protocol"]["data"]["split"] == "the first 7 of test"
    assert "the first 7 of test, 7 images" in out and "K=5" in out
    everything, _ = _eval_report(capsys, elbo_run, tmp_path, "--examples", "1000")
    assert everything["n_examples"] == 32 and everything["protocol"]["data"]["split"] == "test"
    with pytest.raises(SystemExit) as stop:
        eval_main([str(elbo_run), "--examples", "-1"])
    assert stop.value.code == 2 and "--examples: expected an integer from 0" in capsys.readouterr().err


@pytest.fixture(scope="module")
def conditional_iwae_run(tmp_path_factory, digits):
    """Every arch-level lever at once with a conditional model: strided, batch norm, 2 hidden
    layers, IWAE, learned variance, shifts."""
    return _train(tmp_path_factory.mktemp("runs"), digits, "--epochs", "2", "--arch", "strided",
                  "--conv-filters", "4,8", "--batch-norm", "--hidden-layers", "2", "--iw-train", "3",
                  "--likelihood", "gaussian-learned", "--augment-shift", "1", "--conditional")


def test_conditional_run_with_every_model_lever_trains_reloads_and_evaluates(conditional_iwae_run, tmp_path,
                                                                             capsys):
    run = load_run(conditional_iwae_run)
    assert run.conditional and run.num_classes == 10 and run.vae.get_layer("iwae").k == 3
    rows = list(csv.DictReader(open(conditional_iwae_run / "history.csv")))
    assert len(rows) == 2 and all(np.isfinite(float(r["val_loss"])) for r in rows)
    report, out = _eval_report(capsys, conditional_iwae_run, tmp_path)
    assert report["protocol"]["quantity"] == "-log p(x | y), labels given" and "-log p(x|y)" in out
    assert report["iw_nll"] < report["neg_elbo"] + 1.0


# ------------------------------------------------------------------------------ the script


def _script_exit(argv):
    try:
        return _load_script().main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: ["--test-data", str(tmp / "nowhere")], "--test-data: no t10k-images-idx3-ubyte"),
    (lambda tmp: ["--iw-samples", "0"], "--iw-samples: expected an integer >= 1"),
    (lambda tmp: ["--presets", "nope"], "no preset named 'nope'"),
    (lambda tmp: ["--readme", str(tmp / "README.md")], "has no <!-- quality-table:start -->"),
    (lambda tmp: ["--iw-examples", "ten"], "--iw-examples: invalid int value"),
    (lambda tmp: ["--ablations", "no-shift,nope"], "--ablations: unknown nope; expected keys of no-shift"),
    (lambda tmp: ["--priors", "mog,nope"], "--priors: unknown nope; expected keys of standard, mog, vamp"),
    (lambda tmp: ["--samples", "5"], "--samples: expected 0 (no sample quality) or an integer from 10"),
    (lambda tmp: ["--samples", "20000"], "--samples: 20,000 samples need as many test digits"),
    (lambda tmp: ["--presets", "", "--no-baseline", "--ablations", "none", "--priors", "none"], "nothing to train"),
    (lambda tmp: ["--presets", "", "--no-baseline", "--ablations", "none", "--priors", "none", "--reuse"],
     "quality.json has no rows to show"),
])
def test_script_refuses_bad_input_before_training(tmp_path, capsys, mnist_t10k_dir, make_args, message):
    (tmp_path / "README.md").write_text("# no table here\n")
    args = ["--test-data", str(mnist_t10k_dir), "--out", str(tmp_path / "runs"), *make_args(tmp_path)]
    assert _script_exit(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_script_trains_scores_and_writes_the_readme_table(tmp_path, mnist_t10k_dir, capsys):
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps({"arch": "mlp", "hidden_dim": 32, "latent_dim": 4, "epochs": 1}))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- quality-table:start -->\nold\n<!-- quality-table:end -->\noutro\n")
    runs = tmp_path / "runs"
    argv = ["--test-data", str(mnist_t10k_dir), "--presets", str(preset), "--ablations", "none", "--priors", "none",
            "--no-baseline", "--iw-samples", "20", "--iw-examples", "50", "--test-examples", "200",
            "--samples", "20", "--out", str(runs), "--readme", str(readme)]
    assert _script_exit(argv) == 0
    capsys.readouterr()
    text = readme.read_text()
    assert text.startswith("intro\n<!-- quality-table:start -->\n| preset |") and text.endswith("outro\n")
    assert "\nold\n" not in text and "K=20 on the first 50 of them" in text
    (row,) = json.loads((runs / "quality.json").read_text())["rows"]
    assert row["test_examples"] == 200 and row["iw_examples"] == 50 and row["latent_dim"] == 4
    assert row["n_train"] == 4500 and row["best_epoch"] == 1 and row["epochs"] == 1
    assert row["iw_nll"] < row["neg_elbo_on_iw_examples"]  # K=20 is a tighter bound than the ELBO
    assert 100 < row["neg_elbo"] < 400 and f"{row['neg_elbo']:.2f}" in text
    assert load_run(row["run"]).config.dataset == "mnist-5k"
    # sample quality: one vae-eval report per sampler, each with 20 samples against 20 test digits
    prior, gmm = row["sample_quality"]["prior"], row["sample_quality"]["gmm"]
    assert prior["protocol"]["n"] == gmm["protocol"]["n"] == 20
    assert prior["protocol"]["sampler"].startswith("prior") and gmm["protocol"]["sampler"].startswith("gmm-10")
    assert prior["protocol"]["feature_network"]["name"] == "digit-classifier"
    for name in ("eval-test-samples20-prior.json", "eval-test-samples20-gmm.json"):
        saved = json.loads((Path(row["run"]) / name).read_text())["sample_quality"]
        assert saved == row["sample_quality"][name.split("-")[-1][:-5]]
    assert all(0 <= q[n] <= 1 for q in (prior, gmm) for n in ("precision", "recall"))
    fd = f"{prior['frechet_distance']:.1f} ± {prior['frechet_distance_se']:.1f} → {gmm['frechet_distance']:.1f}"
    assert "FD, prior → gmm" in text and fd in text and "--samples 20 --sampler prior" in text
    assert "not run†" not in text

    # --reuse keeps the row while nothing it was made with changed, and keeps rows this call does not make
    saved = json.loads((runs / "quality.json").read_text())
    old = {**row, "label": "an older row", "run": "/x/20261123-170953-mlp"}
    del old["sample_quality"], old["requested"]
    renamed = {**old, "label": "quality without KL warm-up", "kind": "removes"}  # a lever no key makes now
    (runs / "quality.json").write_text(json.dumps({**saved, "rows": [old, renamed, row]}))
    assert _script_exit([*argv, "--reuse"]) == 0
    out = capsys.readouterr().out
    assert f"{preset}: kept from" in out and len(list(runs.glob("*-tiny"))) == 1
    assert "quality without KL warm-up: dropped from" in out and "without KL warm-up" not in readme.read_text()
    rows = json.loads((runs / "quality.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["an older row", str(preset)] and rows[1] == row
    assert "| an older row |" in readme.read_text() and "not run†: the row was measured before" in readme.read_text()
    # ... and makes it again, in its place, when the preset it resolves to changed
    preset.write_text(json.dumps({"arch": "mlp", "hidden_dim": 32, "latent_dim": 4, "epochs": 2}))
    assert _script_exit([*argv, "--reuse"]) == 0
    rows = json.loads((runs / "quality.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["an older row", str(preset)] and rows[1]["epochs"] == 2
    assert rows[1]["requested"]["settings"]["epochs"] == 2 and len(list(runs.glob("*-tiny"))) == 2
    # ... and when only the samplers changed (a row saved before gmm was fitted to posterior draws),
    # scores its sample columns again from its run directory, training nothing
    saved = json.loads((runs / "quality.json").read_text())
    stale = {**saved["rows"][1], "requested": {**saved["rows"][1]["requested"], "samplers": ["prior", "gmm"]},
             "sample_quality": {}}
    (runs / "quality.json").write_text(json.dumps({**saved, "rows": [saved["rows"][0], stale]}))
    assert _script_exit([*argv, "--reuse"]) == 0
    assert "sample quality scored again" in capsys.readouterr().out and len(list(runs.glob("*-tiny"))) == 2
    rescored = json.loads((runs / "quality.json").read_text())["rows"][1]
    assert rescored["requested"]["samplers"] == ["prior", "gmm fitted to posterior draws"]
    assert set(rescored["sample_quality"]) == {"prior", "gmm"} and rescored["epochs"] == 2
    # with nothing to train, --reuse redraws the table from the saved rows
    readme.write_text("<!-- quality-table:start -->\n<!-- quality-table:end -->\n")
    assert _script_exit([*argv[:2], "--presets", "", *argv[4:], "--reuse"]) == 0
    assert len(list(runs.glob("*-tiny"))) == 2 and "| an older row |" in readme.read_text()
    assert f"| {preset} | mlp | 4 |" in readme.read_text()


def test_prior_rows_are_the_quality_preset_with_another_prior(mnist_t10k_dir):
    script = _load_script()
    args = script.build_parser().parse_args(["--test-data", str(mnist_t10k_dir), "--presets", "mlp",
                                             "--no-baseline", "--ablations", "none"])
    rows = {label: (preset, kind) for label, preset, _, kind in script.variants(args)}
    priors = {label: script.requested(preset, changes, kind, args)["settings"]
              for label, preset, changes, kind in script.variants(args) if kind == "prior"}
    assert rows["mlp"] == ("mlp", "preset") and len(priors) == 4
    quality = script.run_config("quality", {}, args)
    assert quality.prior == "mog:100"  # the preset's own learned mixture
    standard, mog, vamp, reference = priors.values()
    assert standard["prior"] == "standard" and mog["prior"] == "mog:10"
    for row in (standard, mog):
        assert row["batch_norm"] == quality.batch_norm and row["epochs"] == quality.epochs
        assert row["latent_dim"] == quality.latent_dim and row["hidden_dim"] == quality.hidden_dim
    # the VampPrior refuses batch norm, so it is judged against the preset without it
    assert (vamp["prior"], vamp["batch_norm"]) == ("vamp:50", False)
    assert (reference["prior"], reference["batch_norm"]) == ("mog:100", False)


def test_ablation_table_says_whether_each_lever_helped():
    script = _load_script()

    def row(label, kind, neg_elbo, **extra):
        return {"label": label, "kind": kind, "preset": "quality", "arch": "strided", "latent_dim": 32,
                "params": 1000, "epochs": 10, "train_seconds": 60.0, "train_cpu_seconds": 100.0,
                "neg_elbo": neg_elbo, "iw_nll": None, "iw_samples": 0, "iw_examples": 0,
                "neg_elbo_on_iw_examples": None, "active_units": 20, "binarized_test": False,
                "likelihood": "bernoulli", **extra}

    base = row("quality", "preset", 100.0, iw_nll=97.0, iw_samples=1000, iw_examples=1000,
               neg_elbo_on_iw_examples=100.5)
    text = script.markdown_table([base, row("no shift", "removes", 103.0), row("no bn", "removes", 99.0),
                                  row("+ free bits", "adds", 100.5), row("+ warm-up", "adds", 99.8),
                                  row("+ binarised", "adds", 80.0, binarized_test=True)])
    lines = {line.split(" |")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert "IW-NLL (K=1000, first 1,000 test digits)" in text and "| 97.00 | 100.50 | 20/32 |" in lines["quality"]
    assert "| +3.00 | the lever helps | not run |" in lines["no shift"]
    assert "| -1.00 | the lever did not help here |" in lines["no bn"]
    assert "| +0.50 | adding it did not help |" in lines["+ free bits"]
    assert f"| -0.20 | within the seed spread ({script.SEED_SPREAD_NATS:.2f}) |" in lines["+ warm-up"]
    assert "not comparable" in lines["+ binarised (binarised test set: not comparable with grey-level rows)"]


def test_short_ablations_are_judged_against_their_own_reference_run(tmp_path, mnist_t10k_dir):
    script = _load_script()
    args = script.build_parser().parse_args(["--test-data", str(mnist_t10k_dir), "--presets", "quality",
                                             "--no-baseline", "--ablations", "no-shift,iwae", "--ablation-epochs", "10",
                                             "--priors", "none"])
    labels = [(label, changes, kind) for label, _, changes, kind in script.variants(args)]
    assert labels[1] == ("quality, 10 epochs (the ablations' reference)", {"epochs": 10}, "reference")
    assert labels[2][1] == {"augment_shift": 0, "epochs": 10} and labels[3][1]["epochs"] == 2
    rows = [{"label": "quality", "kind": "preset", "preset": "quality", "neg_elbo": 99.0},
            {"label": "ref", "kind": "reference", "preset": "quality", "neg_elbo": 110.0},
            {"label": "no shift", "kind": "removes", "preset": "quality", "neg_elbo": 109.0}]
    common = {"arch": "strided", "latent_dim": 32, "params": 1, "epochs": 10, "train_seconds": 1.0,
              "train_cpu_seconds": 1.0, "iw_nll": 97.0, "iw_samples": 1, "iw_examples": 1,
              "neg_elbo_on_iw_examples": 99.0, "active_units": 1, "binarized_test": False, "likelihood": "bernoulli"}
    text = script.markdown_table([{**common, **r} for r in rows])
    assert "| no shift | 10 | 1 s (1 s) | 109.00 | -1.00 | the lever did not help here |" in text

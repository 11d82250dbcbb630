"""vae-export: each format's files, run in a fresh process that cannot import vae_cli, give the
outputs of the run's own models (max |difference| <= 1e-5, float32), for mlp, conv and strided
runs, conditional ones included; bad requests are refused in one line with nothing written."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from faults import snapshot

from vae_cli.cli.export import main as export_main

REPO = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("exported_runner.py")
ONNX_READY = all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnx", "onnxruntime"))
FORMATS = ["keras", "savedmodel", "tflite",
           pytest.param("onnx", marks=pytest.mark.skipif(not ONNX_READY, reason="pip install 'vae-cli[onnx]'"))]
RUNS = {  # name: vae-train flags; 12x10 images, so the conv decoders crop 12x12 back to 12x10
    "mlp-conditional": ["--arch", "mlp", "--conditional", "--batch-norm"],
    "conv-conditional-gaussian-learned": ["--arch", "conv", "--conditional", "--likelihood", "gaussian-learned"],
    "strided": ["--arch", "strided", "--batch-norm", "--activation", "silu"],  # the quality preset's layers
}
N = 5


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny 1-epoch run per RUNS entry, trained by vae-train on 48 random 12x10 images, 3 classes."""
    from vae_cli.cli.train import main as train_main

    folder = tmp_path_factory.mktemp("export-runs")
    rng = np.random.default_rng(0)
    np.savez(folder / "data.npz", x_train=rng.integers(0, 256, (48, 12, 10), dtype=np.uint8),
             y_train=np.arange(48) % 3, x_test=rng.integers(0, 256, (12, 12, 10), dtype=np.uint8),
             y_test=np.arange(12) % 3)
    out = {}
    for name, flags in RUNS.items():
        assert train_main(["--dataset", f"npz:{folder / 'data.npz'}", "--epochs", "1", "--batch-size", "16",
                           "--hidden-dim", "16", "--latent-dim", "3", "--conv-filters", "4,8", "--seed", "0",
                           "--out", str(folder / name), *flags]) == 0
        (out[name],) = (folder / name).iterdir()
    return out


def _inputs(run, part: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    inputs = ({"x": rng.random((N, *run.input_shape), dtype=np.float32)} if part == "encoder"
              else {"z": 2 * rng.standard_normal((N, run.config.latent_dim)).astype(np.float32)})
    if run.conditional:
        inputs["label"] = np.eye(run.num_classes, dtype=np.float32)[np.arange(N) % run.num_classes]
    return inputs


def _reference(run, part: str, inputs) -> dict[str, np.ndarray]:
    """The run's own (fused) models, as vae-sample and vae-eval use them."""
    model = run.encoder if part == "encoder" else run.decoder
    feed = [inputs[t.name] for t in model.inputs]
    out = model.predict(feed[0] if len(feed) == 1 else feed, verbose=0)
    out = out if isinstance(out, list) else [out]
    names = (["z_mean", "z_log_var", "z"] if part == "encoder"
             else ["x_hat", "x_log_var"][:len(out)])
    return {name: o for name, o in zip(names, out) if name != "z"}


@pytest.fixture(scope="module")
def round_trips(runs, tmp_path_factory) -> dict[tuple[str, str, str], float]:
    """Export every run in every available format, run all the files in ONE fresh process that
    cannot import vae_cli, and return {(format, run, part): max |exported - run|}."""
    from vae_cli.run import load_run

    folder = tmp_path_factory.mktemp("exports")
    formats = ["keras", "savedmodel", "tflite"] + (["onnx"] if ONNX_READY else [])
    jobs, expected = [], {}
    for name, run_path in runs.items():
        run = load_run(run_path)
        for part in ("encoder", "decoder"):
            inputs = _inputs(run, part)
            np.savez(folder / f"{name}-{part}-in.npz", **inputs)
            expected[name, part] = _reference(run, part, inputs)
        for fmt in formats:
            out = folder / f"{name}-{fmt}"
            assert export_main([str(run_path), "--format", fmt, "--out", str(out)]) == 0
            manifest = json.loads((out / "export.json").read_text())
            for part in ("encoder", "decoder"):
                jobs.append({"format": fmt, "path": str(out / manifest[part]["file"]),
                             "inputs": str(folder / f"{name}-{part}-in.npz"),
                             "outputs": str(folder / f"{name}-{fmt}-{part}-out.npz"), "key": [fmt, name, part]})
    (folder / "jobs.json").write_text(json.dumps(jobs))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(RUNNER), str(folder / "jobs.json")], capture_output=True,
                            text=True, cwd=folder, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["vae_cli_imported"] is False
    diffs = {}
    for job in jobs:
        fmt, name, part = job["key"]
        with np.load(job["outputs"]) as got:
            want = expected[name, part]
            assert sorted(got.files) == sorted(want), (fmt, name, part)
            for k in want:
                assert got[k].dtype == np.float32 and got[k].shape == want[k].shape, (fmt, name, part, k)
            diffs[fmt, name, part] = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    print("\nexport round trip, max |exported - run| (fresh process, no vae_cli):")
    for key, diff in sorted(diffs.items()):
        print(f"  {key[0]:<10} {key[1]:<34} {key[2]:<8} {diff:.2e}")
    return diffs


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", RUNS)
def test_exported_models_reproduce_the_run_without_vae_cli(round_trips, fmt, name):
    for part in ("encoder", "decoder"):
        assert round_trips[fmt, name, part] <= 1e-5, (fmt, name, part, round_trips[fmt, name, part])


def test_keras_files_hold_stock_layers_and_the_manifest_describes_them(runs, tmp_path):
    out = tmp_path / "conv"
    assert export_main([str(runs["conv-conditional-gaussian-learned"]), "--format", "keras", "--out", str(out)]) == 0
    manifest = json.loads((out / "export.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["decoder.keras", "encoder.keras", "export.json"]
    assert manifest["encoder"]["inputs"] == {"x": [None, 12, 10, 1], "label": [None, 3]}
    assert manifest["encoder"]["outputs"] == {"z_mean": [None, 3], "z_log_var": [None, 3]}
    assert manifest["decoder"]["outputs"] == {"x_hat": [None, 12, 10, 1], "x_log_var": [None, 12, 10, 1]}
    assert manifest["num_classes"] == 3 and manifest["likelihood"] == "gaussian-learned"
    assert 0 <= manifest["decoder"]["max_abs_difference"] <= manifest["tolerance"]
    import zipfile

    with zipfile.ZipFile(out / "decoder.keras") as z:
        text = z.read("config.json").decode()
    assert "vae_cli" not in text and "UpsampleConv2D" not in text and "Conv2DTranspose" in text


def test_part_decoder_writes_only_the_decoder(runs, tmp_path):
    out = tmp_path / "only"
    assert export_main([str(runs["strided"]), "--format", "tflite", "--part", "decoder", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["decoder.tflite", "export.json"]
    assert "encoder" not in json.loads((out / "export.json").read_text())


def _cli(*args, code_prefix="", cwd=REPO):
    code = f"{code_prefix}import sys\nfrom vae_cli.cli.export import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300, check=False)


def _our_lines(stderr: str) -> list[str]:
    """stderr without the start-up lines TensorFlow's C++ runtime logs once it is imported."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if not line.startswith(("WARNING: All log messages", "I0000",
                                                                          "W0000", "E0000"))]


def test_refuses_an_out_that_holds_files(runs, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    result = _cli(str(runs["strided"]), "--format", "keras", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"vae-export: error: --out: {out} already holds files; vae-export writes only "
                                     "into a new or empty folder so nothing is overwritten; pick another --out")
    assert snapshot(tmp_path) == before


def test_an_empty_out_folder_is_filled(runs, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert export_main([str(runs["strided"]), "--format", "keras", "--part", "encoder", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["encoder.keras", "export.json"]


def test_onnx_without_the_converter_is_refused_in_one_line(runs, tmp_path):
    # sys.modules[name] = None is how Python marks a module as absent: find_spec then says None
    result = _cli(str(runs["strided"]), "--format", "onnx", "--out", str(tmp_path / "onnx"),
                  code_prefix="import sys\nsys.modules['tf2onnx'] = None\n")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "vae-export: error: --format onnx needs the tf2onnx converter, which is not installed; run pip install "
        "'vae-cli[onnx]' (or pip install tf2onnx onnxruntime), or pick --format keras, savedmodel or tflite")
    assert not (tmp_path / "onnx").exists()


def test_a_converter_that_fails_mid_export_leaves_nothing(runs, tmp_path):
    """The files are built in a hidden folder beside --out: a failure removes it whole."""
    broken = tmp_path / "broken-site"
    for name in ("tf2onnx", "onnx"):
        (broken / name).mkdir(parents=True)
        (broken / name / "__init__.py").write_text("raise ImportError('this copy is broken')\n")
    code = f"import sys\nsys.path.insert(0, {str(broken)!r})\n"
    result = _cli(str(runs["strided"]), "--format", "onnx", "--out", str(tmp_path / "exports" / "onnx"),
                  code_prefix=code)
    assert result.returncode == 2, result.stderr
    assert _our_lines(result.stderr) == [("vae-export: error: --format onnx: the converter failed to import (this "
                                          "copy is broken); reinstall it with pip install 'vae-cli[onnx]'")]
    assert list((tmp_path / "exports").iterdir()) == []  # neither --out nor a hidden partial folder


def test_not_a_run_and_bad_flags(tmp_path):
    result = _cli(str(tmp_path), "--format", "keras", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"vae-export: error: {tmp_path} is not a vae-cli run: config.json is missing"
    result = _cli(str(tmp_path), "--format", "pickle", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "--format: invalid choice: 'pickle'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_is_instant_and_the_script_is_declared():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vae-export"] == "vae_cli.cli.export:main"
    code = ("import sys, contextlib, io\nfrom vae_cli.cli.export import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    try: main(['--help'])\n    except SystemExit as e: print(e.code)\n"
            "print(out.getvalue()); print('TF', 'tensorflow' in sys.modules or 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert "--format {keras,savedmodel,tflite,onnx}" in out and "examples:" in out
    assert out.strip().endswith("TF False")

"""The three commands that read a run: console scripts, instant --help and argument errors
(TensorFlow is imported only after parsing), one-line errors with exit 2."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {"vae-plot": "plot", "vae-sample": "sample", "vae-eval": "eval"}


def test_console_scripts_point_at_the_commands():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for prog, module in COMMANDS.items():
        assert scripts[prog] == f"vae_cli.cli.{module}:main"


@pytest.mark.parametrize("module", COMMANDS.values())
def test_help_and_argument_errors_without_tensorflow(module):
    code = (f"import sys, contextlib, io\nfrom vae_cli.cli.{module} import main\n"
            "for argv in (['--help'], ['RUN', '--seed', 'x']):\n"
            "    out, err = io.StringIO(), io.StringIO()\n"
            "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
            "        try: main(argv)\n        except SystemExit as e: print('EXIT', e.code)\n"
            "    print(out.getvalue(), err.getvalue())\n"
            "print('TF', 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout
    assert "examples:" in out and "RUN" in out and "--seed" in out
    assert "EXIT 0" in out and "EXIT 2" in out and "--seed: expected an integer, got 'x'" in out
    assert out.strip().endswith("TF False")


@pytest.mark.parametrize("module", COMMANDS.values())
def test_not_a_run_directory(module, tmp_path):
    result = subprocess.run([sys.executable, "-m", f"vae_cli.cli.{module}", str(tmp_path)], check=False,
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"vae-{module}: error: {tmp_path} is not a vae-cli run: "
                                      "config.json is missing")


@pytest.mark.parametrize("module, argv, suggestion", [
    ("train", ["--epoch", "3"], "--epochs"),  # abbreviations are not taken silently
    ("train", ["--latent", "3"], "--latent-dim"),
    ("train", ["--latnet-dim", "3"], "--latent-dim"),  # a typo
    ("plot", ["RUN", "--gird", "20"], "--grid"),
    ("sample", ["RUN", "--temp", "0.5"], "--temperature"),
    ("eval", ["RUN", "--iw-sample=5"], "--iw-samples"),
])
def test_unknown_flags_exit_2_with_a_did_you_mean(module, argv, suggestion, capsys):
    from importlib import import_module

    from tests.faults import exit_code

    assert exit_code(import_module(f"vae_cli.cli.{module}").main, argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"unrecognized arguments: {' '.join(argv[1:] if argv[0] == 'RUN' else argv)}" in err
    assert f"; did you mean {suggestion}? (see vae-{module} --help)" in err


def test_an_unknown_flag_with_nothing_close_gets_no_guess(capsys):
    from tests.faults import exit_code
    from vae_cli.cli.plot import main

    assert exit_code(main, ["RUN", "--zzzzzz"]) == 2
    assert capsys.readouterr().err.strip() == ("vae-plot: error: unrecognized arguments: --zzzzzz "
                                               "(see vae-plot --help)")


def test_a_missing_preset_file_named_like_a_builtin_one_points_at_it(tmp_path, capsys):
    from tests.faults import exit_code
    from vae_cli.cli.train import main

    assert exit_code(main, ["--preset", "conv.json", "--out", str(tmp_path)]) == 2
    assert ("--preset: file conv.json does not exist; did you mean --preset conv (the built-in preset)?"
            in capsys.readouterr().err)
    assert exit_code(main, ["--preset", "mine.json", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith("--preset: file mine.json does not exist")


STARTUP_NOISE = ("absl::InitializeLog", "oneDNN custom operations", "Could not find cuda drivers", "cuInit")


def test_training_starts_quietly_and_names_graphviz_once(tmp_path):
    """No TensorFlow start-up chatter on stderr; without graphviz the three diagrams are PNGs
    anyway and one line says how to get graphviz's version."""
    from vae_cli.diagram import GRAPHVIZ_HINT

    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": str(tmp_path / "no-bin")}  # no graphviz `dot`
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run([sys.executable, "-m", "vae_cli.cli.train", "--dataset", "mnist-5k", "--arch", "mlp",
                             "--epochs", "1", "--hidden-dim", "16", "--out", str(tmp_path / "runs")],
                            capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert not [noise for noise in STARTUP_NOISE if noise in result.stderr], result.stderr
    assert result.stdout.count(GRAPHVIZ_HINT) == 1
    (run,) = (tmp_path / "runs").iterdir()
    for name in ("encoder.png", "decoder.png", "vae.png"):
        assert (run / name).stat().st_size > 1000


def test_a_jax_run_on_an_image_folder_starts_quietly_too(tmp_path):
    """On JAX, TensorFlow is imported only for the folder's tf.data pipeline, long after the
    command's quiet start: that import drops the same chatter."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{k}.png")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run([sys.executable, "-m", "vae_cli.cli.train", "--dataset", f"folder:{tmp_path}",
                             "--arch", "mlp", "--backend", "jax", "--epochs", "1", "--hidden-dim", "8",
                             "--batch-size", "4", "--out", str(tmp_path / "runs")],
                            capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "backend jax" in result.stdout  # it trained on JAX
    assert not [noise for noise in STARTUP_NOISE if noise in result.stderr], result.stderr


def test_real_messages_still_reach_stderr_after_the_quiet_start():
    code = ("import os, sys, warnings\n"
            "from vae_cli.cli.common import quiet_tensorflow\n"
            "quiet_tensorflow()\n"
            "assert 'tensorflow' in sys.modules\n"
            "os.write(2, b'E0000 a real error from C++\\n')\n"
            "warnings.warn('a real Python warning')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                            check=True)
    assert not [noise for noise in STARTUP_NOISE if noise in result.stderr], result.stderr
    assert "E0000 a real error from C++" in result.stderr and "UserWarning: a real Python warning" in result.stderr


def test_startup_filter_keeps_every_line_that_is_not_known_noise():
    from vae_cli.backend import drop_startup_noise

    caught = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
              "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see ...\n"
              "W0000 00:00:1.1 1 some.cc:1] a real warning\n"
              "I0000 00:00:1.2 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
              "E0000 00:00:1.3 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
              "Traceback (most recent call last):\n  a real error")
    assert drop_startup_noise(caught) == ("W0000 00:00:1.1 1 some.cc:1] a real warning\n"
                                          "Traceback (most recent call last):\n  a real error")

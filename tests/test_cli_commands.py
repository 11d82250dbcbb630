"""The three commands that read a run: console scripts, instant --help and argument errors
(TensorFlow is imported only after parsing), one-line errors with exit 2."""

import os
import subprocess
import sys
from pathlib import Path

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

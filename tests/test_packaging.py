"""The named presets ship in a real (non-editable) wheel and resolve from an installed copy."""

import subprocess
import sys
import venv
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def test_wheel_install_ships_the_presets(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(REPO)], check=True, capture_output=True)
    (wheel,) = wheels.glob("vae_cli-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    # Install with the outer pip into the venv's site-packages, never touching the network.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", site, str(wheel)], check=True, capture_output=True)
    code = ("import vae_cli, vae_cli.config as c; print(vae_cli.__file__); "
            "print(','.join(c.preset_names())); print(c.resolve('conv').conv_filters)")
    out = subprocess.run([str(python), "-c", code], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert out[0].startswith(site), "the test must exercise the wheel, not the source checkout"
    assert {"mlp", "conv", "fashion", "latent16"} <= set(out[1].split(","))
    assert out[2] == "(32, 32)"

"""The named presets and the real MNIST test set ship in a real (non-editable) wheel and resolve
from an installed copy; the wheel holds the package and the user's commands only (no benchmarks)."""

import subprocess
import sys
import venv
import zipfile
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def test_wheel_install_ships_the_presets(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(REPO)], check=True, capture_output=True)
    (wheel,) = wheels.glob("vae_cli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode().split("[console_scripts]")[1].split("[")[0]
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"vae_cli"}
    assert sorted(line.split("=")[0].strip() for line in scripts.splitlines() if "=" in line) == [
        "vae-eval", "vae-explore", "vae-export", "vae-plot", "vae-sample", "vae-train"]
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    # Install with the outer pip into the venv's site-packages, never touching the network.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", site, str(wheel)], check=True, capture_output=True)
    code = ("import vae_cli, vae_cli.config as c; print(vae_cli.__file__); "
            "print(','.join(c.preset_names())); print(c.resolve('conv').conv_filters); "
            "from vae_cli.data import load_eval_split as e; h = e('mnist-5k', validation_split=0.1, seed=0); "
            "print(h.split, len(h.x), int(h.y.sum())); "
            "from vae_cli.data.readers import SHIPPED_T10K as t; print((t / 'NOTICE').is_file())")
    out = subprocess.run([str(python), "-c", code], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert out[0].startswith(site), "the test must exercise the wheel, not the source checkout"
    assert {"mlp", "conv", "fashion", "latent16"} <= set(out[1].split(","))
    assert out[2] == "(32, 32)"
    assert out[3] == "test 10000 44434"  # the shipped MNIST test set: all 10,000 labels (their sum)
    assert out[4] == "True"  # with its attribution and licence
